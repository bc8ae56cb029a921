"""`hulumed serve --backend vllm`: our HTTP server (media-root rules, volume_url, limits) over the vLLM engine.

The server runs as a subprocess exactly as a user starts it (the README's command plus the tiny checkpoint, fp32
and a free port); the openai client sends an image below the media root, a NIfTI volume as a ``volume_url`` with
options, and a streamed request; answers equal the transformers engine's greedy answers. A path outside the media
root is refused with 403 and the server keeps answering.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

ROOT = Path(__file__).resolve().parents[2]
MAX_NEW = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(tiny_vllm_checkpoint, media, tmp_path_factory):
    from .conftest import running_server

    root = tmp_path_factory.mktemp("media-root")
    shutil.copy(media["a"], root / "a.png")
    shutil.copy(media["nii"], root / "vol.nii.gz")
    port = _free_port()
    command = [sys.executable, "-m", "hulumed", "serve", "--backend", "vllm", "--model", str(tiny_vllm_checkpoint),
               "--served-model-name", "tiny", "--dtype", "float32", "--host", "127.0.0.1", "--port", str(port),
               "--media-root", str(root)]
    log = tmp_path_factory.mktemp("hulumed-serve") / "server.log"
    with running_server(command, port, log, dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")) as url:
        assert "listening on" in log.read_text()
        yield url, root


def _expected(checkpoint: Path, conversation: list) -> object:
    import hulumed
    from hulumed.generation import GenerationParams

    [result] = hulumed.load(checkpoint).generate(conversation, GenerationParams.greedy(MAX_NEW))
    return result


def test_image_and_volume_answers_equal_hf_engine(served, tiny_vllm_checkpoint):
    from openai import OpenAI

    url, root = served
    client = OpenAI(base_url=url, api_key="none")
    image = _expected(tiny_vllm_checkpoint, [{"role": "user", "content": [
        {"type": "image", "image": {"image_path": str(root / "a.png")}}, {"type": "text", "text": "Describe."}]}])
    reply = client.chat.completions.create(model="tiny", max_tokens=MAX_NEW, temperature=0, messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a.png"}},
                                     {"type": "text", "text": "Describe."}]}])
    assert reply.choices[0].message.content == image.text
    assert reply.usage.prompt_tokens == image.prompt_tokens

    volume = _expected(tiny_vllm_checkpoint, [{"role": "user", "content": [
        {"type": "3d", "3d": {"image_path": str(root / "vol.nii.gz"), "nii_num_slices": 4}},
        {"type": "text", "text": "Findings?"}]}])
    stream = client.chat.completions.create(model="tiny", max_tokens=MAX_NEW, temperature=0, stream=True, messages=[
        {"role": "user", "content": [{"type": "volume_url", "volume_url": {"url": "vol.nii.gz", "slices": 4}},
                                     {"type": "text", "text": "Findings?"}]}])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == volume.text


def test_outside_media_root_is_refused_and_the_server_keeps_answering(served):
    import httpx

    url, _ = served
    body = {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "/etc/passwd"}}, {"type": "text", "text": "x"}]}]}
    refused = httpx.post(f"{url}/chat/completions", json=body, timeout=60)
    assert refused.status_code == 403
    assert "passwd" not in refused.text
    ok = httpx.post(f"{url}/chat/completions", timeout=120, json={
        "model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hello"}]})
    assert ok.status_code == 200, ok.text

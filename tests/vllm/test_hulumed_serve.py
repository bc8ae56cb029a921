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
               "--media-root", str(root), "--kv-cache-gb", "1", "--max-model-len", "4096"]
    log = tmp_path_factory.mktemp("hulumed-serve") / "server.log"
    # vLLM's engine core in its own process, as a user runs it (the last test kills it)
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_ENABLE_V1_MULTIPROCESSING")}
    with running_server(command, port, log, env) as url:
        assert "listening on" in log.read_text()
        yield url, root, port


def _expected(checkpoint: Path, conversation: list) -> object:
    import hulumed
    from hulumed.generation import GenerationParams

    [result] = hulumed.load(checkpoint).generate(conversation, GenerationParams.greedy(MAX_NEW))
    return result


def test_image_and_volume_answers_equal_hf_engine(served, tiny_vllm_checkpoint):
    from openai import OpenAI

    url, root, _ = served
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

    url, _, _ = served
    body = {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "/etc/passwd"}}, {"type": "text", "text": "x"}]}]}
    refused = httpx.post(f"{url}/chat/completions", json=body, timeout=60)
    assert refused.status_code == 403
    assert "passwd" not in refused.text
    ok = httpx.post(f"{url}/chat/completions", timeout=120, json={
        "model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hello"}]})
    assert ok.status_code == 200, ok.text


def test_a_checkpoint_vllm_cannot_run_on_cpu_is_refused_at_start_with_one_line():
    import subprocess

    from tests.conftest import GOLDEN

    run = subprocess.run([sys.executable, "-m", "hulumed", "serve", "--backend", "vllm", "--model",
                          str(GOLDEN / "tiny-qwen2"), "--port", "0"], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "head_dim 16" in run.stderr and "make-tiny --head-dim 32" in run.stderr
    assert "Traceback" not in run.stderr and "listening" not in run.stderr


def _engine_core_of(port: int) -> int:
    """The pid of the vLLM engine core process started by the server listening on ``port``."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            procs[int(entry.name)] = (cmdline, ppid)
    for pid, (cmdline, ppid) in procs.items():
        parent = procs.get(ppid, (b"", 0))[0]
        if b"EngineCore" in cmdline and str(port).encode() in parent:
            return pid
    raise AssertionError("no EngineCore process under the server")


def test_health_fails_once_the_engine_dies(served):
    """Last in this module: kills the server's vLLM engine core. /health turns 503 with the reason, requests
    get a 503 naming it, instead of "ok" and 500s."""
    import signal
    import time

    import httpx

    url, _, port = served
    base = url.removesuffix("/v1")
    assert httpx.get(f"{base}/health", timeout=10).status_code == 200
    os.kill(_engine_core_of(port), signal.SIGKILL)
    for _ in range(60):
        health = httpx.get(f"{base}/health", timeout=10)
        if health.status_code == 503:
            break
        time.sleep(0.5)
    assert health.status_code == 503, health.text
    assert "vLLM engine died" in health.json()["reason"]
    reply = httpx.post(f"{url}/chat/completions", timeout=60, json={
        "model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 503 and "vLLM engine died" in reply.json()["error"]["message"]

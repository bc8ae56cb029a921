"""vLLM's own OpenAI server with the plugin: the README's command, driven by the openai client.

Image, mp4 and NIfTI ``data:`` URIs go through the plugin's raw-media processing (our loaders via the ``hulumed``
video backend, our image processor, the plugin's chat template); answers and prompt lengths equal the transformers
engine's. Test-only flags: the tiny
checkpoint, fp32, eager, a port, and ``--generation-config vllm`` (no checkpoint sampling defaults, so
``temperature=0`` is plain greedy; the reference then runs with ``repetition_penalty=1.0``).
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import socket
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

ROOT = Path(__file__).resolve().parents[2]


def _readme_command() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- command: vllm serve -->\s*```bash\n(.*?)\n```", readme, re.S)
    assert match, "README lost its vLLM server command"
    return shlex.split(match.group(1))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_vllm_checkpoint, tmp_path_factory):
    from .conftest import running_server

    command = _readme_command()
    assert command[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    command = [sys.executable, *command[1:]]
    from hulumed.vllm_plugin import CHAT_TEMPLATE

    template_arg = command.index("--chat-template") + 1
    assert command[template_arg] == "$(python -c 'import hulumed.vllm_plugin as p; print(p.CHAT_TEMPLATE)')"
    command[template_arg] = CHAT_TEMPLATE
    command[command.index("--model") + 1] = str(tiny_vllm_checkpoint)
    port = _free_port()
    command += ["--port", str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len", "4096",
                "--generation-config", "vllm", "--skip-mm-profiling", "--served-model-name", "tiny"]
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(command, port, log, dict(os.environ)) as url:
        yield url


def test_image_data_uri_answer_equals_hf_engine(server, tiny_vllm_checkpoint, media):
    from openai import OpenAI

    import hulumed
    from hulumed.generation import GenerationParams

    client = OpenAI(base_url=server, api_key="none")
    uri = "data:image/png;base64," + base64.b64encode(media["a"].read_bytes()).decode()
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": "Describe the image."}]}]
    hf = hulumed.load(tiny_vllm_checkpoint)
    [expected] = hf.generate([{"role": "user", "content": [
        {"type": "image", "image": str(media["a"])}, {"type": "text", "text": "Describe the image."}]}],
        GenerationParams.greedy(12, repetition_penalty=1.0))
    for _ in range(2):  # the second request hits vLLM's processing cache
        reply = client.chat.completions.create(model="tiny", max_tokens=12, temperature=0, messages=messages)
        assert reply.choices[0].message.content == expected.text
        assert reply.usage.prompt_tokens == expected.prompt_tokens


def _uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.mark.parametrize("kind", ["mp4", "nifti", "image_and_mp4"])
def test_video_and_volume_data_uris_equal_hf_engine(server, tiny_vllm_checkpoint, media, kind):
    from openai import OpenAI

    import hulumed
    from hulumed.generation import GenerationParams

    from .conftest import hf_reference

    video_part = {"type": "video_url", "video_url": {"url": _uri(media["clip"], "video/mp4")}}
    hf_video = {"type": "video", "video": {"video_path": str(media["clip"])}}
    if kind == "nifti":
        video_part = {"type": "video_url", "video_url": {"url": _uri(media["nii"], "application/octet-stream")}}
        hf_video = {"type": "3d", "3d": {"image_path": str(media["nii"])}}
    content = [video_part, {"type": "text", "text": "What happens?"}]
    hf_content = [hf_video, {"type": "text", "text": "What happens?"}]
    if kind == "image_and_mp4":  # the image is merged 2x2 because of the video (and not taken from the cache)
        content = [{"type": "image_url", "image_url": {"url": _uri(media["a"], "image/png")}}, *content]
        hf_content = [{"type": "image", "image": str(media["a"])}, *hf_content]
    hf = hulumed.load(tiny_vllm_checkpoint)
    conversation = [{"role": "user", "content": hf_content}]
    [expected] = hf.generate(conversation, GenerationParams.greedy(12, repetition_penalty=1.0))
    prompt, _ = hf_reference(hf, conversation)
    reply = OpenAI(base_url=server, api_key="none").chat.completions.create(
        model="tiny", max_tokens=12, temperature=0, messages=[{"role": "user", "content": content}])
    assert reply.usage.prompt_tokens == len(prompt)
    assert reply.choices[0].message.content == expected.text

"""vLLM's own OpenAI server with the plugin: the README's command exactly as printed, driven by the openai client.

Only the model path (the tiny checkpoint) and ``--port`` are changed; no other flag is added. vLLM then runs the
checkpoint as it would the official one: bf16 (the fp32 tiny weights are cast), its compiled CPU path, multimodal
profiling with the plugin's dummy images and videos. Image, mp4 and NIfTI ``data:`` URIs go through the plugin's
chat template and loaders: prompts equal the transformers engine's token for token; answers are checked for being
answers (greedy bf16 tokens differ from the fp32 reference; tests/vllm/test_llm_chat.py compares tokens in fp32).
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
    assert command[3:] == ["--model", "ZJU-AI4H/Hulu-Med-7B"], "the README's command grew flags: test them here"
    port = _free_port()
    command = [sys.executable, *command[1:4], str(tiny_vllm_checkpoint), "--port", str(port)]
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(command, port, log, dict(os.environ)) as url:
        yield url


def _answer(server: str, content: list[dict], **extra) -> tuple[str, int, str]:
    import httpx

    body = {"model": _MODEL[0], "max_tokens": 12, "temperature": 0, "messages": [{"role": "user", "content": content}],
            **extra}
    reply = httpx.post(f"{server}/chat/completions", json=body, timeout=300)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    return data["choices"][0]["message"]["content"], data["usage"]["prompt_tokens"], data["choices"][0]["finish_reason"]


_MODEL: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _served_name(tiny_vllm_checkpoint):
    _MODEL[:] = [str(tiny_vllm_checkpoint)]  # vLLM serves a folder under its path


def test_health_and_models(server, tiny_vllm_checkpoint):
    import httpx

    assert httpx.get(server.removesuffix("/v1") + "/health", timeout=10).status_code == 200
    assert httpx.get(f"{server}/models", timeout=10).json()["data"][0]["id"] == str(tiny_vllm_checkpoint)


def _uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.mark.parametrize("kind", ["text", "image", "two_images", "mp4", "nifti", "image_and_mp4"])
def test_every_media_kind_is_answered_with_our_prompt(server, tiny_vllm_checkpoint, media, kind):
    import hulumed

    from .conftest import hf_reference

    image_a = ({"type": "image_url", "image_url": {"url": _uri(media["a"], "image/png")}},
               {"type": "image", "image": str(media["a"])})
    image_b = ({"type": "image_url", "image_url": {"url": _uri(media["b"], "image/png")}},
               {"type": "image", "image": str(media["b"])})
    clip = ({"type": "video_url", "video_url": {"url": _uri(media["clip"], "video/mp4")}},
            {"type": "video", "video": {"video_path": str(media["clip"])}})
    volume = ({"type": "video_url", "video_url": {"url": _uri(media["nii"], "application/octet-stream")}},
              {"type": "3d", "3d": {"image_path": str(media["nii"])}})
    parts = {"text": [], "image": [image_a], "two_images": [image_a, image_b], "mp4": [clip], "nifti": [volume],
             "image_and_mp4": [image_a, clip]}[kind]
    text = {"type": "text", "text": "What happens?"}
    hf = hulumed.load(tiny_vllm_checkpoint)
    prompt, _ = hf_reference(hf, [{"role": "user", "content": [*(p[1] for p in parts), text]}], max_new=1)
    for _ in range(2):  # the second request hits vLLM's processing cache
        answer, prompt_tokens, finish = _answer(server, [*(p[0] for p in parts), text])
        assert prompt_tokens == len(prompt)
        assert answer and finish in ("stop", "length")


def test_structured_output_on_vllms_own_server(server, media):
    image = {"type": "image_url", "image_url": {"url": _uri(media["a"], "image/png")}}
    text = {"type": "text", "text": "Normal?"}
    answer, _, finish = _answer(server, [image, text], structured_outputs={"choice": ["normal", "abnormal"]})
    assert answer in ("normal", "abnormal") and finish == "stop"

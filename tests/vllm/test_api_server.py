"""vLLM's own OpenAI server with the plugin: the README's command, driven by the openai client.

Image ``data:`` URIs go through the plugin's raw-image processing (our image processor, vLLM's chat template
rendering of our template); the answer equals the transformers engine's greedy answer. Test-only flags: the tiny
checkpoint, fp32, eager, a port, and ``--generation-config vllm`` (no checkpoint sampling defaults, so
``temperature=0`` is plain greedy; the reference then runs with ``repetition_penalty=1.0``).
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import socket
import subprocess
import sys
import time
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
    import httpx

    command = _readme_command()
    assert command[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    command = [sys.executable, *command[1:]]
    command[command.index("--model") + 1] = str(tiny_vllm_checkpoint)
    port = _free_port()
    command += ["--port", str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len", "4096",
                "--generation-config", "vllm", "--skip-mm-profiling", "--served-model-name", "tiny"]
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with open(log, "w") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            if process.poll() is not None:
                pytest.fail(f"the server exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(60)


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

"""The OpenAI-compatible server, on 127.0.0.1 with a real uvicorn, driven by the official openai client."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

import hulumed  # noqa: E402
from hulumed.conversation import user_turn  # noqa: E402
from hulumed.generation import GenerationParams  # noqa: E402
from hulumed.serve.background import serving  # noqa: E402
from hulumed.serve.settings import ServerSettings  # noqa: E402
from tests.conftest import GOLDEN  # noqa: E402

INPUTS = GOLDEN / "inputs"


def _data_uri(path: Path, media_type: str) -> str:
    return f"data:{media_type};base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def engine():
    return hulumed.load(GOLDEN / "tiny-qwen2", device="cpu", batch_size=16)


@pytest.fixture(scope="module")
def media_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    (root / "scans").mkdir()
    (root / "scans" / "a.png").write_bytes((INPUTS / "image_a.png").read_bytes())
    (root / "ct.nii.gz").write_bytes((INPUTS / "volume.nii.gz").read_bytes())
    secret = tmp_path_factory.mktemp("outside") / "secret.png"
    secret.write_bytes((INPUTS / "image_b.png").read_bytes())
    os.symlink(secret, root / "escape.png")
    return root


@pytest.fixture(scope="module")
def server(engine, media_root):
    settings = ServerSettings(model_name="tiny", media_root=media_root, max_body_bytes=2 * 2**20, max_media_parts=3,
                              max_tokens_limit=64, max_visual_tokens=100)
    with serving(engine, settings) as url:
        yield url


def _client(url: str, key: str = "none"):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


IMAGE_MESSAGE = [{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": _data_uri(INPUTS / "image_a.png", "image/png")}},
    {"type": "text", "text": "Describe this image."}]}]


def test_non_streamed_and_streamed_equal_the_engine(server, engine):
    expected = engine.generate([user_turn("Describe this image.", images=[str(INPUTS / "image_a.png")])],
                               GenerationParams.greedy(10))[0]
    client = _client(server)
    reply = client.chat.completions.create(model="tiny", messages=IMAGE_MESSAGE, max_tokens=10, temperature=0)
    assert reply.choices[0].message.content == expected.text
    assert reply.choices[0].finish_reason == expected.finish_reason
    assert reply.usage.prompt_tokens == expected.prompt_tokens and reply.usage.completion_tokens == 10
    assert reply.usage.prompt_tokens_details.model_dump()["visual_tokens"] == 35
    chunks = list(client.chat.completions.create(model="tiny", messages=IMAGE_MESSAGE, max_tokens=10, temperature=0,
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected.text
    assert chunks[-1].usage.completion_tokens == 10 and chunks[-1].choices[0].finish_reason == expected.finish_reason


def test_volume_by_data_uri_and_by_media_root_path(server, engine, media_root):
    expected = engine.generate([user_turn("Report.", volume=str(INPUTS / "volume.nii.gz"), slices=4)],
                               GenerationParams.greedy(6))[0]
    client = _client(server)
    urls = [_data_uri(INPUTS / "volume.nii.gz", "application/gzip"), "ct.nii.gz", f"file://{media_root / 'ct.nii.gz'}"]
    for url in urls:
        messages = [{"role": "user", "content": [{"type": "volume_url", "volume_url": {"url": url, "slices": 4}},
                                                 {"type": "text", "text": "Report."}]}]
        reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=6, temperature=0)
        assert reply.choices[0].message.content == expected.text, url[:40]
        assert reply.usage.prompt_tokens_details.model_dump()["visual_tokens"] == 4 * 16


def test_think_mode_reaches_the_engine(server, engine):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Why?"}], "max_tokens": 4, "temperature": 0}
    plain = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=60).json()
    thinking = httpx.post(f"{server}/v1/chat/completions", json={**body, "think": True}, timeout=60).json()
    expected = engine.generate([{"role": "user", "content": "Why?"}], GenerationParams.greedy(4, think=True))[0]
    # the reasoning instruction is appended to the prompt, exactly as the engine does it
    assert thinking["usage"]["prompt_tokens"] == expected.prompt_tokens > plain["usage"]["prompt_tokens"]
    assert thinking["choices"][0]["message"]["content"] == expected.text
    assert ("reasoning" in thinking["choices"][0]["message"]) == (expected.reasoning is not None)


def _post(url: str, body, headers=None, raw: bytes | None = None) -> httpx.Response:
    if raw is not None:
        return httpx.post(f"{url}/v1/chat/completions", content=raw, timeout=60,
                          headers={"content-type": "application/json", **(headers or {})})
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60, headers=headers)


def _image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


BAD_REQUESTS = {
    "malformed json": (None, b'{"model": "tiny", "messages": [', 400, "invalid_json"),
    "unknown model": ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, None, 404, "model_not_found"),
    "no messages": ({"model": "tiny", "messages": []}, None, 400, "invalid_request"),
    "bad base64": ({"model": "tiny", "messages": [{"role": "user", "content": [
        _image_part("data:image/png;base64,@@@not-base64@@@")]}]}, None, 400, "invalid_base64"),
    "corrupt image": ({"model": "tiny", "messages": [{"role": "user", "content": [
        _image_part("data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()),
        {"type": "text", "text": "x"}]}]}, None, 400, "invalid_media"),
    "traversal path": ({"model": "tiny", "messages": [{"role": "user", "content": [
        _image_part("../../../../etc/passwd")]}]}, None, 403, "path_outside_media_root"),
    "symlink escape": ({"model": "tiny", "messages": [{"role": "user", "content": [
        _image_part("escape.png")]}]}, None, 403, "path_outside_media_root"),
    "remote url disabled": ({"model": "tiny", "messages": [{"role": "user", "content": [
        _image_part("https://example.org/x.png")]}]}, None, 403, "remote_media_disabled"),
    "too many images": ({"model": "tiny", "messages": [{"role": "user", "content": [
        _image_part("scans/a.png")] * 4}]}, None, 400, "too_many_media"),
    "max tokens over limit": ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10_000},
                              None, 400, "max_tokens_too_large"),
    "unknown part type": ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "audio_url"}]}]},
                          None, 400, "invalid_part"),
    "missing file": ({"model": "tiny", "messages": [{"role": "user", "content": [_image_part("scans/none.png")]}]},
                     None, 400, "media_not_found"),
    "too many visual tokens": ({"model": "tiny", "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + base64.b64encode(
            (INPUTS / "video.mp4").read_bytes()).decode(), "fps": 3}}, {"type": "text", "text": "x"}]}],
        "max_tokens": 2}, None, 400, "too_many_visual_tokens"),
    "too many visual tokens, streamed": ({"model": "tiny", "stream": True, "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + base64.b64encode(
            (INPUTS / "video.mp4").read_bytes()).decode(), "fps": 3}}, {"type": "text", "text": "x"}]}],
        "max_tokens": 2}, None, 400, "too_many_visual_tokens"),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_requests_get_4xx_and_the_server_keeps_answering(server, name):
    body, raw, status, code = BAD_REQUESTS[name]
    reply = _post(server, body, raw=raw)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["message"] and "Traceback" not in reply.text
    if code is not None:
        assert error["code"] == code
    assert httpx.get(f"{server}/health", timeout=10).json()["status"] == "ok"
    ok = _post(server, {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert ok.status_code == 200


def test_oversize_body_is_413(server):
    big = {"model": "tiny", "messages": [{"role": "user", "content": "x" * (3 * 2**20)}]}
    reply = _post(server, big)
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "body_too_large"
    message = reply.json()["error"]["message"]
    assert "2 MB" in message and "--max-body-mb" in message and "bytes" not in message  # the limit and its flag


def test_a_clinical_size_ct_is_answered_with_default_limits(engine, tmp_path):
    """An uncompressed 512 x 512 x 80 CT (42 MB, over the old 32 MB default) with every limit at its default: 200,
    and the answer equals the engine's on the same file; a smaller --max-media-mb gives a 413 naming sizes and flag."""
    import nibabel
    import numpy as np

    from tests.unit.media_samples import ct_phantom

    (tmp_path / "study").mkdir()
    path = tmp_path / "study" / "ct.nii"
    nibabel.save(nibabel.Nifti1Image(ct_phantom(slices=80), np.diag([-0.7, -0.7, 2.5, 1.0])), str(path))
    assert path.stat().st_size > 40 * 2**20
    part = {"type": "volume_url", "volume_url": {"url": "study/ct.nii", "slices": 8}}
    body = {"model": "tiny", "messages": [{"role": "user", "content": [part, {"type": "text", "text": "Findings?"}]}],
            "max_tokens": 4, "temperature": 0}
    with serving(engine, ServerSettings(model_name="tiny", media_root=tmp_path)) as url:
        reply = _post(url, body)
    assert reply.status_code == 200, reply.text
    volume = {"type": "3d", "3d": {"image_path": str(path), "nii_num_slices": 8}}
    expected = engine.generate([[{"role": "user", "content": [volume, {"type": "text", "text": "Findings?"}]}]],
                               GenerationParams.greedy(4))[0]
    assert reply.json()["choices"][0]["message"]["content"] == expected.text
    with serving(engine, ServerSettings(model_name="tiny", media_root=tmp_path, max_media_bytes=16 * 2**20)) as url:
        reply = _post(url, body)
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "media_too_large"
    message = reply.json()["error"]["message"]
    assert "40.0 MB" in message and "16 MB" in message and "--max-media-mb" in message and str(tmp_path) not in message


def test_local_media_refused_without_media_root(engine):
    with serving(engine, ServerSettings(model_name="tiny")) as url:
        reply = _post(url, {"model": "tiny", "messages": [{"role": "user", "content": [_image_part("/etc/hosts")]}]})
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "local_media_disabled"


def test_api_key(engine):
    with serving(engine, ServerSettings(model_name="tiny", api_key="s3cret")) as url:
        with pytest.raises(openai.AuthenticationError):
            _client(url, "wrong").chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                          max_tokens=2)
        reply = _client(url, "s3cret").chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                               max_tokens=2)
        assert reply.choices[0].message.content is not None
        assert httpx.get(f"{url}/health").status_code == 200  # health stays open for probes


def test_full_queue_is_429_and_a_disconnected_stream_frees_its_slot(engine):
    with serving(engine, ServerSettings(model_name="tiny", max_queue=1, max_tokens_limit=4096)) as url:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "Tell me everything."}], "max_tokens": 4000,
                "stream": True, "temperature": 0, "ignore_eos": True}
        with httpx.Client(timeout=60) as client:
            with client.stream("POST", f"{url}/v1/chat/completions", json=body) as stream:
                lines = stream.iter_lines()  # keep the iterator: dropping it closes the response
                first = next(lines)
                assert first.startswith("data: ")
                assert httpx.get(f"{url}/health").json()["in_flight"] == 1
                busy = _post(url, {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
                assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
            # the client went away mid-stream: the slot must come back long before 4000 tokens would finish
        deadline = time.time() + 20
        while time.time() < deadline and httpx.get(f"{url}/health").json()["in_flight"] != 0:
            time.sleep(0.05)
        assert httpx.get(f"{url}/health").json()["in_flight"] == 0
        after = _post(url, {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert after.status_code == 200


def test_load_64_requests_over_16_connections(server):
    def one(i: int) -> int:
        content = "Question %d?" % i if i % 2 else [_image_part("scans/a.png"), {"type": "text", "text": "Describe."}]
        return _post(server, {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 6,
                              "temperature": 0}).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one, range(64)))
    assert statuses == [200] * 64
    metrics = httpx.get(f"{server}/metrics").text
    assert "hulumed_requests_total" in metrics and "hulumed_request_latency_seconds_bucket" in metrics
    sizes = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
             if line.startswith("hulumed_batch_size_") and not line.startswith("#")}
    assert sizes["hulumed_batch_size_sum"] > sizes["hulumed_batch_size_count"]  # some batches held >1 request


def test_models_and_metrics_endpoints(server):
    models = _client(server).models.list()
    assert [m.id for m in models.data] == ["tiny"]
    text = httpx.get(f"{server}/metrics").text
    for name in ("hulumed_requests_total", "hulumed_errors_total", "hulumed_queue_depth", "hulumed_prompt_tokens_total",
                 "hulumed_completion_tokens_total", "hulumed_request_latency_seconds_bucket"):
        assert name in text
    assert json.loads(httpx.get(f"{server}/health").text)["model"] == "tiny"


def test_readme_openai_example_runs(server, media_root, tmp_path, monkeypatch, capsys):
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"<!-- example: openai -->\s*```python\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "cxr.png").write_bytes((INPUTS / "image_a.png").read_bytes())
    monkeypatch.chdir(tmp_path)
    code = code.replace('"http://127.0.0.1:8000/v1"', repr(f"{server}/v1"))
    code = code.replace('"ZJU-AI4H/Hulu-Med-7B"', '"tiny"').replace('"ct/chest.nii.gz"', '"ct.nii.gz"')
    code = code.replace("max_tokens=256", "max_tokens=4").replace('"slices": 32', '"slices": 4')
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own README
    assert "CompletionUsage" in capsys.readouterr().out


def test_one_error_table_for_the_json_and_the_streamed_reply(engine):
    """The same engine error gets the same status and code whether the request streamed (an error event) or not
    (serve/error_table.py); before, a streamed request lost the code and a non-ValueError became a 500."""
    from hulumed.errors import CheckpointError, MediaError, StructuredOutputError
    from hulumed.serve.error_table import api_error

    class Failing:
        def __init__(self, inner, error):
            self.inner, self.error = inner, error

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def generate(self, *args, **kwargs):
            raise self.error

        def stream(self, *args, **kwargs):
            raise self.error
            yield  # a generator, as the real one

    cases = [(StructuredOutputError("llguidance ran out of fuel"), 400, "structured_output_failed"),
             (MediaError("frame 3 is truncated"), 400, "invalid_media"),
             (CheckpointError("chat_template: rendering took over 5 s"), 500, "checkpoint_error")]
    for error, status, code in cases:
        assert (api_error(error).status, api_error(error).code) == (status, code)
        with serving(Failing(engine, error), ServerSettings(model_name="tiny")) as url:
            body = {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
            plain = _post(url, body)
            assert plain.status_code == status and plain.json()["error"]["code"] == code
            streamed = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=60)
            events = [json.loads(line[5:]) for line in streamed.text.splitlines()
                      if line.startswith("data:") and line.strip() != "data: [DONE]"]
            assert events[-1]["error"]["code"] == code

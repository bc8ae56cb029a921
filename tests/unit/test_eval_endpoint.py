"""The endpoint engine without a server: message parts, request bodies, replies, and the bounded spread of
requests over endpoints (the client's ``post`` replaced by a fake that records what is in flight)."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")

from hulumed.backends.endpoint import EndpointEngine, EndpointError, openai_part, request_body, result_of
from hulumed.generation import GenerationParams


class FakeResponse:
    """What ``httpx.Client.stream`` yields, enough for the engine's bounded reader."""

    def __init__(self, status: int, body: Any) -> None:
        self.status_code, self.headers = status, {}
        self._data = body if isinstance(body, bytes) else json.dumps(body).encode()

    def iter_bytes(self) -> Any:
        yield from (self._data[i:i + 64] for i in range(0, len(self._data), 64))

    def __enter__(self) -> "FakeResponse":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _serve(engine: EndpointEngine, answer: Any) -> None:
    """Route the engine's requests to ``answer(url, body) -> FakeResponse``."""
    engine._client.stream = lambda method, url, json, **kwargs: answer(url, json)  # type: ignore[method-assign]


def _reply(text: str) -> dict[str, Any]:
    return {"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"visual_tokens": 2}}}


def test_parts_volume_folder_text(tmp_path: Path) -> None:
    volume = tmp_path / "ct.nii.gz"
    volume.write_bytes(b"\x1f\x8b fake")
    part = openai_part({"type": "3d", "3d": {"image_path": str(volume), "nii_axis": 2}})
    assert part["type"] == "volume_url" and part["volume_url"]["axis"] == 2
    assert base64.b64decode(part["volume_url"]["url"].split(",", 1)[1]) == b"\x1f\x8b fake"
    part = openai_part({"type": "video", "video": {"video_path": str(tmp_path), "fps": 1, "max_frames": 1800}})
    assert part == {"type": "video_url", "video_url": {"url": str(tmp_path.resolve()), "fps": 1, "max_frames": 1800}}
    assert openai_part({"type": "text", "text": "hi"}) == {"type": "text", "text": "hi"}
    with pytest.raises(EndpointError, match="cannot be sent"):
        openai_part({"type": "audio"})


def test_body_and_reply() -> None:
    conversation = [{"role": "user", "content": "hi"}]
    greedy = request_body("m", conversation, GenerationParams.greedy(9))
    assert greedy == {"model": "m", "messages": conversation, "max_tokens": 9, "temperature": 0.0}
    sampled = request_body("m", conversation, GenerationParams(max_new_tokens=4, do_sample=True, temperature=0.7,
                                                               top_p=0.8, stop=["\n"], seed=3))
    assert sampled["temperature"] == 0.7 and sampled["top_p"] == 0.8 and sampled["stop"] == ["\n"]
    result = result_of({"choices": [{"message": {"content": "B", "reasoning_content": "because"},
                                     "finish_reason": "length"}], "usage": {"prompt_tokens": 3}})
    assert (result.text, result.reasoning, result.finish_reason, result.prompt_tokens) == ("B", "because", "length", 3)


def test_requests_spread_over_endpoints_with_bounded_concurrency() -> None:
    engine = EndpointEngine(["http://a:1", "http://b:1/v1"], "m", concurrency=2)
    in_flight = {"http://a:1/v1": 0, "http://b:1/v1": 0}
    peak = dict(in_flight)
    lock = threading.Lock()

    def post(url: str, json: dict[str, Any]) -> FakeResponse:
        base = url.rsplit("/chat/completions", 1)[0]
        with lock:
            in_flight[base] += 1
            peak[base] = max(peak[base], in_flight[base])
        time.sleep(0.02)
        with lock:
            in_flight[base] -= 1
        return FakeResponse(200, _reply(json["messages"][0]["content"]))

    _serve(engine, post)
    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(20)]
    results = engine.generate(conversations, GenerationParams.greedy(2))
    assert [r.text for r in results] == [f"q{i}" for i in range(20)]  # input order kept
    assert peak == {"http://a:1/v1": 2, "http://b:1/v1": 2}
    assert sum(engine.sent.values()) == 20 and all(engine.sent.values())
    assert results[0].visual_tokens == 2 and engine.batch_size == 4


def test_retries_then_gives_up_or_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hulumed.backends.endpoint.time.sleep", lambda s: None)
    engine = EndpointEngine(["http://a:1"], "m", retries=2)
    answers = iter([FakeResponse(503, {"error": {"message": "busy"}}), FakeResponse(200, _reply("ok"))])
    _serve(engine, lambda url, body: next(answers))
    assert engine.generate([[{"role": "user", "content": "x"}]])[0].text == "ok"
    _serve(engine, lambda url, body: FakeResponse(400, {"error": {"message": "bad image"}}))
    with pytest.raises(EndpointError, match="HTTP 400: bad image"):
        engine.generate([[{"role": "user", "content": "x"}]])
    _serve(engine, lambda url, body: FakeResponse(429, {"error": {"message": "slow down"}}))
    with pytest.raises(EndpointError, match="gave up after 3 tries: .*slow down"):
        engine.generate([[{"role": "user", "content": "x"}]])


@pytest.mark.parametrize("reply, message", [
    (FakeResponse(200, {"choices": []}), "without choices"),
    (FakeResponse(200, b"[" * 200_000 + b"]" * 200_000), "not JSON"),
    (FakeResponse(200, b"x" * (17 * 2**20)), "over 16 MiB"),
    (FakeResponse(200, {"choices": [{"message": "text"}]}), "message is not an object"),
])
def test_malformed_or_oversized_replies_are_one_clear_error(reply: FakeResponse, message: str) -> None:
    engine = EndpointEngine(["http://a:1"], "m", retries=0)
    _serve(engine, lambda url, body: reply)
    with pytest.raises(EndpointError, match=message):
        engine.generate([{"role": "user", "content": "hi"}], GenerationParams.greedy(4))


def test_a_trickling_reply_is_cut_at_the_total_deadline() -> None:
    """One byte every 50 ms never trips a per-read timeout; the total deadline (0.3 s) stops it."""
    class Trickle(FakeResponse):
        def iter_bytes(self) -> Any:
            while True:
                time.sleep(0.05)
                yield b" "

    engine = EndpointEngine(["http://a:1"], "m", retries=0, timeout_s=0.3)
    _serve(engine, lambda url, body: Trickle(200, b""))
    started = time.monotonic()
    with pytest.raises(EndpointError, match="did not finish its reply within 0.3 s"):
        engine.generate([{"role": "user", "content": "hi"}], GenerationParams.greedy(4))
    assert time.monotonic() - started < 5


def test_unset_generation_fields_mean_the_checkpoints_settings_as_on_the_local_backends() -> None:
    """GenerationParams() samples as the checkpoint's generation_config.json on both local backends; the endpoint
    body now leaves those fields out (the server applies the checkpoint's), instead of forcing greedy."""
    conversation = [{"role": "user", "content": "hi"}]
    body = request_body("m", conversation, GenerationParams(max_new_tokens=5))
    assert not {"temperature", "top_p", "top_k"} & set(body)
    assert request_body("m", conversation, GenerationParams.greedy(5))["temperature"] == 0.0
    assert request_body("m", conversation, GenerationParams(temperature=0.3, top_p=0.9))["temperature"] == 0.3

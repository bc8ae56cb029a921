"""``response_format`` / ``structured_outputs`` through the HTTP server, streamed and not, with every media kind;
bad schemas are a 400 with the reason; the CLI's ``--json-schema`` / ``--choice`` and batch lines."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")

import hulumed  # noqa: E402
from hulumed.conversation import user_turn  # noqa: E402
from hulumed.generation import GenerationParams  # noqa: E402
from hulumed.serve.background import serving  # noqa: E402
from hulumed.serve.settings import ServerSettings  # noqa: E402
from hulumed.structured import StructuredOutput, load_schema  # noqa: E402
from tests.conftest import GOLDEN  # noqa: E402

INPUTS = GOLDEN / "inputs"
FINDING = {
    "type": "object",
    "properties": {"organ": {"type": "string", "enum": ["lung", "liver"]}, "present": {"type": "boolean"},
                   "note": {"type": "string", "maxLength": 20}},
    "required": ["organ", "present", "note"], "additionalProperties": False,
}


def _uri(path: Path, media_type: str) -> str:
    return f"data:{media_type};base64," + base64.b64encode(path.read_bytes()).decode()


#: (OpenAI content parts, the same conversation for the engine)
MEDIA = {
    "text": ([], {}),
    "image": ([{"type": "image_url", "image_url": {"url": _uri(INPUTS / "image_a.png", "image/png")}}],
              {"images": [str(INPUTS / "image_a.png")]}),
    "video": ([{"type": "video_url", "video_url": {"url": _uri(INPUTS / "video.mp4", "video/mp4")}}],
              {"video": str(INPUTS / "video.mp4")}),
    "volume": ([{"type": "volume_url", "volume_url": {"url": _uri(INPUTS / "volume.nii.gz", "application/gzip"),
                                                      "slices": 4}}],
               {"volume": str(INPUTS / "volume.nii.gz"), "slices": 4}),
}


@pytest.fixture(scope="module")
def engine():
    engine = hulumed.load(GOLDEN / "tiny-qwen2", device="cpu", batch_size=8)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine):
    with serving(engine, ServerSettings(model_name="tiny", max_tokens_limit=400)) as url:
        yield url


def _messages(media: str) -> list[dict]:
    parts, _ = MEDIA[media]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": "Findings?"}]}]


@pytest.mark.parametrize("media", sorted(MEDIA))
def test_json_schema_answers_validate_and_equal_the_engine_streamed_and_not(server, engine, media):
    _, given = MEDIA[media]
    spec = StructuredOutput.json_schema(FINDING)
    [expected] = engine.generate([user_turn("Findings?", **given)], GenerationParams.greedy(200, structured=spec))
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)
    response_format = {"type": "json_schema", "json_schema": {"name": "finding", "schema": FINDING}}
    reply = client.chat.completions.create(model="tiny", messages=_messages(media), max_tokens=200, temperature=0,
                                           response_format=response_format)
    text = reply.choices[0].message.content
    jsonschema.validate(json.loads(text), FINDING)
    assert text == expected.text and reply.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model="tiny", messages=_messages(media), max_tokens=200,
                                                 temperature=0, response_format=response_format, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text


def test_json_object_shipped_schema_by_name_and_vllm_style_fields(server):
    body = {"model": "tiny", "messages": _messages("image"), "max_tokens": 400, "temperature": 0}
    answer = httpx.post(f"{server}/v1/chat/completions", timeout=120, json={
        **body, "response_format": {"type": "json_object"}}).json()["choices"][0]["message"]["content"]
    assert isinstance(json.loads(answer), dict)
    answer = httpx.post(f"{server}/v1/chat/completions", timeout=120, json={
        **body, "response_format": {"type": "json_schema", "json_schema": {"name": "triage"}}}).json()
    jsonschema.validate(json.loads(answer["choices"][0]["message"]["content"]), load_schema("triage"))
    answer = httpx.post(f"{server}/v1/chat/completions", timeout=120, json={
        **body, "structured_outputs": {"choice": ["yes", "no"]}}).json()
    assert answer["choices"][0]["message"]["content"] in ("yes", "no")
    answer = httpx.post(f"{server}/v1/chat/completions", timeout=120, json={
        **body, "structured_outputs": {"json": json.dumps(FINDING)}}).json()
    jsonschema.validate(json.loads(answer["choices"][0]["message"]["content"]), FINDING)
    text = httpx.post(f"{server}/v1/chat/completions", timeout=120, json={
        **body, "max_tokens": 8, "response_format": {"type": "text"}}).json()["choices"][0]["message"]["content"]
    with pytest.raises(json.JSONDecodeError):  # "text" constrains nothing: the random model's words
        json.loads(text)


BAD = {
    "unknown type": ({"response_format": {"type": "xml"}}, "must be text, json_object or json_schema"),
    "no schema": ({"response_format": {"type": "json_schema", "json_schema": {"name": "mine"}}}, "has no schema"),
    "invalid schema": ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "nonsense"}}}}, "Invalid type"),
    "unsupported format": ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "string", "format": "bogus"}}}}, "Unknown format"),
    "oversized schema": ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"enum": ["y" * 70_000]}}}}, "the limit is 65536"),
    "both forms": ({"response_format": {"type": "json_object"}, "structured_outputs": {"choice": ["a"]}},
                   "not both"),
    "bad regex": ({"structured_outputs": {"regex": "("}}, "unclosed group"),
    "unknown vllm field": ({"structured_outputs": {"grammar": "start: x"}}, "unsupported field(s) grammar"),
    "with ignore_eos": ({"response_format": {"type": "json_object"}, "ignore_eos": True}, "exclude each other"),
}


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("stream", [False, True])
def test_bad_response_format_is_a_400_with_the_reason(server, name, stream):
    extra, message = BAD[name]
    body = {"model": "tiny", "messages": _messages("text"), "max_tokens": 5, "stream": stream, **extra}
    reply = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=60)
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]["message"]
    # the server goes on answering
    plain = {key: value for key, value in body.items() if key not in extra}
    ok = httpx.post(f"{server}/v1/chat/completions", json={**plain, "stream": False}, timeout=60)
    assert ok.status_code == 200


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hulumed", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_cli_generate_json_schema_and_choice(tmp_path):
    model = str(GOLDEN / "tiny-qwen2")
    run = _cli("generate", "--model", model, "--device", "cpu", "--greedy", "--max-new-tokens", "400",
               "--json-schema", "triage", "--image", str(INPUTS / "image_a.png"), "Triage.",
               cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    jsonschema.validate(json.loads(run.stdout.strip()), load_schema("triage"))
    schema_file = tmp_path / "finding.json"
    schema_file.write_text(json.dumps(FINDING))
    run = _cli("generate", "--model", model, "--device", "cpu", "--greedy", "--max-new-tokens", "200",
               "--json-schema", str(schema_file), "Findings?", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    jsonschema.validate(json.loads(run.stdout.strip()), FINDING)
    run = _cli("generate", "--model", model, "--device", "cpu", "--greedy", "--choice", "yes", "--choice", "no",
               "Effusion?", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() in ("yes", "no"), run.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "nonsense"}')
    run = _cli("generate", "--model", model, "--json-schema", str(bad), "x", cwd=tmp_path)
    assert run.returncode != 0 and "Invalid type" in run.stderr and "Traceback" not in run.stderr


def test_batch_lines_with_structured_output(tmp_path):
    lines = [
        {"id": "schema", "prompt": "Findings?", "images": [str(INPUTS / "image_a.png")],
         "response_format": {"type": "json_schema", "json_schema": {"name": "f", "schema": FINDING}}},
        {"id": "named", "prompt": "Triage.", "json_schema": "triage"},
        {"id": "choice", "prompt": "Effusion?", "choice": ["yes", "no"]},
        {"id": "free", "prompt": "Hello", "max_new_tokens": 5},
        {"id": "bad", "prompt": "x", "regex": "("},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = _cli("batch", "--model", str(GOLDEN / "tiny-qwen2"), "--device", "cpu", "--greedy",
               "--max-new-tokens", "400", "--input", str(source), "--output", str(tmp_path / "out.jsonl"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = {r["id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    jsonschema.validate(json.loads(out["schema"]["text"]), FINDING)
    jsonschema.validate(json.loads(out["named"]["text"]), load_schema("triage"))
    assert out["choice"]["text"] in ("yes", "no")
    assert "text" in out["free"] and "unclosed group" in out["bad"]["error"]


def test_health_and_requests_answer_503_with_the_reason_when_the_engine_cannot_answer(engine, monkeypatch):
    with serving(engine, ServerSettings(model_name="tiny")) as url:
        assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "ok"
        monkeypatch.setattr(engine, "health", lambda: "the vLLM engine died: EngineDeadError")
        health = httpx.get(f"{url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["reason"] == "the vLLM engine died: EngineDeadError"
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
            "model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 503 and "EngineDeadError" in reply.json()["error"]["message"]
        monkeypatch.undo()
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200

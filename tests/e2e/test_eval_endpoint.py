"""``hulumed eval --endpoint``: the same prompts and media sent to live ``hulumed serve`` servers on loopback (the
tiny random checkpoint), spread over two endpoints, resumable, with the same predictions / metrics files as a
local run — and the same answers, since the same model behind the server sees the same inputs.

One known difference, not the client's: ``hulumed serve`` hands a ``data:`` image to the processor as a file path,
to which upstream's PIL width/height swap applies, while MedUniEval and the local run hand over
in-memory images (no swap). Non-square images are therefore resized differently behind the server, so answers are
compared on samples whose images are all square (where the swap is a no-op) and on text and slice folders."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")
pytest.importorskip("pyarrow")

import hulumed
from hulumed.backends.endpoint import EndpointEngine, EndpointError, request_body
from hulumed.cli import main
from hulumed.eval.benchmarks import get_benchmark
from hulumed.eval.runner import RunOptions, run_benchmark
from hulumed.generation import GenerationParams
from hulumed.interface import Engine, StreamDelta, StreamFinal
from hulumed.serve.background import serving
from hulumed.serve.settings import ServerSettings
from tests.conftest import GOLDEN

EVALDATA = Path(__file__).resolve().parents[1] / "fixtures" / "evaldata"
PARAMS = GenerationParams.greedy(3)
#: text, parquet image bytes, several image files, a slice folder (video_url path), a report
NAMES = ("MedQA_USMLE", "VQA_RAD", "MedXpertQA-MM", "M3D", "IU_XRAY")


@pytest.fixture(scope="module")
def engine():
    return hulumed.load(GOLDEN / "tiny-qwen2", device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def urls(engine):
    settings = ServerSettings(model_name="tiny", media_root=EVALDATA)
    with serving(engine, settings) as first, serving(engine, settings) as second:
        yield [first, f"{second}/v1"]


def _square(image: str | bytes) -> bool:
    from PIL import Image

    with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as picture:
        return picture.width == picture.height


def test_images_travel_losslessly() -> None:
    import base64

    import numpy as np
    from PIL import Image

    from hulumed.backends.endpoint import openai_part

    sample = get_benchmark("VQA_RAD").load(EVALDATA)[1]
    part = sample.conversation()[0]["content"][0]
    url = openai_part(part)["image_url"]["url"]
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert np.array_equal(np.asarray(decoded), np.asarray(part["image"]["image_path"]))


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_endpoint_run_matches_the_local_run(engine, urls, tmp_path: Path) -> None:
    remote = EndpointEngine(urls, "tiny", concurrency=2)
    assert isinstance(remote, Engine)
    for name in NAMES:
        benchmark = get_benchmark(name)
        local = run_benchmark(engine, benchmark, EVALDATA, tmp_path / "local", PARAMS, RunOptions(limit=4))
        served = run_benchmark(remote, benchmark, EVALDATA, tmp_path / "remote", PARAMS, RunOptions(limit=4))
        mine = _records(tmp_path / "remote" / name / "predictions.jsonl")
        theirs = _records(tmp_path / "local" / name / "predictions.jsonl")
        assert [r["id"] for r in mine] == [r["id"] for r in theirs]
        assert [r["prompt_hash"] for r in mine] == [r["prompt_hash"] for r in theirs]
        assert [r["answer"] for r in mine] == [r["answer"] for r in theirs]
        samples = {s.id: s for s in benchmark.load(EVALDATA)}
        same = [r["id"] for r in theirs if all(_square(image) for image in samples[r["id"]].images)]
        assert same or name in ("VQA_RAD",), name
        assert [r["response"] for r in mine if r["id"] in same] == [r["response"] for r in theirs if r["id"] in same]
        assert set(served) - {"endpoints"} == set(local) and served["model"] == "tiny"
        assert served["endpoints"] == remote.urls
    assert all(count > 0 for count in remote.sent.values())  # both servers answered
    remote.close()


def test_endpoint_run_resumes(urls, tmp_path: Path) -> None:
    remote = EndpointEngine(urls, "tiny", concurrency=1)
    benchmark = get_benchmark("MedQA_USMLE")
    run_benchmark(remote, benchmark, EVALDATA, tmp_path, PARAMS, RunOptions(limit=2))
    before = sum(remote.sent.values())
    metrics = run_benchmark(remote, benchmark, EVALDATA, tmp_path, PARAMS, RunOptions(limit=5))
    ids = [r["id"] for r in _records(tmp_path / "MedQA_USMLE" / "predictions.jsonl")]
    assert metrics["count"] == 5 and len(ids) == len(set(ids)) == 5
    assert sum(remote.sent.values()) - before == 3  # only the three new samples were sent
    remote.close()


def test_cli_endpoint(urls, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", *[a for url in urls for a in ("--endpoint", url)], "--model", "tiny", "--benchmarks",
                 "pubmedqa,vqa-rad", "--data-dir", str(EVALDATA), "--output", str(tmp_path), "--limit", "2",
                 "--max-new-tokens", "2", "--concurrency", "2"])
    assert code == 0
    out = capsys.readouterr()
    assert "PubMedQA: 2 samples" in out.out and "| VQA_RAD |" in out.out
    assert "VQA_RAD" in out.err  # the progress bar
    for name in ("PubMedQA", "VQA_RAD"):
        assert json.loads((tmp_path / name / "metrics.json").read_text())["count"] == 2


def test_stream_and_refusals(urls) -> None:
    remote = EndpointEngine(urls[:1], "tiny")
    conversation = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    events = list(remote.stream(conversation, GenerationParams.greedy(3)))
    assert isinstance(events[-1], StreamFinal)
    assert "".join(e.text for e in events if isinstance(e, StreamDelta)) == events[-1].result.text
    assert events[-1].result.completion_tokens > 0
    wrong = EndpointEngine(urls[:1], "no-such-model", retries=0)
    with pytest.raises(EndpointError, match="HTTP 404"):
        wrong.generate([conversation], PARAMS)
    dead = EndpointEngine(["http://127.0.0.1:9"], "tiny", retries=1)
    with pytest.raises(EndpointError, match="gave up after 2 tries"):
        dead.generate([conversation], PARAMS)
    body = request_body("tiny", conversation, GenerationParams.greedy(7, think=True))
    assert body["temperature"] == 0.0 and body["max_tokens"] == 7 and body["think"] is True
    for client in (remote, wrong, dead):
        client.close()

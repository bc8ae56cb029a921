"""A downloaded benchmark release and an evaluated endpoint are untrusted input (issue: every input bounded, items
2 and 3): a zip bomb is refused before it is written, a bad row or a failing sample becomes an error record with
its benchmark and row, and the run goes on and resumes."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

import hulumed
from hulumed.errors import DataError, EndpointError
from hulumed.eval.benchmarks import get_benchmark
from hulumed.eval.runner import RunOptions, run_benchmark
from hulumed.generation import GenerationParams
from tests.conftest import GOLDEN

EVALDATA = Path(__file__).resolve().parents[1] / "fixtures" / "evaldata"
PARAMS = GenerationParams.greedy(2)
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HULUMED_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def engine():
    engine = hulumed.load(GOLDEN / "tiny-qwen2", device="cpu", batch_size=4)
    yield engine
    engine.close()


def _copy(name: str, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(EVALDATA / name, data / name)
    return data


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_zip_bomb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = _copy("SLAKE", tmp_path)
    shutil.rmtree(data / "SLAKE" / "imgs")
    before = sorted(p.name for p in (data / "SLAKE").iterdir())
    with zipfile.ZipFile(data / "SLAKE" / "imgs.zip", "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("imgs/xmlab1/source.jpg", b"\0" * (64 * 2**20))  # 64 MiB of zeros: ~64 KiB zipped
    assert (data / "SLAKE" / "imgs.zip").stat().st_size < 2**20
    with pytest.raises(DataError, match="decompression bomb"):
        get_benchmark("SLAKE").load(data)
    assert sorted(p.name for p in (data / "SLAKE").iterdir()) == sorted([*before, "imgs.zip"])  # nothing extracted


def test_zip_over_the_free_disk_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hulumed.eval import data_files

    data = _copy("SLAKE", tmp_path)
    shutil.make_archive(str(data / "SLAKE" / "imgs"), "zip", data / "SLAKE", "imgs")
    shutil.rmtree(data / "SLAKE" / "imgs")
    monkeypatch.setattr(data_files.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10, 10, 0))
    with pytest.raises(DataError, match="free; not extracted"):
        get_benchmark("SLAKE").load(data)


def test_bad_release_rows_are_error_records_and_the_run_goes_on(engine, tmp_path: Path) -> None:
    data = _copy("MedQA_USMLE", tmp_path)
    source = data / "MedQA_USMLE" / "phrases_no_exclude_test.jsonl"
    good = source.read_text(encoding="utf-8").splitlines()[:3]
    source.write_text("\n".join([good[0], DEEP, '"a string row"', '{"question": "bad \\ud800"}', "{torn",
                                 good[1], good[2]]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    metrics = run_benchmark(engine, get_benchmark("MedQA_USMLE"), data, out, PARAMS, RunOptions())
    assert metrics["count"] == 3 and metrics["errors"] == {"release_rows": 4, "samples": 0}
    errors = _lines(out / "MedQA_USMLE" / "errors.jsonl")
    assert [(e["benchmark"], e["row"], e["kind"]) for e in errors] == [("MedQA_USMLE", n, "release_row")
                                                                      for n in (2, 3, 4, 5)]
    reasons = [e["error"] for e in errors]
    assert "nested too deeply" in reasons[0] and "not str" in reasons[1]
    assert "surrogate" in reasons[2] and "malformed JSON" in reasons[3]


def test_csv_field_over_the_limit_is_one_row_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hulumed.eval import data_files

    monkeypatch.setattr(data_files, "MAX_CSV_FIELD", 128 * 1024)
    data = _copy("PMC_VQA", tmp_path)
    csv_path = data / "PMC_VQA" / "test_2.csv"
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    header, first = lines[0], lines[1]
    huge = first + ',"' + "x" * 200_000 + '"'  # one extra cell of 200 KB
    csv_path.write_text("\n".join([header, huge, *lines[1:]]) + "\n", encoding="utf-8")
    errors: list = []
    samples = get_benchmark("PMC-VQA").load(data, row_errors=errors)
    assert len(samples) == len(lines) - 1
    assert len(errors) == 1 and "field larger than field limit" in errors[0]["error"]


def test_a_sample_whose_image_is_not_an_image_is_an_error_record(engine, tmp_path: Path) -> None:
    data = _copy("SLAKE", tmp_path)
    rows = json.loads((data / "SLAKE" / "test.json").read_text())
    broken = data / "SLAKE" / "imgs" / rows[0]["img_name"]
    original = broken.read_bytes()
    broken.write_text("this is a text file, not a JPEG")
    out = tmp_path / "out"
    metrics = run_benchmark(engine, get_benchmark("SLAKE"), data, out, PARAMS, RunOptions())
    same_image = sum(r["img_name"] == rows[0]["img_name"] for r in rows if r.get("q_lang") == "en")
    predictions = _lines(out / "SLAKE" / "predictions.jsonl")
    errors = _lines(out / "SLAKE" / "errors.jsonl")
    assert metrics["errors"]["samples"] == len(errors) == same_image >= 1
    assert metrics["count"] == len(predictions) and predictions
    assert all(e["benchmark"] == "SLAKE" and e["kind"] == "sample" and e["id"] for e in errors)
    assert not {e["id"] for e in errors} & {p["id"] for p in predictions}
    broken.write_bytes(original)  # fixed: the rerun answers exactly the failed samples and clears errors.jsonl
    again = run_benchmark(engine, get_benchmark("SLAKE"), data, out, PARAMS, RunOptions())
    assert again["count"] == len(predictions) + len(errors) and again["errors"]["samples"] == 0
    assert not (out / "SLAKE" / "errors.jsonl").exists()


class _Dead:
    """An engine whose every request fails as an unreachable endpoint does."""

    def __init__(self, options) -> None:
        self.options = options
        self.calls = 0

    def generate(self, conversations, params=None):
        self.calls += 1
        raise EndpointError("http://127.0.0.1:9/v1/chat/completions could not be reached after 3 tries")

    def generate_each(self, requests):  # as EndpointEngine: concurrent requests, 4 in flight
        from hulumed.interface import generate_concurrently

        return generate_concurrently(self, requests, 4)


def test_a_dead_endpoint_stops_the_run_after_a_bounded_number_of_failures(engine, tmp_path: Path) -> None:
    from hulumed.eval.runner import MAX_FAILURES_IN_A_ROW

    data = _copy("MedQA_USMLE", tmp_path)
    source = data / "MedQA_USMLE" / "phrases_no_exclude_test.jsonl"
    row = source.read_text(encoding="utf-8").splitlines()[0]
    source.write_text("".join(row.replace('"question": "', f'"question": "{i} ') + "\n" for i in range(60)))
    dead = _Dead(engine.options)
    with pytest.raises(EndpointError, match=f"{MAX_FAILURES_IN_A_ROW} samples in a row failed"):
        run_benchmark(dead, get_benchmark("MedQA_USMLE"), data, tmp_path / "out", PARAMS, RunOptions())
    assert dead.calls <= MAX_FAILURES_IN_A_ROW + MAX_FAILURES_IN_A_ROW // 4 + 1
    assert len(_lines(tmp_path / "out" / "MedQA_USMLE" / "errors.jsonl")) == MAX_FAILURES_IN_A_ROW


def test_malformed_endpoint_replies_are_error_records_for_their_samples(tmp_path: Path) -> None:
    pytest.importorskip("httpx")
    from hulumed.backends.endpoint import EndpointEngine
    from tests.unit.test_eval_endpoint import FakeResponse, _reply, _serve

    data = _copy("MedQA_USMLE", tmp_path)
    source = data / "MedQA_USMLE" / "phrases_no_exclude_test.jsonl"
    row = source.read_text(encoding="utf-8").splitlines()[0]
    source.write_text("".join(row.replace('"question": "', f'"question": "{tag} ') + "\n"
                              for tag in ("ok1", "EMPTY", "ok2", "DEEP", "ok3")))
    replies = {"EMPTY": FakeResponse(200, {"choices": []}),
               "DEEP": FakeResponse(200, b"[" * 200_000 + b"]" * 200_000)}

    def answer(url, body):
        text = json.dumps(body)
        return next((reply for tag, reply in replies.items() if tag in text), None) or FakeResponse(200, _reply("A"))

    endpoint = EndpointEngine(["http://a:1"], "m", retries=0)
    _serve(endpoint, answer)
    metrics = run_benchmark(endpoint, get_benchmark("MedQA_USMLE"), data, tmp_path / "out", PARAMS, RunOptions())
    errors = _lines(tmp_path / "out" / "MedQA_USMLE" / "errors.jsonl")
    assert metrics["count"] == 3 and metrics["errors"]["samples"] == 2
    assert ["without choices" in errors[0]["error"], "not JSON" in errors[1]["error"]] == [True, True]


def test_parquet_image_bytes_that_are_not_an_image_are_an_error_record(engine, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    data = _copy("VQA_RAD", tmp_path)
    path = next((data / "VQA_RAD" / "data").glob("*.parquet"))
    rows = pq.read_table(path).to_pylist()[:3]
    rows[1]["image"] = {"bytes": b"GIF89a this is not an image", "path": None}
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows), path)
    metrics = run_benchmark(engine, get_benchmark("VQA_RAD"), data, tmp_path / "out", PARAMS, RunOptions())
    errors = _lines(tmp_path / "out" / "VQA_RAD" / "errors.jsonl")
    assert metrics["count"] == 2 and len(errors) == 1 and "image 0 is not a readable image" in errors[0]["error"]

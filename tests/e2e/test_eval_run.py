"""``hulumed eval`` end to end on the tiny random checkpoint: plumbing and counts (not accuracy), resume, shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hulumed
from hulumed.cli import main
from hulumed.eval.benchmarks import BENCHMARKS, get_benchmark
from hulumed.eval.runner import RunOptions, merge, run_benchmark, write_summary
from hulumed.generation import GenerationParams
from tests.conftest import GOLDEN
from tests.unit.test_eval_benchmarks import write_release

PARAMS = GenerationParams.greedy(3)


@pytest.fixture(scope="module")
def engine():
    return hulumed.load(GOLDEN / "tiny-qwen2", device="cpu", batch_size=4)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_benchmark_runs_and_scores(engine, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    for benchmark in BENCHMARKS:
        expected = write_release(data, benchmark.name)
        if benchmark.judge == "rubric":  # graded only by an LLM judge: tests/e2e/test_eval_judge.py runs it
            with pytest.raises(ValueError, match="--judge-url"):
                run_benchmark(engine, benchmark, data, out, PARAMS, RunOptions(limit=2))
            continue
        metrics = run_benchmark(engine, benchmark, data, out, PARAMS, RunOptions(limit=2))
        records = _lines(out / benchmark.name / "predictions.jsonl")
        assert metrics["count"] == len(records) == min(2, expected)
        assert metrics["benchmark_version"] == benchmark.version and metrics["seed"] == 42
        assert metrics["generation"]["do_sample"] is False
        assert 0 <= metrics["unparsable"] <= metrics["count"]
        for record in records:
            assert {"id", "prompt_hash", "response", "parsed", "correct"} <= set(record)
        if benchmark.submission:  # hidden answers: a submission file for the leaderboard, no score
            submission = json.loads((out / benchmark.name / "submission.json").read_text())
            assert set(submission) == {r["id"] for r in records} and "accuracy" not in metrics
            assert metrics["upload_to"].startswith("https://eval.ai/")
            assert all(r["correct"] is None for r in records)
        elif any(record["kind"] != "report" for record in records):
            assert 0.0 <= metrics["accuracy"] <= 1.0
        else:
            assert "bleu1" in metrics["metrics"]
    table = write_summary(out).read_text()
    assert all(f"| {b.name} |" in table for b in BENCHMARKS if b.judge != "rubric")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_killed_run_resumes_without_loss_or_duplicates(engine, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_release(data, "MedQA_USMLE")
    benchmark = get_benchmark("MedQA_USMLE")
    run_benchmark(engine, benchmark, data, out, PARAMS, RunOptions(limit=2))
    path = out / "MedQA_USMLE" / "predictions.jsonl"
    first = path.read_text().splitlines()
    path.write_text(first[0] + "\n" + first[1][:10])  # killed while writing the second line
    metrics = run_benchmark(engine, benchmark, data, out, PARAMS, RunOptions())
    ids = [r["id"] for r in _lines(path)]
    assert metrics["count"] == 3 and sorted(ids) == sorted(set(ids)) and len(ids) == 3
    assert path.read_text().splitlines()[0] == first[0]


def test_shards_merge_to_the_unsharded_run(engine, tmp_path: Path) -> None:
    data, out, single = tmp_path / "data", tmp_path / "out", tmp_path / "single"
    write_release(data, "SLAKE")
    benchmark = get_benchmark("SLAKE")
    for index in range(2):
        run_benchmark(engine, benchmark, data, out, PARAMS, RunOptions(shard=(index, 2)))
    merged = merge(benchmark, out, 2)
    whole = run_benchmark(engine, benchmark, data, single, PARAMS, RunOptions())
    assert merged["count"] == whole["count"] == 3
    assert merged["accuracy"] == whole["accuracy"]
    by_id = {r["id"]: r["response"] for r in _lines(single / "SLAKE" / "predictions.jsonl")}
    assert {r["id"]: r["response"] for r in _lines(out / "SLAKE" / "predictions.jsonl")} == by_id


def test_cli_list_and_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--list"]) == 0
    assert "VQA_RAD" in capsys.readouterr().out
    write_release(tmp_path / "data", "VQA_RAD")
    code = main(["eval", "--model", str(GOLDEN / "tiny-qwen2"), "--benchmarks", "vqa-rad", "--data-dir",
                 str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--limit", "2", "--max-new-tokens", "2",
                 "--device", "cpu", "--blank-images", "--scoring", "upstream"])
    assert code == 0
    metrics = json.loads((tmp_path / "out" / "VQA_RAD" / "metrics.json").read_text())
    assert metrics["count"] == 2 and metrics["blank_images"] and metrics["scoring"] == "upstream"
    assert (tmp_path / "out" / "summary.md").exists()


def test_m3d_upstream_headline_is_the_category_average(engine, tmp_path: Path) -> None:
    write_release(tmp_path / "data", "M3D")
    metrics = run_benchmark(engine, get_benchmark("M3D"), tmp_path / "data", tmp_path / "out", PARAMS,
                            RunOptions(scoring="upstream"))
    assert metrics["accuracy_averaging"] == "category"
    assert metrics["accuracy"] == metrics["accuracy_category_averaged"]
    groups = metrics["accuracy_by_group"]
    assert metrics["accuracy_category_averaged"] == sum(groups.values()) / len(groups)
    assert "accuracy_plain" in metrics and "metrics_category_averaged" in metrics


def test_metrics_group_along_every_dimension(engine, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_release(data, "OmniMedVQA")
    metrics = run_benchmark(engine, get_benchmark("OmniMedVQA"), data, out, PARAMS, RunOptions())
    assert set(metrics["groups"]) == {"question_type", "modality_type"}
    assert metrics["groups"]["modality_type"]["Fundus Photography"]["count"] == 2
    assert set(metrics["accuracy_by_group"]) == {"Disease Diagnosis"}
    path = out / "OmniMedVQA" / "predictions.jsonl"
    assert all(r["groups"]["modality_type"] == "Fundus Photography" for r in _lines(path))
    # a file written before the dimensions existed: the dimensions come from the samples on resume
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "groups"}) + "\n" for r in _lines(path)))
    again = run_benchmark(engine, get_benchmark("OmniMedVQA"), data, out, PARAMS, RunOptions())
    assert again["groups"] == metrics["groups"]


def test_resume_refuses_other_settings(engine, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    benchmark = get_benchmark("MedQA_USMLE")
    write_release(data, benchmark.name)
    run_benchmark(engine, benchmark, data, out, PARAMS, RunOptions(limit=1))
    run_benchmark(engine, benchmark, data, out, PARAMS, RunOptions(limit=2))  # same settings: resumes
    with pytest.raises(ValueError, match="same settings"):
        run_benchmark(engine, benchmark, data, out, GenerationParams.greedy(5), RunOptions(limit=3))
    with pytest.raises(ValueError, match="same settings"):
        run_benchmark(engine, benchmark, data, out, PARAMS, RunOptions(limit=3, scoring="upstream"))


def test_every_real_release_sample_runs_end_to_end(engine, tmp_path: Path) -> None:
    """The 19 real-release samples of tests/fixtures/evaldata, as downloaded, through the tiny checkpoint: every
    selected row answered and scored, references as loaded from the raw files, media read without error."""
    pytest.importorskip("pyarrow")
    from tests.unit.test_eval_releases import EVALDATA, EXPECTED

    for name in sorted(EXPECTED):
        benchmark = get_benchmark(name)
        samples = benchmark.load(EVALDATA)[:3]
        metrics = run_benchmark(engine, benchmark, EVALDATA, tmp_path, PARAMS, RunOptions(limit=3))
        records = _lines(tmp_path / name / "predictions.jsonl")
        assert metrics["count"] == len(records) == len(samples), name
        assert [r["answer"] for r in records] == [s.answer for s in samples], name
        assert [r["answer"] for r in records] == [answer for _, answer in EXPECTED[name]()[:3]], name


def test_report_benchmark_with_cider(engine, tmp_path: Path) -> None:
    """--report-metrics cider: computed over the benchmark's reports, into metrics.json with BLEU / METEOR."""
    pytest.importorskip("pycocoevalcap")
    from hulumed.eval.report_metrics import ReportMetricOptions

    write_release(tmp_path / "data", "IU_XRAY")
    options = RunOptions(report_metrics=ReportMetricOptions(names=("cider",)))
    metrics = run_benchmark(engine, get_benchmark("IU_XRAY"), tmp_path / "data", tmp_path / "out", PARAMS, options)
    assert {"cider", "meteor", "bleu1", "rougel"} <= set(metrics["metrics"]) and metrics["metrics"]["cider"] >= 0

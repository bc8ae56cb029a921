"""Running benchmarks through the engine: greedy generation, resumable predictions, metrics, merging.

Per benchmark, ``O/<name>/`` holds ``predictions.jsonl`` (one line per sample: id, prompt hash, raw response,
parsed answer, correct, metrics) and ``metrics.json`` (benchmark version, scoring mode, model, generation
params, seed, counts of unparsable answers). A shard ``i/n`` (samples with ``index % n == i``, as upstream)
writes ``predictions.shard-i-of-n.jsonl``; ``merge`` joins the shards. A benchmark's samples all go to the
engine (``Engine.generate_each``: it batches them, and a failing sample fails alone with an error record and no
prediction); lines are appended and synced every ``WRITE_EVERY`` answers, so a killed run resumes where it
stopped: finished ids are skipped and a torn last line is dropped. Resumed with the LLM judge on, finished
records of judged samples that have no verdict yet are judged and the file is rewritten atomically (a
temporary file, then ``os.replace``).
``O/summary.md`` tabulates every benchmark's ``metrics.json``.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, EndpointError
from ..interface import REQUEST_ERRORS, Engine
from ..options import option
from ..think import CLOSE, OPEN
from .benchmarks import Benchmark, Sample
from .judge import JudgeClient
from .report_metrics import ReportMetricOptions
from .scoring import (
    MODES,
    Verdict,
    judge_3d_close,
    judge_3d_open,
    judge_close_end_vqa,
    judge_judgement,
    judge_mmmu_multi_choice,
    judge_mmmu_open,
    judge_multi_choice,
    judge_open_end_vqa,
    judge_report,
)

_AFTER_THINK = f"{CLOSE}\n\n"  # a kept think block and the answer, as upstream's wrapper joined them


@dataclass
class RunOptions:
    """Knobs of one evaluation run."""

    scoring: str = option("fixed", "fixed (default) or upstream's rules (eval --list shows the fixes)",
                          choices=MODES)
    limit: int | None = option(None, "only the first N samples of each benchmark")
    shard: tuple[int, int] = (0, 1)  # (i, n): this process takes samples with index % n == i
    blank_images: bool = option(False, "image ablation: same questions, every image replaced by a black one")
    seed: int = 42
    judge: JudgeClient | None = None  # optional LLM judge (off by default)
    report_metrics: ReportMetricOptions = field(default_factory=ReportMetricOptions)  # CIDEr / BERTScore / RaTE
    progress: bool = False  # a tqdm bar per benchmark (samples done / total, rate, ETA) on stderr


def progress(name: str, total: int, done: int, enabled: bool) -> Any:
    """A tqdm bar for one benchmark, starting at the samples a resumed run already has; a no-op when disabled."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=name, unit="sample", disable=not enabled, dynamic_ncols=True)


def check_media(benchmark: Benchmark, samples: list[Sample]) -> None:
    """Fail before generating anything when media files the samples name are missing (one message, a count and
    the first few paths), instead of aborting on the first missing file mid-run."""
    missing = [path for s in samples for path in s.media_paths() if not Path(path).exists()]
    if missing:
        shown = ", ".join(missing[:3])
        raise DataError(f"{benchmark.name}: {len(missing)} media file(s) named by the release are missing, e.g. "
                        f"{shown}; see docs/eval.md for what to download and extract")


def score(sample: Sample, response: str, mode: str) -> Verdict:
    """Score one response with the judge of the sample's kind."""
    if sample.kind == "rubric":  # the LLM judge grades it (_apply_judge)
        return Verdict(response, None)
    if sample.kind == "mc":
        return judge_multi_choice(sample.choices, sample.answer, response, mode)
    if sample.kind == "mmmu_mc":
        return judge_mmmu_multi_choice(sample.choices, sample.answer, response, mode)
    judges = {"mmmu_open": judge_mmmu_open, "closed": judge_close_end_vqa, "judgement": judge_judgement,
              "open": judge_open_end_vqa,
              "3d_close": judge_3d_close, "3d_open": judge_3d_open, "report": judge_report}
    return judges[sample.kind](sample.answer, response, mode)


def judged(benchmark: Benchmark, sample: Sample) -> bool:
    """Whether the LLM judge re-scores this sample (upstream's per-benchmark choice)."""
    if benchmark.judge == "rubric":
        return True
    if benchmark.judge == "all":
        return sample.kind in ("closed", "judgement", "open")
    return benchmark.judge == "open" and sample.kind == "open"


def select(samples: list[Sample], options: RunOptions) -> list[Sample]:
    """The samples this process runs: ``--limit`` first, then the shard."""
    samples = samples[: options.limit] if options.limit is not None else samples
    index, count = options.shard
    return [s for k, s in enumerate(samples) if k % count == index]


def predictions_path(folder: Path, shard: tuple[int, int]) -> Path:
    index, count = shard
    return folder / ("predictions.jsonl" if count == 1 else f"predictions.shard-{index}-of-{count}.jsonl")


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """Complete lines of a predictions file; a torn last line (killed mid-write) is dropped from the file."""
    if not path.exists():
        return []
    records, good = [], 0
    data = path.read_bytes()
    for line in data.splitlines(keepends=True):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("torn line")
            records.append(json.loads(line))
            good += len(line)
        except ValueError:
            break
    if good != len(data):
        with path.open("r+b") as handle:
            handle.truncate(good)
    return records


def _raw_response(result: Any) -> str:
    """What upstream's wrapper would have returned: the think block is kept."""
    if result.reasoning:
        return f"{OPEN}{result.reasoning}{_AFTER_THINK}{result.text}"
    return result.text


def run_key(benchmark: Benchmark, params: Any, options: RunOptions) -> str:
    """What must not change inside one predictions file: benchmark version, scoring, generation, ablation."""
    import hashlib

    settings = {"version": benchmark.version, "scoring": options.scoring, "generation": asdict(params),
                "blank_images": options.blank_images}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_benchmark(engine: Engine, benchmark: Benchmark, data_dir: Path, output: Path, params: Any,
                  options: RunOptions) -> dict[str, Any]:
    """Generate and score every selected sample not already in the predictions file; write metrics.json."""
    if benchmark.modality == "report":
        options.report_metrics.check()  # before any generation: a missing library or model is one clear error
    row_errors: list[dict[str, Any]] = []
    samples = select(benchmark.load(data_dir, options.scoring, row_errors=row_errors), options)
    check_media(benchmark, samples)
    folder = output / benchmark.name
    folder.mkdir(parents=True, exist_ok=True)
    path = predictions_path(folder, options.shard)
    errors = [{"kind": "release_row", **error} for error in row_errors]
    done = {record["id"]: record for record in read_predictions(path)}
    hashes = {s.id: s.prompt_hash() for s in samples}
    stale = [i for i, record in done.items() if i in hashes and record["prompt_hash"] != hashes[i]]
    if stale:
        raise ValueError(f"{path} was written with other prompts (e.g. sample {stale[0]}); use a new --output")
    key = run_key(benchmark, params, options)
    mixed = [i for i, record in done.items() if record.get("run_key") != key]
    if mixed:
        raise ValueError(
            f"{path} was written by another benchmark version, scoring mode, generation setting or image ablation "
            f"(e.g. sample {mixed[0]}); resume with the same settings or use a new --output"
        )
    if benchmark.judge == "rubric" and options.judge is None:
        raise ValueError(f"{benchmark.name} is graded by an LLM judge, rubric item by rubric item: pass --judge-url "
                         "and --judge-model (any OpenAI-compatible server; the maintainers used GPT-4.1)")
    if options.judge is not None:
        _judge_finished(options.judge, benchmark, samples, path, options.scoring)
    todo = [s for s in samples if s.id not in done]
    bar = progress(benchmark.name, total=len(samples), done=len(samples) - len(todo), enabled=options.progress)
    failed_in_a_row = 0
    answered: list[tuple[Sample, Any]] = []

    def write_answered() -> None:  # scored, judged together, appended and synced: a kill loses at most these
        records = [_record(sample, result, hashes[sample.id], key, benchmark, options) for sample, result in answered]
        if options.judge is not None:
            _apply_judge(options.judge, benchmark, [sample for sample, _ in answered], records)
        for record in records:
            del record["_scored"]
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
        answered.clear()

    built: list[Sample] = []  # the engine's request index -> its sample
    unbuilt: list[tuple[Sample, Exception]] = []  # samples whose conversation could not be built (unreadable image)

    def requests() -> Iterator[tuple[Any, Any]]:
        for sample in todo:
            try:
                conversation = sample.conversation(options.blank_images)
            except REQUEST_ERRORS as error:
                unbuilt.append((sample, error))
                continue
            built.append(sample)
            yield conversation, params

    def outcomes() -> Iterator[tuple[Sample, Any]]:
        for index, outcome in engine.generate_each(requests()):
            while unbuilt:
                yield unbuilt.pop(0)
            yield built[index], outcome
        while unbuilt:
            yield unbuilt.pop(0)

    with path.open("a", encoding="utf-8") as handle:
        # the whole run goes to the engine, which alone batches and isolates a failing sample (generate_each)
        for sample, outcome in outcomes():
            bar.update(1)
            if isinstance(outcome, Exception):  # no prediction: a rerun tries this sample again
                errors.append({"kind": "sample", "benchmark": None, "id": sample.id, "error": str(outcome)[:2000]})
                failed_in_a_row += 1
                if failed_in_a_row >= MAX_FAILURES_IN_A_ROW:
                    write_answered()
                    _write_errors(folder, options.shard, errors)
                    raise EndpointError(
                        f"{benchmark.name}: {failed_in_a_row} samples in a row failed (last: {errors[-1]['error']}); "
                        f"stopped. The answers so far are kept in {path}; rerun the command to resume."
                    )
                continue
            failed_in_a_row = 0
            answered.append((sample, outcome))
            if len(answered) >= WRITE_EVERY:
                write_answered()
        write_answered()
    bar.close()
    _write_errors(folder, options.shard, errors)
    records = read_predictions(path)
    by_id = {s.id: s for s in samples}
    for record in records:  # lines written before a benchmark had several dimensions: fill them in (in memory)
        sample = by_id.get(record["id"])
        if "groups" not in record and sample is not None and sample.groups:
            record["groups"] = sample.groups
    info = run_info(engine, benchmark, params, options)
    metrics = {**info, **aggregate(records, benchmark, options.scoring)}
    metrics["errors"] = {"release_rows": len(row_errors), "samples": len(errors) - len(row_errors)}
    if benchmark.modality == "report" and options.report_metrics.names:
        metrics.setdefault("metrics", {}).update(report_corpus_metrics(records, options.report_metrics))
    if benchmark.submission and options.shard[1] == 1:
        write_submission(folder, records)
    name = "metrics.json" if options.shard[1] == 1 else path.name.replace("predictions", "metrics").replace(
        ".jsonl", ".json")
    (folder / name).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics


#: Consecutive samples failing (a dead endpoint, a broken release) before a run stops instead of going on.
MAX_FAILURES_IN_A_ROW = 20
#: Answers scored, judged and appended together (a kill loses at most these; the rerun answers them again).
WRITE_EVERY = 16


def _record(sample: Sample, result: Any, prompt_hash: str, key: str, benchmark: Benchmark,
            options: RunOptions) -> dict[str, Any]:
    """One prediction line (``_scored``: the text the judge sees, removed before writing)."""
    raw = _raw_response(result)
    scored = raw if options.scoring == "upstream" else result.text
    verdict = score(sample, scored, options.scoring)
    correct = None if benchmark.submission else verdict.correct  # hidden answers: nothing to score
    record = {"id": sample.id, "prompt_hash": prompt_hash, "run_key": key, "kind": sample.kind, "group": sample.group,
              "answer": sample.answer, "response": raw, "parsed": verdict.parsed, "correct": correct,
              "metrics": verdict.metrics, "finish_reason": result.finish_reason, "_scored": scored}
    if sample.groups:
        record["groups"] = sample.groups
    return record


def _write_errors(folder: Path, shard: tuple[int, int], errors: list[dict[str, Any]]) -> None:
    """``errors.jsonl`` (per shard): this run's skipped release rows and failed samples; removed when none."""
    index, count = shard
    path = folder / ("errors.jsonl" if count == 1 else f"errors.shard-{index}-of-{count}.jsonl")
    if not errors:
        path.unlink(missing_ok=True)
        return
    for error in errors:
        error["benchmark"] = error.get("benchmark") or folder.name
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors), encoding="utf-8")
    print(f"hulumed eval: {folder.name}: {len(errors)} error record(s) in {path}", file=sys.stderr)


def _apply_judge(client: JudgeClient, benchmark: Benchmark, batch: list[Sample],
                 records: list[dict[str, Any]]) -> None:
    """Re-score the batch's judged samples with the LLM: ``correct`` becomes the judge's verdict (None -> wrong)."""
    if benchmark.judge == "rubric":
        _grade_rubrics(client, batch, records)
        return
    chosen = [k for k, sample in enumerate(batch) if judged(benchmark, sample)]
    items = [(batch[k].question or batch[k].prompt, batch[k].answer, records[k]["_scored"]) for k in chosen]
    for k, (verdict, reply) in zip(chosen, client.judge(items)):
        records[k].update(rule_correct=records[k]["correct"], correct=bool(verdict), judge=verdict,
                          judge_reply=reply)


def _grade_rubrics(client: JudgeClient, batch: list[Sample], records: list[dict[str, Any]]) -> None:
    """HealthBench: every rubric item of every answer graded by the judge; ``metrics`` get the sample's scores,
    ``judge`` its overall score (None when a grading failed: the sample is ungraded and graded again on resume)."""
    from .rubric import grade, sample_metrics

    for sample, record in zip(batch, records):
        grades = grade(client, sample.graded_messages or sample.conversation(), record["_scored"], sample.rubrics)
        record["rubric_grades"] = [None if g is None else {"criteria_met": g["criteria_met"],
                                                           "explanation": str(g.get("explanation", ""))}
                                   for g in grades]
        if any(g is None for g in grades):
            record.update(metrics={}, judge=None)
            continue
        metrics = sample_metrics(sample.rubrics, [g["criteria_met"] for g in grades], sample.example_tags)
        record.update(metrics=metrics, judge=metrics.get("overall_score"))


def _scored_text(record: dict[str, Any], scoring: str) -> str:
    """The text a finished record was scored on: the raw response (upstream) or the answer after the think block."""
    raw = record["response"]
    if scoring == "upstream" or not raw.startswith(OPEN) or _AFTER_THINK not in raw:
        return raw
    return raw.split(_AFTER_THINK, 1)[1]  # _raw_response's inverse


def _judge_finished(client: JudgeClient, benchmark: Benchmark, samples: list[Sample], path: Path,
                    scoring: str) -> int:
    """Resume with the judge on: finished records of judged samples without a verdict (never judged, or the judge
    did not answer) are judged now and the file is rewritten atomically. Returns how many were judged."""
    records = read_predictions(path)
    by_id = {s.id: s for s in samples}
    chosen = [k for k, r in enumerate(records)
              if r["id"] in by_id and judged(benchmark, by_id[r["id"]]) and r.get("judge") is None]
    if not chosen:
        return 0
    batch = [by_id[records[k]["id"]] for k in chosen]
    pending = [{**records[k], "correct": records[k].get("rule_correct", records[k]["correct"]),
                "_scored": _scored_text(records[k], scoring)} for k in chosen]
    _apply_judge(client, benchmark, batch, pending)
    for k, record in zip(chosen, pending):
        del record["_scored"]
        records[k] = record
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return len(chosen)


def run_info(engine: Engine, benchmark: Benchmark, params: Any, options: RunOptions) -> dict[str, Any]:
    info = engine.info()
    return {
        "benchmark": benchmark.name, "benchmark_version": benchmark.version, "scoring": options.scoring,
        "model": str(info.get("path") or ""), "model_revision": info.get("revision"), "backend": info.get("backend"),
        "model_family": info.get("family"),
        "generation": asdict(params), "seed": options.seed,
        "limit": options.limit, "shard": list(options.shard), "blank_images": options.blank_images,
        "judge": None if options.judge is None else {"url": options.judge.url, "model": options.judge.model},
        **({"endpoints": list(info["endpoints"])} if info.get("endpoints") else {}),
    }


def aggregate(records: list[dict[str, Any]], benchmark: Benchmark, scoring: str = "fixed") -> dict[str, Any]:
    """Counts, accuracy (overall and per group), unparsable answers and the mean of every continuous metric.

    ``accuracy_by_group`` is per the record's ``group``; when records carry ``groups`` ({dimension: value}, the
    benchmarks upstream reports along several dimensions) ``groups`` is ``{dimension: {value: {count, accuracy}}}``.

    For benchmarks whose upstream overall is an average over categories (M3D, 3D-RAD) both averages are given:
    ``accuracy_plain`` (over questions) and ``accuracy_category_averaged`` (over categories, each category's
    accuracy weighted equally, as upstream's ``eval_3d``; likewise ``metrics_category_averaged``); ``accuracy``
    is the plain one under ``fixed`` scoring and the category average under ``upstream``
    (``accuracy_averaging`` says which).
    """
    scored = [r for r in records if r["kind"] != "report"]
    out: dict[str, Any] = {
        "count": len(records),
        "unparsable": sum(r["parsed"] is None for r in records),
        "truncated": sum(r.get("finish_reason") == "length" for r in records),
    }
    if benchmark.submission:  # answers hidden: the predictions go to the leaderboard, no accuracy here
        return {**out, "submission": SUBMISSION_FILE, "upload_to": benchmark.submission}
    if benchmark.judge == "rubric":  # HealthBench: clipped means of the judge's rubric scores
        from .rubric import clipped_mean

        out["unparsable"] = 0
        graded = [r for r in records if r.get("judge") is not None]
        out["ungraded"] = len(records) - len(graded)
        if graded:
            out["score"] = clipped_mean([float(r["judge"]) for r in graded])
            values: dict[str, list[float]] = defaultdict(list)
            for r in graded:
                for key, value in r["metrics"].items():
                    values[key].append(float(value))
            out["metrics"] = {key: clipped_mean(v) for key, v in sorted(values.items())}
        return out
    if scored:
        out["accuracy"] = sum(bool(r["correct"]) for r in scored) / len(scored)
        groups: dict[str, list[bool]] = defaultdict(list)
        for r in scored:
            if r.get("group") is not None:
                groups[str(r["group"])].append(bool(r["correct"]))
        if groups:
            out["accuracy_by_group"] = {g: sum(v) / len(v) for g, v in sorted(groups.items())}
        dimensions: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
        for r in scored:
            for dimension, value in (r.get("groups") or {}).items():
                dimensions[dimension][str(value)].append(bool(r["correct"]))
        if dimensions:
            out["groups"] = {d: {g: {"count": len(v), "accuracy": sum(v) / len(v)} for g, v in sorted(values.items())}
                             for d, values in dimensions.items()}
    sums: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for key, value in r.get("metrics", {}).items():
            sums[key].append(float(value))
    if sums:
        out["metrics"] = {key: sum(v) / len(v) for key, v in sorted(sums.items())}
    if benchmark.category_average and scored and out.get("accuracy_by_group"):
        by_group = out["accuracy_by_group"]
        out["accuracy_plain"] = out["accuracy"]
        out["accuracy_category_averaged"] = sum(by_group.values()) / len(by_group)
        per_group: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in records:
            for key, value in r.get("metrics", {}).items():
                per_group[str(r.get("group"))][key].append(float(value))
        if per_group:
            means = [{k: sum(v) / len(v) for k, v in group.items()} for group in per_group.values()]
            keys = sorted({k for m in means for k in m})
            out["metrics_category_averaged"] = {
                k: sum(m[k] for m in means if k in m) / sum(k in m for m in means) for k in keys}
        upstream = scoring == "upstream"
        out["accuracy"] = out["accuracy_category_averaged"] if upstream else out["accuracy_plain"]
        out["accuracy_averaging"] = "category" if upstream else "plain"
    return out


def report_corpus_metrics(records: list[dict[str, Any]], options: ReportMetricOptions) -> dict[str, Any]:
    """CIDEr / BERTScore / RaTEScore over the benchmark's answered reports (labels removed, as for BLEU)."""
    from .report_metrics import corpus_metrics
    from .scoring import report_text

    pairs = [(r["parsed"], report_text(r["answer"])) for r in records if r["kind"] == "report" and r["parsed"]]
    return corpus_metrics([p for p, _ in pairs], [g for _, g in pairs], options)


SUBMISSION_FILE = "submission.json"


def write_submission(folder: Path, records: list[dict[str, Any]]) -> Path:
    """MMMU's submission format, as MedUniEval's ``eval_MMMU_test`` writes it: ``{id: prediction}``, the parsed
    letter for multiple choice, the answer text (a boxed answer taken out) for open questions."""
    from .scoring import extract_boxed

    predictions = {}
    for record in records:
        if record["kind"] == "mmmu_mc":
            predictions[record["id"]] = record["parsed"]
        else:
            boxed = extract_boxed(record["response"])  # "None" when there is no \\boxed{...}
            predictions[record["id"]] = record["response"] if boxed == "None" else boxed
    path = folder / SUBMISSION_FILE
    path.write_text(json.dumps(predictions, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def merge(benchmark: Benchmark, output: Path, shards: int) -> dict[str, Any]:
    """Join the shard files of one benchmark into predictions.jsonl + metrics.json (every shard must exist)."""
    folder = output / benchmark.name
    records: dict[str, dict[str, Any]] = {}
    info: dict[str, Any] = {}
    for index in range(shards):
        path = predictions_path(folder, (index, shards))
        meta = path.with_name(path.name.replace("predictions", "metrics").replace(".jsonl", ".json"))
        if not meta.exists():
            raise FileNotFoundError(f"{meta} is missing: shard {index}/{shards} has not finished")
        info = json.loads(meta.read_text())
        for record in read_predictions(path):
            records.setdefault(record["id"], record)
    (folder / "predictions.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records.values()), encoding="utf-8"
    )
    keep = ("benchmark", "benchmark_version", "scoring", "model", "model_revision", "model_family", "generation",
            "seed", "limit", "blank_images", "judge")
    metrics = {**{k: info.get(k) for k in keep}, "shards": shards,
               **aggregate(list(records.values()), benchmark, info.get("scoring") or "fixed")}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    if benchmark.submission:
        write_submission(folder, list(records.values()))
    return metrics


def summary_table(output: Path) -> str:
    """A markdown table of every ``O/*/metrics.json``, with the paper's published Hulu-Med accuracies beside the
    run's (published.py names the source)."""
    from .published import SIZES, SOURCE, published

    lines = ["| benchmark | version | scoring | n | accuracy | " + " | ".join(f"paper {s}" for s in SIZES)
             + " | unparsable | BLEU-1 | ROUGE-L |",
             "|---|---|---|---|---|" + "---|" * len(SIZES) + "---|---|---|"]
    models: dict[str, str] = {}
    for path in sorted(output.glob("*/metrics.json")):
        m = json.loads(path.read_text())
        models.setdefault(str(m.get("model") or "?"), str(m.get("model_family") or "model family not recorded"))
        extra = m.get("metrics", {})
        acc = (f"{100 * m['accuracy']:.1f}" if "accuracy" in m
               else f"{100 * m['score']:.1f} (rubric score)" if "score" in m else "–")
        paper = published(m["benchmark"]) or {}
        cells = [m["benchmark"], m["benchmark_version"], m["scoring"], str(m["count"]), acc,
                 *[f"{paper[s]:.1f}" if s in paper else "–" for s in SIZES], str(m["unparsable"]),
                 f"{100 * extra['bleu1']:.1f}" if "bleu1" in extra else "–",
                 f"{100 * extra['rougel']:.1f}" if "rougel" in extra else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *[f"model: {name} — {family}." for name, family in models.items()], f"paper: {SOURCE}."]
    return "\n".join(lines) + "\n"


def write_summary(output: Path) -> Path:
    """Write ``O/summary.md`` (and ``O/summary.png`` when matplotlib is installed); return the markdown path."""
    path = output / "summary.md"
    path.write_text(summary_table(output), encoding="utf-8")
    write_chart(output)
    return path


def write_chart(output: Path) -> Path | None:
    """``O/summary.png``: per benchmark with an accuracy, the run's bar beside the paper's 7B / 14B / 32B bars.

    Uses matplotlib's object API on a plain ``Figure`` (Agg canvas, no pyplot state, no display needed).
    Returns None, writing nothing, when matplotlib is not installed or no benchmark has an accuracy.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    from .published import SIZES, published

    rows = [json.loads(p.read_text()) for p in sorted(output.glob("*/metrics.json"))]
    rows = [r for r in rows if "accuracy" in r]
    if not rows:
        return None
    names = [r["benchmark"] for r in rows]
    series = [("this run", [100 * r["accuracy"] for r in rows], "tab:blue")]
    colours = ("#bbbbbb", "#888888", "#444444")
    for size, colour in zip(SIZES, colours):
        values = [(published(n) or {}).get(size, float("nan")) for n in names]
        if any(published(n) for n in names):
            series.append((f"paper {size}", values, colour))
    width = 0.8 / len(series)
    figure = Figure(figsize=(max(5.0, 1.0 * len(rows) + 2), 4.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for k, (label, values, colour) in enumerate(series):
        positions = [i + (k - (len(series) - 1) / 2) * width for i in range(len(rows))]
        bars = axes.bar(positions, values, width=width, color=colour, label=label)
        if k == 0:
            axes.bar_label(bars, fmt="%.1f", fontsize=7)
    axes.set_xticks(range(len(rows)), names)
    axes.set_ylim(0, 105)
    axes.set_ylabel("accuracy (%)")
    axes.set_title("hulumed eval: this run vs the paper's Hulu-Med (README tables)", fontsize=10)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.tick_params(axis="x", labelrotation=45)
    for label in axes.get_xticklabels():
        label.set_horizontalalignment("right")
    path = output / "summary.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path

"""Evaluation harness (``hulumed eval``): MedUniEval's benchmarks, prompts and scoring, batched and resumable,
on a local checkpoint or served models.

    benchmarks.py   registry: name, version, published layout, loader, judge scope
    samples.py      Sample and the upstream prompt templates
    text_benchmarks.py, media_benchmarks.py   loaders of the published releases
    judge.py        optional LLM judge (OpenAI-compatible endpoint)
    data_files.py   discovery rule per release, folder aliases, zipped media, parquet / JSON / JSONL / CSV rows
    published.py    the paper's Hulu-Med numbers shown beside a run
    scoring.py      answer parsing and judges (``fixed`` default, ``upstream`` for comparability)
    text_metrics.py BLEU (nltk), ROUGE (rouge package), word F1
    runner.py       generation through the engine, predictions.jsonl, metrics.json, resume, shards, summary
    commands.py     the CLI verb
"""

from .benchmarks import BENCHMARKS, Benchmark, Sample, get_benchmark
from .scoring import FIXES, Verdict

__all__ = ["BENCHMARKS", "FIXES", "Benchmark", "Sample", "Verdict", "get_benchmark"]

"""The ``hulumed eval`` verb: list benchmarks, run them (on a local checkpoint or on OpenAI-compatible endpoints),
or merge shards. Logic lives in runner.py; building the parser and ``--list`` import neither torch nor transformers
(heavy modules are imported inside ``main``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..generation import GenerationParams
from ..interface import Engine, LoadOptions
from ..options import add_options, option_values, positive_int
from .benchmarks import BENCHMARKS, get_benchmark
from .scoring import FIXES


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval", help="run medical benchmarks (MedUniEval set) and score them",
        description="Evaluate a Hulu-Med checkpoint on local copies of medical benchmarks. D/<benchmark> is the "
        "benchmark's public release as downloaded; see --list for what each reads.",
    )
    parser.add_argument("--list", action="store_true", help="list the registered benchmarks and their layouts")
    parser.add_argument("--model", help="checkpoint folder or hub id; with --endpoint, the served model's name")
    parser.add_argument("--endpoint", action="append", metavar="URL",
                        help="evaluate a served model: an OpenAI-compatible base URL (http://host:8000/v1); repeat to "
                        "spread requests over several servers")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="with --endpoint: requests in flight per endpoint (default 4)")
    parser.add_argument("--api-key", help="with --endpoint: bearer token, if the servers need one")
    parser.add_argument("--request-timeout", type=float, default=600.0,
                        help="with --endpoint: seconds one request may take (default 600)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--benchmarks", help="comma-separated names (case, '-' and '_' ignored)")
    parser.add_argument("--data-dir", type=Path, help="folder holding one sub-folder per benchmark")
    parser.add_argument("--output", type=Path, help="results folder (resumed if it exists)")
    parser.add_argument("--shard", default="0/1", help="i/n: run samples with index %% n == i (default 0/1)")
    parser.add_argument("--merge", type=int, metavar="N", help="merge the N shard results under --output")
    from .runner import RunOptions

    add_options(parser, RunOptions, only=("scoring", "limit", "blank_images"), types_={"limit": positive_int})
    # generation and load options from their dataclasses (hulumed.options); eval's own defaults for two of them
    add_options(parser, GenerationParams, only=("max_new_tokens", "think", "seed"),
                defaults={"max_new_tokens": 1024, "seed": 42}, types_={"max_new_tokens": positive_int},
                help={"max_new_tokens": "most tokens of an answer", "think": "upstream's reasoning mode"})
    parser.add_argument("--judge-url", help="LLM judge: an OpenAI-compatible base URL (e.g. http://host:8000/v1); "
                        "off by default")
    parser.add_argument("--judge-model", help="LLM judge: the model name to request (needed with --judge-url)")
    parser.add_argument("--judge-api-key", help="LLM judge: bearer token, if the endpoint needs one")
    parser.add_argument("--report-metrics", default="", metavar="NAMES",
                        help="report benchmarks: also cider, bertscore, ratescore (comma-separated; "
                             "pip install 'hulumed[report-metrics]'; docs/eval.md)")
    parser.add_argument("--bertscore-model", help="a folder with the BERTScore model (MedEvalKit: roberta-large)")
    parser.add_argument("--ratescore-models", metavar="NER,EVAL",
                        help="the two RaTEScore models (RaTE-NER-Deberta, BioLORD-2023-C folders)")
    parser.add_argument("--protocol", choices=["paper"],
                        help="paper: the maintainers' protocol (Hulu-Med issues #19, #32, #38, #39): MedUniEval's "
                             "prompts and rules (--scoring upstream), greedy (temperature 0), open questions "
                             "re-scored by an LLM judge they ran as GPT-4.1 (--judge-url required; --judge-model "
                             "defaults to gpt-4.1)")
    from ..commands import LOAD_FIELDS, add_load_options

    add_load_options(parser, (*LOAD_FIELDS, "batch_size", "backend"))  # the same load options as generate / serve
    parser.set_defaults(handler=main)


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError as error:
        raise ValueError(f"--shard must look like i/n, not {text!r}") from error
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return index, count


def list_benchmarks() -> str:
    lines = [f"{b.name:<17} v{b.version:<3} {b.modality:<7} {b.layout}"
             + (f" [LLM judge: {b.judge}]" if b.judge != "none" else "")
             + (f" [folder: D/{' or D/'.join((b.name, *b.aliases))}]" if b.aliases else "") for b in BENCHMARKS]
    lines += ["", ("Download commands and what to extract: docs/eval.md (`hf download <repo> --repo-type dataset "
              "--local-dir D/<name>`).")]
    lines += ["", "--scoring fixed (default) differs from --scoring upstream:"] + [f"  - {fix}" for fix in FIXES]
    return "\n".join(lines)


#: The maintainers' evaluation protocol as they described it (Hulu-Med GitHub issues #19, #32, #38, #39):
#: MedUniEval prompts and scoring, temperature 0 for single runs (0.6 only for their three-run averages),
#: closed questions scored by rule, open ones by a GPT-4.1 judge (Gemini-2.5-Pro gave similar numbers).
PAPER_JUDGE_MODEL = "gpt-4.1"


def apply_protocol(args: argparse.Namespace) -> None:
    """``--protocol paper``: upstream scoring, and a judge (its model gpt-4.1 unless given). Generation is
    greedy in every eval run already."""
    if getattr(args, "protocol", None) != "paper":
        return
    args.scoring = "upstream"
    if not args.judge_url:
        raise ValueError("--protocol paper needs an LLM judge: --judge-url URL (the maintainers used GPT-4.1, "
                         "temperature 0; --judge-model defaults to gpt-4.1)")
    args.judge_model = args.judge_model or PAPER_JUDGE_MODEL


def report_metric_options(args: argparse.Namespace) -> Any:
    """``--report-metrics`` and its model flags, checked now (a missing library or model fails before any run)."""
    from .report_metrics import ReportMetricOptions

    names = tuple(n.strip().lower() for n in (args.report_metrics or "").split(",") if n.strip())
    models = None
    if args.ratescore_models:
        parts = [p.strip() for p in args.ratescore_models.split(",")]
        if len(parts) != 2 or not all(parts):
            raise ValueError("--ratescore-models takes two folders: NER,EVAL")
        models = (parts[0], parts[1])
    options = ReportMetricOptions(names=names, bertscore_model=args.bertscore_model, ratescore_models=models)
    options.check()
    return options


def main(args: argparse.Namespace) -> int:
    if args.list:
        print(list_benchmarks())
        return 0
    from . import runner

    if not args.benchmarks or not args.output:
        raise ValueError("give --benchmarks and --output (and --model, --data-dir to run); or --list")
    benchmarks = [get_benchmark(name) for name in args.benchmarks.split(",") if name.strip()]
    if args.merge:
        for benchmark in benchmarks:
            runner.merge(benchmark, args.output, args.merge)
        print(runner.summary_table(args.output), end="")
        runner.write_summary(args.output)
        return 0
    if not args.model or not args.data_dir:
        raise ValueError("give --model and --data-dir to run benchmarks")
    import random

    from hulumed.generation import GenerationParams

    random.seed(args.seed)
    apply_protocol(args)
    judge = None
    if args.judge_url:
        if not args.judge_model:
            raise ValueError("--judge-url needs --judge-model")
        from .judge import JudgeClient

        judge = JudgeClient(args.judge_url, args.judge_model, args.judge_api_key)
    report_metrics = report_metric_options(args)
    options = runner.RunOptions(**option_values(args, runner.RunOptions, ("scoring", "limit", "blank_images")),
                                shard=_parse_shard(args.shard), seed=args.seed, judge=judge,
                                report_metrics=report_metrics, progress=not args.no_progress)
    if args.endpoint:
        from ..backends.endpoint import EndpointEngine

        engine: Engine = EndpointEngine(args.endpoint, args.model, api_key=args.api_key, concurrency=args.concurrency,
                                     timeout_s=args.request_timeout)
    else:
        import numpy as np
        import torch

        import hulumed

        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        from ..commands import LOAD_FIELDS

        engine = hulumed.load(args.model, **option_values(args, LoadOptions, (*LOAD_FIELDS, "batch_size", "backend")))
    params = GenerationParams.greedy(args.max_new_tokens, think=args.think)
    for benchmark in benchmarks:
        metrics = runner.run_benchmark(engine, benchmark, args.data_dir, args.output, params, options)
        acc = f"accuracy {100 * metrics['accuracy']:.1f}%" if "accuracy" in metrics else ""
        print(f"{benchmark.name}: {metrics['count']} samples {acc} unparsable {metrics['unparsable']}")
    if options.shard[1] == 1:
        print(runner.summary_table(args.output), end="")
        runner.write_summary(args.output)
    return 0

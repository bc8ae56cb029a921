"""CLI verbs of the training room: ``train``, ``data check`` and ``merge-lora`` (registered by ``hulumed.cli``).

Nothing heavy is imported here: peft, accelerate, yaml and the Trainer are imported inside the handlers, so
``hulumed --help`` works without the ``train`` extra.

    hulumed train --model M --data FILE [--media-root DIR] --output OUT --max-steps N [--lora]
    hulumed train --config configs/train/lora-7b-24gb.yaml --data my.jsonl --output runs/x   (CLI overrides YAML)
    hulumed data check FILE... [--media-root DIR] [--model M] [--max-length N]
    hulumed merge-lora ADAPTER --output OUT [--base M] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    from hulumed.train.recipe import add_recipe_arguments

    train = subparsers.add_parser(
        "train",
        help="fine-tune a Hulu-Med checkpoint (full, partial, LoRA, QLoRA)",
        description="Fine-tune with transformers' Trainer. Every recipe key is also an option; options given "
        "here override the --config file. Rerunning the same command resumes from the last checkpoint. "
        "Multi-GPU: launch with torchrun / accelerate launch (docs/training.md).",
    )
    train.add_argument("--config", metavar="RECIPE.yaml", help="recipe file (configs/train/)")
    train.add_argument("--lora", action="store_true", help="shortcut for --llm lora (LoRA adapters on the LLM)")
    add_recipe_arguments(train)
    train.set_defaults(handler=_train)

    data = subparsers.add_parser("data", help="inspect training data (data check)")
    data_verbs = data.add_subparsers(dest="data_verb", metavar="VERB")
    check = data_verbs.add_parser(
        "check",
        help="validate every record of JSON / JSONL training files, reporting problems by line",
        description="Checks JSON, record schema, placeholder counts and media paths; with --model also reads "
        "every medium and counts tokens. Exit status 1 when any record is bad.",
    )
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--media-root", help="folder media paths are relative to (default: the file's folder)")
    check.add_argument("--model", help="checkpoint whose processor encodes the records (reads media, counts tokens)")
    check.add_argument("--max-length", type=int, default=8192, help="token limit to check against [8192]")
    check.add_argument("--no-add-system-prompt", action="store_true", help="count tokens without the system prompt")
    check.set_defaults(handler=_data_check)
    data.set_defaults(handler=lambda args: _print_help(data))

    merge = subparsers.add_parser(
        "merge-lora",
        help="merge a LoRA adapter into its base model (official checkpoint layout)",
        description="Writes config.json, model.safetensors and the processor files of base + adapter.",
    )
    merge.add_argument("adapter", metavar="ADAPTER", help="output folder of a LoRA run (adapter_config.json)")
    merge.add_argument("--output", required=True, help="folder to write the merged checkpoint to")
    merge.add_argument("--base", help="base checkpoint (default: the one recorded in the adapter)")
    merge.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                       help="dtype of the merged weights [float32]")
    merge.set_defaults(handler=_merge)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def recipe_from_args(args: argparse.Namespace) -> Any:
    """The recipe of a parsed ``hulumed train`` command line (YAML, then the options given)."""
    from dataclasses import fields

    from hulumed.train.recipe import TrainRecipe, build_recipe

    names = {f.name for f in fields(TrainRecipe)}
    overrides = {name: value for name, value in vars(args).items() if name in names}
    if args.lora and "llm" not in overrides:
        overrides["llm"] = "lora"
    return build_recipe(args.config, **overrides)


def _train(args: argparse.Namespace) -> int:
    from hulumed.train.trainer import run_training

    recipe = recipe_from_args(args)
    result = run_training(recipe)
    if not result.trainer.is_world_process_zero():
        return 0  # one summary per run, from rank 0
    parts = ", ".join(f"{part} {a:,}/{b:,}" for part, (a, b) in result.trainable.items())
    losses = result.losses
    resumed = f" (resumed from {result.resumed_from})" if result.resumed_from else ""
    print(f"trained {result.global_step} steps{resumed}")
    print(f"trainable parameters: {parts}")
    if losses:
        print(f"loss: first logged {losses[0]:.4f}, last logged {losses[-1]:.4f}")
    processes = result.trainer.args.world_size
    on = f" on {processes} processes" if processes > 1 else ""
    print(f"{result.seconds_per_step:.3f} s/step{on}; saved to {result.output}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from hulumed.train.data import check_file

    encode = None
    if args.model:
        from transformers import AutoProcessor

        import hulumed  # noqa: F401
        from hulumed.train.labels import LabelEncoder

        processor = AutoProcessor.from_pretrained(args.model)
        encode = LabelEncoder(processor, add_system_prompt=not args.no_add_system_prompt).encode
    bad = 0
    for path in args.files:
        report = check_file(path, args.media_root, encode, args.max_length if encode else None)
        for problem in report.problems:
            print(problem)
        bad += report.bad_records
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(report.modalities.items())) or "none"
        print(f"{path}: {report.records} records, {report.bad_records} bad; good records by media: {kinds}")
        good = report.records - report.bad_records
        if encode is not None and good:
            print(
                f"{path}: tokens max {report.max_tokens}, mean {report.total_tokens / good:.0f}, "
                f"supervised {report.supervised_tokens}"
            )
    if encode is None:
        print("media were located but not decoded and tokens not counted: pass --model to check those", file=sys.stderr)
    return 1 if bad else 0


def _merge(args: argparse.Namespace) -> int:
    from hulumed.train.merge import merge_lora

    merge_lora(args.adapter, args.output, base=args.base, dtype=args.dtype)
    print(f"merged {args.adapter} into {args.base or 'its base model'}: saved to {args.output}")
    return 0

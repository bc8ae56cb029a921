"""Inference verbs of the ``hulumed`` command: generate, chat, batch, info, estimate, make-tiny.

Each handler parses nothing itself and holds no logic of its own: it turns arguments into one call of the
engine (``hulumed.engine``), the batch runner (``hulumed.batch_job``), the estimator or ``make_tiny_checkpoint``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .generation import GenerationParams
from .interface import text_deltas


# ---------------------------------------------------------------------------------------------- options
def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder or hub id (e.g. ZJU-AI4H/Hulu-Med-7B)")
    parser.add_argument("--revision", help="hub revision (branch, tag or commit)")
    parser.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best available)")
    parser.add_argument("--dtype", help="bfloat16, float16 or float32 (default: bf16 on CUDA, fp32 elsewhere)")
    parser.add_argument("--attn", default="sdpa", help="attention: sdpa (default), eager or flash_attention_2")
    parser.add_argument("--quantization", choices=["4bit", "8bit"], help="bitsandbytes weights (CUDA only)")
    parser.add_argument("--compression", choices=["on", "off"], help="override use_token_compression")


def _media_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", action="append", default=[], metavar="FILE", help="an image (repeatable)")
    parser.add_argument("--video", metavar="FILE", help="a video file or a folder of frames")
    parser.add_argument("--fps", type=float, default=1.0, help="video frames per second to sample")
    parser.add_argument("--max-frames", type=int, default=128)
    parser.add_argument("--volume", metavar="FILE", help="a 3D volume (NIfTI)")
    parser.add_argument("--slices", type=int, help="slices taken from --volume (default: all)")
    parser.add_argument("--axis", type=int, default=2, help="slicing axis: 0 sagittal, 1 coronal, 2 axial")
    _volume_options(parser)


def _volume_options(parser: argparse.ArgumentParser) -> None:
    from .processing import NORMALIZATIONS, ORIENTATIONS, window_names

    parser.add_argument("--window", help=f"CT window for --volume: {', '.join(window_names())}, or CENTER,WIDTH "
                        "(default: upstream's per-slice min-max)")
    parser.add_argument("--orientation", choices=ORIENTATIONS, help="volume axes (default raw, as upstream)")
    parser.add_argument("--normalize", choices=NORMALIZATIONS, help="intensity scaling (default slice, as upstream)")
    parser.add_argument("--time-index", type=int, help="the time point of a 4-D volume")
    parser.add_argument("--series-uid", help="the DICOM series to use when a folder holds several")


def _volume_item_options(args: argparse.Namespace) -> dict[str, Any]:
    """The extra keys of the 3d item given by --window / --orientation / --normalize / ... (unset ones omitted)."""
    options: dict[str, Any] = {}
    if getattr(args, "window", None):
        if "," in args.window:
            center, width = (float(v) for v in args.window.split(",", 1))
            options["window"] = [center, width]
        else:
            options["window"] = args.window
    for name in ("orientation", "normalize", "time_index", "series_uid"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    return options


def _generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--greedy", action="store_true", help="greedy decoding (default: generation_config.json)")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--repetition-penalty", type=float)
    parser.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--think", action="store_true", help="upstream reasoning mode")


def _params(args: argparse.Namespace) -> GenerationParams:
    return GenerationParams(
        max_new_tokens=args.max_new_tokens, do_sample=False if args.greedy else None, temperature=args.temperature,
        top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty, stop=list(args.stop),
        seed=args.seed, think=args.think,
    )


def _engine(args: argparse.Namespace, batch_size: int = 8) -> Any:
    from .interface import ReductionOptions
    from .loading import load

    engine = load(
        args.model, device=args.device, dtype=args.dtype, attn_implementation=args.attn,
        quantization=args.quantization, revision=args.revision, batch_size=batch_size,
        reduction=ReductionOptions(enabled=None if args.compression is None else args.compression == "on"),
    )
    return engine


def _turn(args: argparse.Namespace, prompt: str) -> dict[str, Any]:
    from .conversation import user_turn

    return user_turn(
        prompt, args.image, args.video, args.volume, fps=args.fps, max_frames=args.max_frames, slices=args.slices,
        axis=args.axis, volume_options=_volume_item_options(args),
    )


# ---------------------------------------------------------------------------------------------- verbs
def cmd_generate(args: argparse.Namespace) -> int:
    engine = _engine(args)
    conversation = [_turn(args, args.prompt)]
    params = _params(args)
    if args.json:
        [result] = engine.generate(conversation, params)
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return 0
    for delta in text_deltas(engine.stream(conversation, params)):
        sys.stdout.write(delta)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


_CHAT_HELP = """commands: /image PATH  /video PATH  /volume PATH [SLICES]  /think (toggle)  /reset  /quit
anything else is your message; attachments go with your next message."""


def cmd_chat(args: argparse.Namespace) -> int:
    from .conversation import user_turn

    engine = _engine(args)
    params = _params(args)
    history: list[dict[str, Any]] = []
    images: list[str] = []
    video: str | None = None
    volume: tuple[str, int | None] | None = None
    interactive = sys.stdin.isatty()
    print(_CHAT_HELP, file=sys.stderr)
    while True:
        if interactive:
            print("you> ", end="", flush=True, file=sys.stderr)
        line = sys.stdin.readline()
        if not line:
            return 0
        line = line.strip()
        if not line:
            continue
        command, _, rest = line.partition(" ")
        if command == "/quit":
            return 0
        if command == "/reset":
            history, images, video, volume = [], [], None, None
            print("(conversation cleared)", file=sys.stderr)
        elif command == "/think":
            params.think = not params.think
            print(f"(think mode {'on' if params.think else 'off'})", file=sys.stderr)
        elif command == "/image" and rest:
            images.append(rest.strip())
        elif command == "/video" and rest:
            video = rest.strip()
        elif command == "/volume" and rest:
            path, _, slices = rest.strip().partition(" ")
            volume = (path, int(slices) if slices.strip() else args.slices)
        elif command.startswith("/"):
            print(_CHAT_HELP, file=sys.stderr)
        else:
            turn = user_turn(
                line, images, video, volume[0] if volume else None, slices=volume[1] if volume else None,
                axis=args.axis, fps=args.fps, max_frames=args.max_frames, volume_options=_volume_item_options(args),
            )
            images, video, volume = [], None, None
            conversation = [*history, turn]
            try:
                print("hulumed> ", end="", flush=True)
                answer = ""
                for delta in text_deltas(engine.stream(conversation, params)):
                    answer += delta
                    print(delta, end="", flush=True)
                print()
            except (ValueError, OSError) as error:  # a bad attachment must not end the session
                print(f"\n(error: {error})", file=sys.stderr)
                continue
            history = [*conversation, {"role": "assistant", "content": answer}]


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch_job import run_batch_job

    engine = _engine(args, batch_size=args.batch_size)
    counts = run_batch_job(
        engine, args.input, args.output, batch_size=args.batch_size, media_root=args.media_root,
        defaults=_params(args), progress=not args.no_progress,
    )
    print(json.dumps(counts), file=sys.stderr)
    return 0


def _config_and_processor(model: str, revision: str | None) -> tuple[Any, Any, Any]:
    from .loading import load_config, load_processor

    path, config = load_config(model, revision)
    return path, config, load_processor(path)


def cmd_info(args: argparse.Namespace) -> int:
    from .estimate import describe_model, describe_template

    path, config, processor = _config_and_processor(args.model, args.revision)
    info = describe_model(config, path=path)
    info["chat_template"] = describe_template(processor.chat_template)
    print(json.dumps(info, indent=2))
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from .conversation import has_media
    from .estimate import estimate_request
    from .loading import pick_device, pick_dtype

    _, config, processor = _config_and_processor(args.model, args.revision)
    conversation = [_turn(args, args.prompt)]
    dtype = pick_dtype(pick_device(args.device), args.dtype)
    report = estimate_request(
        config, processor, conversation, _params(args), dtype=dtype, add_system_prompt=has_media(conversation),
        frame_chunk_size=args.frame_chunk_size,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            shown = f"{value / 2**30:.3f} GiB" if key.endswith("_bytes") else value
            print(f"{key:>20}: {shown}")
    return 0


def cmd_make_tiny(args: argparse.Namespace) -> int:
    from .tiny import make_tiny_checkpoint

    out = make_tiny_checkpoint(args.out, variant=args.variant, seed=args.seed)
    print(f"wrote a tiny random {args.variant} checkpoint (official layout) to {out}")
    return 0


# ---------------------------------------------------------------------------------------------- registry
def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="answer one prompt (with images / video / volume), streamed")
    _model_options(p)
    _media_options(p)
    _generation_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON result instead of streaming text")
    p.add_argument("prompt")
    p.set_defaults(handler=cmd_generate)

    p = subparsers.add_parser("chat", help="multi-turn chat in the terminal (/image, /volume, /reset, /think)")
    _model_options(p)
    _generation_options(p)
    p.add_argument("--fps", type=float, default=1.0)
    p.add_argument("--max-frames", type=int, default=128)
    p.add_argument("--slices", type=int)
    p.add_argument("--axis", type=int, default=2)
    _volume_options(p)
    p.set_defaults(handler=cmd_chat)

    p = subparsers.add_parser("batch", help="answer a JSONL file of requests, resumable")
    _model_options(p)
    _generation_options(p)
    p.add_argument("--input", required=True, help="requests, one JSON object per line")
    p.add_argument("--output", required=True, help="results, one JSON object per line (appended; resumable)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--media-root", help="folder that relative media paths start from (default: the input's)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_batch)

    p = subparsers.add_parser("info", help="variant, parameter count, sizes and flags of a checkpoint")
    p.add_argument("model", help="checkpoint folder or hub id")
    p.add_argument("--revision")
    p.set_defaults(handler=cmd_info)

    p = subparsers.add_parser("estimate", help="visual tokens and memory a request needs (no weights loaded)")
    p.add_argument("--model", required=True)
    p.add_argument("--revision")
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("--frame-chunk-size", type=int, default=32)
    p.add_argument("--json", action="store_true")
    _media_options(p)
    _generation_options(p)
    p.add_argument("prompt", nargs="?", default="Describe.")
    p.set_defaults(handler=cmd_estimate)

    p = subparsers.add_parser("make-tiny", help="write a tiny random checkpoint in the official layout")
    p.add_argument("out")
    p.add_argument("--variant", choices=["qwen2", "qwen3"], default="qwen2")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_make_tiny)

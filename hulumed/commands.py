"""Inference verbs of the ``hulumed`` command: generate, chat, batch, info, estimate, make-tiny.

Each handler holds no logic of its own: it checks what can be checked before any weights are read (devices,
attention backend, media paths, prompt), then turns arguments into one call of the engine
(``hulumed.backends``), the batch runner (``hulumed.batch_job``), the estimator or ``make_tiny_checkpoint``.
Options are generated from the dataclasses they fill (``hulumed.options``): load options from
``interface.LoadOptions``, generation options from ``generation.GenerationParams``. Nothing heavy is imported
at module level (``hulumed generate --help`` does not import torch).

Ctrl-C while an answer streams stops that answer (the model stops at the next token): ``generate`` exits with
status 130, ``chat`` goes back to its prompt with the conversation kept.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import HulumedError
from .generation import GenerationParams
from .interface import DEFAULT_MAX_PROMPT_TOKENS, Engine, LoadOptions, text_deltas
from .options import add_options, option_values, positive_float, positive_int
from .tiny import VARIANTS

# LoadOptions fields every model-loading verb offers (and `hulumed.load` accepts today)
LOAD_FIELDS = ("revision", "device", "dtype", "attn_implementation", "quantization", "frame_chunk_size",
               "system_prompt", "max_batch_tokens", "volume_input")
GENERATION_FIELDS = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "stop", "seed",
                     "think", "ignore_eos")


# ---------------------------------------------------------------------------------------------- options
def add_model_options(parser: argparse.ArgumentParser, batch: bool = False) -> None:
    """--model and the LoadOptions fields (also used by ``hulumed serve``)."""
    parser.add_argument("--model", required=True, help="checkpoint folder or hub id (e.g. ZJU-AI4H/Hulu-Med-7B)")
    add_load_options(parser, LOAD_FIELDS + (("batch_size",) if batch else ()))
    parser.add_argument("--compression", choices=["on", "off"], help="override use_token_compression")


def add_load_options(parser: argparse.ArgumentParser, fields_: tuple[str, ...] = LOAD_FIELDS,
                     defaults: dict[str, Any] | None = None) -> None:
    """The LoadOptions fields as options, with one help text, naming and type per field for every verb."""
    add_options(
        parser, LoadOptions, only=fields_, defaults=defaults or {},
        names={"attn_implementation": ("attn", "attn-implementation")},
        choices={"backend": ("hf", "vllm")},  # "endpoint" is eval's client, not loadable
        types_={"batch_size": positive_int, "frame_chunk_size": positive_int, "max_batch_tokens": positive_int},
    )


def load_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``hulumed.load`` from the LoadOptions fields on the command line."""
    return option_values(args, LoadOptions, LOAD_FIELDS + ("batch_size",))


def _media_options(parser: argparse.ArgumentParser, single: bool = True) -> None:
    """The media files (``generate`` / ``estimate``; ``chat`` attaches them with /image ...) and their options,
    generated from ``VideoOptions`` and ``VolumeOptions``: one flag, default, check and help per field."""
    from .processing.video.options import VideoOptions
    from .processing.volume.options import VolumeOptions

    if single:
        parser.add_argument("--image", action="append", default=[], metavar="FILE", help="an image (repeatable)")
        parser.add_argument("--video", metavar="FILE", help="a video file or a folder of frames")
        parser.add_argument("--volume", metavar="FILE", help="a 3D volume (NIfTI, DICOM series folder or zip)")
    add_options(parser, VideoOptions, types_={"fps": positive_float, "max_frames": positive_int})
    add_options(parser, VolumeOptions, names={"num_slices": "slices"},
                types_={"num_slices": positive_int, "window": window_arg, "orientation": str.lower,
                        "slice_spacing": positive_float})


def window_arg(text: str) -> str | tuple[float, float]:
    """argparse type of ``--window``: a preset name, or ``CENTER,WIDTH`` as two numbers."""
    if "," not in text:
        return text
    try:
        center, width = (float(v) for v in text.split(",", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: CENTER,WIDTH must be two numbers") from None
    return center, width


def _video_options(args: argparse.Namespace) -> Any:
    from .processing.video.options import VideoOptions

    return VideoOptions(**option_values(args, VideoOptions))


def _volume_options(args: argparse.Namespace) -> Any:
    """The volume options on the command line, checked (``MediaError`` before any weights are read)."""
    from .processing.volume.options import VolumeOptions

    return VolumeOptions(**option_values(args, VolumeOptions))


def _generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--greedy", action="store_true", help="greedy decoding (default: generation_config.json)")
    add_options(parser, GenerationParams, only=GENERATION_FIELDS,
                types_={"max_new_tokens": positive_int})
    from .structured import SCHEMAS

    parser.add_argument("--json-schema", metavar="NAME|FILE",
                        help=f"the answer is JSON matching this schema: a file, or shipped: {', '.join(SCHEMAS)}")
    parser.add_argument("--choice", action="append", metavar="TEXT",
                        help="the answer is exactly one of these (repeatable)")


def _params(args: argparse.Namespace) -> GenerationParams:
    from .structured import StructuredOutput, schema_from_argument

    values = option_values(args, GenerationParams, GENERATION_FIELDS)
    schema, choices = getattr(args, "json_schema", None), getattr(args, "choice", None)
    if schema and choices:
        raise HulumedError("give --json-schema or --choice, not both")
    try:
        structured = (schema_from_argument(schema) if schema
                      else StructuredOutput.choice(choices) if choices else None)
        return GenerationParams(do_sample=False if args.greedy else None, structured=structured, **values)
    except ValueError as error:
        raise HulumedError(str(error)) from None


# ---------------------------------------------------------------------------------------------- checks
def check_load_options(args: argparse.Namespace) -> None:
    """What can be checked before weights are read: model folder, device, attention backend, dtype."""
    from .hub import resolve_model

    resolve_model(args.model, revision=getattr(args, "revision", None))  # a missing / wrong folder: one line
    attn = getattr(args, "attn_implementation", "sdpa")
    if attn not in ("sdpa", "eager", "flash_attention_2"):
        raise HulumedError(f"--attn {attn!r} is not one of sdpa, eager, flash_attention_2")
    if attn == "flash_attention_2":
        import importlib.util

        if importlib.util.find_spec("flash_attn") is None:
            raise HulumedError("--attn flash_attention_2 needs the flash-attn package (pip install flash-attn, "
                               "CUDA only); use --attn sdpa")
    device = getattr(args, "device", None)
    if device is not None or getattr(args, "quantization", None) is not None:
        import torch

        kind = (device or "cuda").split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            what = "--quantization" if device is None else f"--device {device}"
            raise HulumedError(f"{what}: CUDA is not available here (torch {torch.__version__}"
                               f"{', built without CUDA' if torch.version.cuda is None else ', no GPU visible'}); "
                               "use --device cpu")
        if kind == "cuda" and ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
            raise HulumedError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
        if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise HulumedError(f"--device {device}: MPS (Apple GPU) is not available here; use --device cpu")
        if kind not in ("cuda", "mps", "cpu"):
            raise HulumedError(f"--device {device!r}: use cuda, cuda:N, mps or cpu")
    if getattr(args, "dtype", None) is not None:
        from .loading import pick_device, pick_dtype

        pick_dtype(pick_device("cpu"), args.dtype)  # an unknown name raises a one-line ValueError


_RIGHT_FLAG = {"image": "--image", "video": "--video", "volume": "--volume"}
_TAKES = {"--image": {"image", "dicom"}, "--video": {"video"}, "--volume": {"volume", "dicom"}}


def check_media(images: list[str], video: str | None, volume: str | None) -> None:
    """Before any weights load: each path exists, and its content fits its flag (an mp4 given as --image, a PNG as
    --volume... is a one-line error naming the right flag; ``processing.media_kind`` sniffs the first bytes)."""
    from .errors import MediaError
    from .processing.media_kind import media_kind

    for flag, path in [*(("--image", p) for p in images), ("--video", video), ("--volume", volume)]:
        if path is None:
            continue
        if not Path(path).exists():
            raise HulumedError(f"{flag} {path}: no such file or folder")
        if Path(path).is_dir():
            continue  # a frame folder / DICOM series: its loader checks the files
        try:
            found = media_kind(path)
        except MediaError as error:
            raise HulumedError(f"{flag} {path}: {error}") from None
        if found.kind is None or found.kind in _TAKES[flag]:
            continue
        if flag == "--video" and found.kind == "image":
            raise HulumedError(f"--video {path} is a {found.format} image, not a video; pass it with --image")
        right = _RIGHT_FLAG.get(found.kind, "--volume")
        noun = "an image" if found.kind == "image" else f"a {found.kind}"
        raise HulumedError(f"{flag} {path} is {noun} ({found.format}), not what {flag} takes; pass it with {right}")


def _check_prompt(prompt: str) -> str:
    if not prompt.strip():
        raise HulumedError("the prompt is empty; say what you want to know")
    return prompt


def _engine(args: argparse.Namespace) -> Any:
    from .interface import ReductionOptions
    from .loading import load

    enabled = None if args.compression is None else args.compression == "on"
    return load(args.model, **load_kwargs(args), reduction=ReductionOptions(enabled=enabled))


def _turn(args: argparse.Namespace, prompt: str) -> dict[str, Any]:
    from .conversation import user_turn

    return user_turn(prompt, args.image, args.video, args.volume, video_options=_video_options(args),
                     volume_options=_volume_options(args))


# ---------------------------------------------------------------------------------------------- streaming
@contextmanager
def _ctrl_c_stops(cancel: threading.Event) -> Iterator[None]:
    """While streaming, the first Ctrl-C sets ``cancel`` (the model stops at its next token); a second one
    leaves at once. Outside the main thread nothing is changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        if cancel.is_set():
            import os

            os._exit(130)
        cancel.set()

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stream_to_stdout(engine: Engine, conversation: list[dict[str, Any]], params: GenerationParams) -> tuple[str, bool]:
    """Print an answer as it streams; returns (the text shown, whether Ctrl-C stopped it)."""
    cancel = threading.Event()
    answer = ""
    with _ctrl_c_stops(cancel):
        for text in text_deltas(engine.stream(conversation, params, cancel=cancel)):
            answer += text
            sys.stdout.write(text)
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return answer, cancel.is_set()


# ---------------------------------------------------------------------------------------------- verbs
def cmd_generate(args: argparse.Namespace) -> int:
    _check_prompt(args.prompt)
    check_media(args.image, args.video, args.volume)
    _volume_options(args)  # checked before any weights are read
    check_load_options(args)
    params = _params(args)
    engine = _engine(args)
    conversation = [_turn(args, args.prompt)]
    if args.json:
        [result] = engine.generate(conversation, params)
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return 0
    _, stopped = _stream_to_stdout(engine, conversation, params)
    if stopped:
        print("(stopped)", file=sys.stderr)
        return 130
    return 0


CHAT_HELP = """commands:
  /image PATH            attach an image to your next message (repeatable)
  /video PATH            attach a video file or a folder of frames
  /volume PATH [SLICES]  attach a 3D volume (NIfTI, DICOM folder), optionally with a slice count
  /think                 toggle upstream's reasoning mode
  /history               show the conversation so far
  /reset                 forget the conversation and pending attachments
  /help                  this list
  /quit                  leave (or Ctrl-D)
anything else is your message; attachments go with your next message. Ctrl-C stops an answer."""


class _Chat:
    """The state of one terminal chat: history, pending attachments, think mode."""

    def __init__(self, args: argparse.Namespace, params: GenerationParams) -> None:
        self.args, self.params = args, params
        self.history: list[dict[str, Any]] = []
        self.images: list[str] = []
        self.video: str | None = None
        self.volume: tuple[str, int | None] | None = None

    def attach(self, command: str, rest: str) -> str:
        """Validate and queue an attachment; returns what to tell the user (errors leave the queue as it was)."""
        if not rest:
            return f"usage: {command} PATH" + (" [SLICES]" if command == "/volume" else "")
        if command == "/image":
            from .processing.image import load_image

            load_image(rest)  # unreadable -> MediaError, nothing attached
            self.images.append(rest)
            return f"(image attached: {rest}; {len(self.images)} pending)"
        if command == "/video":
            check_media([], rest, None)
            self.video = rest
            return f"(video attached: {rest})"
        path, count = rest, self.args.num_slices
        head, _, last = rest.rpartition(" ")
        if head and not Path(rest).exists():  # "/volume PATH SLICES"
            try:
                count = positive_int(last)
            except argparse.ArgumentTypeError as error:
                raise HulumedError(f"/volume SLICES: {error}") from None
            path = head
        check_media([], None, path)
        self.volume = (path, count)
        return f"(volume attached: {path}{f', {count} slices' if count else ''})"

    def turn(self, text: str) -> dict[str, Any]:
        from .conversation import user_turn

        volume = self.volume
        options = _volume_options(self.args)
        turn = user_turn(
            text, self.images, self.video, volume[0] if volume else None, video_options=_video_options(self.args),
            volume_options=replace(options, num_slices=volume[1]) if volume else options,
        )
        self.images, self.video, self.volume = [], None, None
        return turn

    def show_history(self) -> str:
        lines = []
        for message in self.history:
            parts = message["content"] if isinstance(message["content"], list) else [message["content"]]
            text = " ".join(p["text"] if isinstance(p, dict) and p.get("type") == "text" else
                            (f"[{p['type']}]" if isinstance(p, dict) else str(p)) for p in parts)
            lines.append(f"{'you' if message['role'] == 'user' else 'hulumed'}: {text}")
        return "\n".join(lines) if lines else "(no conversation yet)"


def cmd_chat(args: argparse.Namespace) -> int:
    _volume_options(args)  # checked before any weights are read
    check_load_options(args)
    params = _params(args)
    engine = _engine(args)
    chat = _Chat(args, params)
    interactive = sys.stdin.isatty()
    print(CHAT_HELP, file=sys.stderr)
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
        rest = rest.strip()
        try:
            if command == "/quit":
                return 0
            if command == "/reset":
                chat.history, chat.images, chat.video, chat.volume = [], [], None, None
                print("(conversation cleared)", file=sys.stderr)
            elif command == "/think":
                params.think = not params.think
                print(f"(think mode {'on' if params.think else 'off'})", file=sys.stderr)
            elif command == "/history":
                print(chat.show_history(), file=sys.stderr)
            elif command in ("/image", "/video", "/volume"):
                print(chat.attach(command, rest), file=sys.stderr)
            elif command.startswith("/"):
                if command != "/help":
                    print(f"(unknown command {command})", file=sys.stderr)
                print(CHAT_HELP, file=sys.stderr)
            else:
                conversation = [*chat.history, chat.turn(line)]
                print("hulumed> ", end="", flush=True)
                answer, stopped = _stream_to_stdout(engine, conversation, params)
                if stopped:
                    print("(answer stopped; kept in the conversation as far as it got)", file=sys.stderr)
                chat.history = [*conversation, {"role": "assistant", "content": answer}]
        except (HulumedError, ValueError, OSError) as error:  # a bad command or attachment never ends the chat
            print(f"(error: {error})", file=sys.stderr)


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch_job import run_batch_job

    if not Path(args.input).is_file():
        raise HulumedError(f"--input {args.input}: no such file")
    check_load_options(args)
    params = _params(args)
    engine = _engine(args)
    counts = run_batch_job(
        engine, args.input, args.output, media_root=args.media_root,
        defaults=params, progress=not args.no_progress, retry_errors=args.retry_errors,
        max_prompt_tokens=args.max_prompt_tokens,
    )
    print(json.dumps(counts), file=sys.stderr)
    return 0


def _config_and_processor(model: str, revision: str | None) -> tuple[Any, Any, Any]:
    from .loading import load_config, load_processor

    path, config = load_config(model, revision=revision)  # bounded: checkpoint_bounds
    return path, config, load_processor(path)


def cmd_info(args: argparse.Namespace) -> int:
    from .estimate import describe_model, describe_template
    from .loading import checkpoint_family

    path, config, processor = _config_and_processor(args.model, args.revision)
    if checkpoint_family(path).name == "qwen3_vl":
        from .qwen3_vl_estimate import describe_model as describe_second_generation

        info = describe_second_generation(config, path=path)
    else:
        info = describe_model(config, path=path)
        info.update(generation=1, family=checkpoint_family(path).label)
    info["chat_template"] = describe_template(processor.chat_template)
    print(json.dumps(info, indent=2))
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from .conversation import has_media
    from .estimate import estimate_request
    from .loading import checkpoint_family, pick_device, pick_dtype

    _check_prompt(args.prompt)
    check_media(args.image, args.video, args.volume)
    _volume_options(args)  # checked before any weights are read
    path, config, processor = _config_and_processor(args.model, args.revision)
    conversation = [_turn(args, args.prompt)]
    dtype = pick_dtype(pick_device(args.device), args.dtype)
    if checkpoint_family(path).name == "qwen3_vl":
        from .processing.qwen3_vl_inputs import prepare_inputs
        from .qwen3_vl_estimate import estimate_inputs

        params = _params(args)
        batch = prepare_inputs(processor, conversation, volume_input=args.volume_input, think=params.think)
        report = estimate_inputs(config, batch, params, dtype=dtype)
    else:
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

    out = make_tiny_checkpoint(args.out, variant=args.variant, seed=args.seed, force=args.force,
                               head_dim=args.head_dim)
    print(f"wrote a tiny random {args.variant} checkpoint (official layout) to {out}")
    return 0


# ---------------------------------------------------------------------------------------------- registry
def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="answer one prompt (with images / video / volume), streamed")
    add_model_options(p)
    _media_options(p)
    _generation_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON result instead of streaming text")
    p.add_argument("prompt")
    p.set_defaults(handler=cmd_generate)

    p = subparsers.add_parser("chat", help="multi-turn chat in the terminal", epilog=CHAT_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)
    _generation_options(p)
    _media_options(p, single=False)
    p.set_defaults(handler=cmd_chat)

    p = subparsers.add_parser("batch", help="answer a JSONL file of requests, resumable")
    add_model_options(p, batch=True)
    _generation_options(p)
    p.add_argument("--input", required=True, help="requests, one JSON object per line")
    p.add_argument("--output", required=True, help="results, one JSON object per line (appended; resumable)")
    p.add_argument("--media-root", help="folder that relative media paths start from (default: the input's)")
    p.add_argument("--retry-errors", action=argparse.BooleanOptionalAction, default=True,
                   help="on a rerun, answer again the ids whose record is an error [on]")
    p.add_argument("--max-prompt-tokens", type=int, default=DEFAULT_MAX_PROMPT_TOKENS,
                   help="a line whose text holds more tokens is an error record, checked before any model work "
                   f"[{DEFAULT_MAX_PROMPT_TOKENS}, the server's default]")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(handler=cmd_batch)

    p = subparsers.add_parser("info", help="variant, parameter count, sizes and flags of a checkpoint")
    p.add_argument("model", help="checkpoint folder or hub id")
    add_options(p, LoadOptions, only=("revision",))
    p.set_defaults(handler=cmd_info)

    p = subparsers.add_parser("estimate", help="visual tokens and memory a request needs (no weights loaded)")
    p.add_argument("--model", required=True, help="checkpoint folder or hub id")
    add_options(p, LoadOptions, only=("revision", "device", "dtype", "frame_chunk_size", "volume_input"),
                types_={"frame_chunk_size": positive_int})
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    _media_options(p)
    _generation_options(p)
    p.add_argument("prompt", nargs="?", default="Describe.")
    p.set_defaults(handler=cmd_estimate)

    p = subparsers.add_parser("make-tiny", help="write a tiny random checkpoint in the official layout")
    p.add_argument("out")
    p.add_argument("--variant", choices=list(VARIANTS), default="qwen2",
                   help="qwen2 / qwen3: first generation (Hulu-Med-7B / -4B layout); qwen3_vl_moe: second "
                   "(Hulu-Med-30A3 layout)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the weights [0]")
    p.add_argument("--force", action="store_true", help="write into an existing non-empty folder")
    p.add_argument("--head-dim", type=positive_int, choices=(16, 32, 64), default=None,
                   help="decoder head size (qwen2 default 16, qwen3 32); 32 makes a checkpoint vLLM's CPU attention "
                        "runs")
    p.set_defaults(handler=cmd_make_tiny)

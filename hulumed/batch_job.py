"""Resumable JSONL batch jobs over the engine (``hulumed batch``).

Input: one request per line, either a full conversation or a prompt plus media paths::

    {"id": "p1", "conversation": [...], "max_new_tokens": 256, "temperature": 0}
    {"id": "p2", "prompt": "Findings?", "images": ["cxr/p2.png"], "volume": "ct/p2.nii.gz", "slices": 64}
    {"id": "p3", "prompt": "Report.", "volume": "ct/p3.nii.gz", "json_schema": "radiology_report"}

A line may ask for structured output with one of ``response_format`` (OpenAI's), ``json_schema`` (a schema or
a shipped schema's name), ``regex``, ``choice`` or ``json_object`` (``hulumed.structured``).

Media paths are relative to ``media_root`` (default: the input file's folder). A line without ``id`` gets
``line-<n>``. Output: one JSON object per line with the same ``id`` and either ``text`` / ``reasoning`` /
``finish_reason`` / ``usage`` or ``error``; each line is written and flushed as soon as it is answered.

Resuming: ids already answered in the output are skipped, so re-running an interrupted command finishes the
job with every id exactly once (a half-written last line from a kill is cut off first). A bad line
(malformed JSON, bad fields, unreadable media) becomes an error record for that id and the job goes on. The
whole job goes to the engine (``Engine.generate_each``), which alone batches (requests with equal parameters
together, ``--batch-size`` rows) and isolates failures (a failing batch is retried request by request). On a
rerun, error records are dropped from the output and their ids answered again (``retry_errors=False`` keeps
them as they are), so a fixed input file or a restored image is picked up. An id that appears twice in the
input is answered once, with a warning naming both lines.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TextIO

from .conversation import user_turn, validate
from .errors import DataError, HulumedError, RequestTooLarge
from .generation import GenerationParams, GenerationResult
from .interface import DEFAULT_MAX_PROMPT_TOKENS, Engine, check_text_tokens, conversation_texts
from .json_input import loads, read_lines
from .structured import StructuredOutput

_PARAM_FIELDS = {f.name for f in fields(GenerationParams)}
_MEDIA_KEYS = ("image_path", "video_path")
_LINE_FIELDS = (
    {"id", "conversation", "prompt", "images", "image", "video", "volume", "slices", "axis"}
    | (_PARAM_FIELDS - {"structured"}) | {"response_format", "json_schema", "regex", "choice", "json_object"}
)


@dataclass
class Request:
    id: str
    line: int = 0
    conversation: list[dict[str, Any]] | None = None
    params: GenerationParams | None = None
    error: str | None = None


def _absolute_media(value: Any, root: Path) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                str(root / v) if k in _MEDIA_KEYS and isinstance(v, str) and not os.path.isabs(v)
                else _absolute_media(v, root)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_absolute_media(v, root) for v in value]
    return value


def parse_request(line: str | DataError, number: int, root: Path, defaults: GenerationParams) -> Request:
    """One input line -> a request (or a request carrying the error that line has; ``json_input`` reads it)."""
    if isinstance(line, DataError):
        return Request(id=f"line-{number}", error=str(line))
    try:
        record = loads(line, where=f"line {number}")
    except DataError as error:
        return Request(id=f"line-{number}", error=str(error))
    if not isinstance(record, dict):
        return Request(id=f"line-{number}", error=f"line {number} is not a JSON object")
    request_id = str(record.get("id", f"line-{number}"))
    try:
        _check_fields(record)
        if "conversation" in record:
            conversation = validate(_absolute_media(record["conversation"], root))
        elif isinstance(record.get("prompt"), str):
            images = record.get("images") or ([record["image"]] if "image" in record else [])
            if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
                raise ValueError("'images' is a list of paths and 'image' one path string")
            for key in ("video", "volume"):
                if record.get(key) is not None and not isinstance(record[key], str):
                    raise ValueError(f"'{key}' is one path string")
            resolve = lambda p: str(root / p) if p is not None and not os.path.isabs(p) else p  # noqa: E731
            conversation = [
                user_turn(
                    record["prompt"], [resolve(p) for p in images], resolve(record.get("video")),
                    resolve(record.get("volume")), slices=record.get("slices"), axis=record.get("axis"),
                )
            ]
        else:
            raise ValueError("a request needs 'conversation' or 'prompt'")
        overrides = {k: v for k, v in record.items() if k in _PARAM_FIELDS}
        structured = StructuredOutput.from_fields(record)  # response_format / json_schema / regex / choice
        if structured is not None:
            overrides["structured"] = structured
        params = GenerationParams(**{**_as_dict(defaults), **overrides})
    except (ValueError, TypeError) as error:
        return Request(id=request_id, error=str(error))
    return Request(id=request_id, conversation=conversation, params=params)


def _check_fields(record: dict[str, Any]) -> None:
    """A misspelled field (``"temprature"``) is an error for its line, not a silently ignored setting."""
    unknown = sorted(set(record) - _LINE_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(repr(k) for k in unknown)[:300]}; a line takes "
                         f"{', '.join(sorted(_LINE_FIELDS))}")


def _as_dict(params: GenerationParams) -> dict[str, Any]:
    return {f.name: getattr(params, f.name) for f in fields(GenerationParams)}


def done_ids(output: Path, retry_errors: bool = False) -> set[str]:
    """Ids already answered in ``output``; a torn last line (from a kill) is truncated away first.

    With ``retry_errors``, error records are removed from ``output`` (rewritten atomically) and their ids are
    not counted as done.
    """
    if not output.exists():
        return set()
    data = output.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with output.open("r+b") as handle:
            handle.truncate(keep)
        data = data[:keep]
    ids, kept, dropped = set(), [], 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            request_id = str(record["id"])
        except (json.JSONDecodeError, KeyError, TypeError):
            kept.append(line)
            continue
        if retry_errors and "error" in record:
            dropped += 1
            continue
        ids.add(request_id)
        kept.append(line)
    if dropped:
        scratch = output.with_name(output.name + ".tmp")
        scratch.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(scratch, output)
    return ids


def result_record(request_id: str, result: GenerationResult) -> dict[str, Any]:
    return {
        "id": request_id,
        "text": result.text,
        "reasoning": result.reasoning,
        "finish_reason": result.finish_reason,
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "visual_tokens": result.visual_tokens,
        },
    }


def _write(handle: TextIO, record: dict[str, Any]) -> None:
    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def _pending(
    input_path: Path, root: Path, defaults: GenerationParams, skip: set[str], warn: Callable[[str], None]
) -> Iterator[Request]:
    first_line: dict[str, int] = {}
    for number, line in read_lines(input_path):
        if isinstance(line, str) and not line.strip():
            continue
        request = parse_request(line, number, root, defaults)
        request.line = number
        if request.id in first_line:
            warn(f"line {number} repeats id {request.id!r} of line {first_line[request.id]}; it is skipped")
            continue
        first_line[request.id] = number
        if request.id not in skip:
            yield request


def _stderr(message: str) -> None:
    print(f"hulumed batch: warning: {message}", file=sys.stderr)


def run_batch_job(
    engine: Engine,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    media_root: str | os.PathLike | None = None,
    defaults: GenerationParams | None = None,
    progress: bool = True,
    retry_errors: bool = True,
    warn: Callable[[str], None] = _stderr,
    max_prompt_tokens: int | None = DEFAULT_MAX_PROMPT_TOKENS,
) -> dict[str, int]:
    """Answer every request of ``input_path`` not yet answered in ``output_path``; returns counts."""
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise HulumedError(f"no input file {input_path}")
    root = Path(media_root) if media_root is not None else input_path.parent
    defaults = defaults or GenerationParams()
    skip = done_ids(output_path, retry_errors=retry_errors)
    requests = list(_pending(input_path, root, defaults, skip, warn))
    tokenizer = engine.tokenizer
    for request in requests:
        if request.error is None:
            try:  # before any model work: a 40k-token line would otherwise be tokenised, batched and run
                check_text_tokens(conversation_texts(request.conversation), tokenizer, max_prompt_tokens)
            except RequestTooLarge as error:
                request.error = f"line {request.line}: {error}"
    counts = {"skipped": len(skip), "answered": 0, "errors": 0}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(requests), unit="req", desc="hulumed batch")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("a", encoding="utf-8") as out:
        for record in _records(engine, requests):
            _write(out, record)
            counts["errors" if "error" in record else "answered"] += 1
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return counts


def _records(engine: Engine, requests: list[Request]) -> Iterator[dict[str, Any]]:
    """One output record per request: lines that are errors already, then the engine's outcome of every other
    request (the engine batches them and isolates a failing one: ``Engine.generate_each``)."""
    runnable = [r for r in requests if r.error is None]
    for request in requests:
        if request.error is not None:
            yield {"id": request.id, "error": request.error}
    for index, outcome in engine.generate_each((r.conversation, r.params) for r in runnable):
        request = runnable[index]
        if isinstance(outcome, Exception):
            yield {"id": request.id, "error": str(outcome)}
        else:
            yield result_record(request.id, outcome)

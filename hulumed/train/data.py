"""Training data: the two record formats, reading JSON / JSONL with line numbers, and ``hulumed data check``.

In:  a ``.jsonl`` file (one record per line) or a ``.json`` file (an array of records), media paths relative to
     a media root (default: the data file's folder).
Out: ``Example`` objects — a conversation in the processor's format with absolute media paths, plus the
     ``file:line`` it came from, so every later error (unreadable image, too long) names its record.

Record formats (docs/training.md has full examples):

1. processor format — exactly what ``HulumedProcessor`` takes at inference, plus assistant turns::

       {"conversation": [                                   # or "messages", or the bare list
          {"role": "user", "content": [{"type": "image", "image": {"image_path": "cxr/001.png"}},
                                       {"type": "text", "text": "Findings?"}]},
          {"role": "assistant", "content": "No acute abnormality."}]}

   Media parts: ``image`` (``{"image_path"}`` or a path string), ``video`` (``{"video_path", "fps",
   "max_frames", ...}`` or a path), ``3d`` (``{"image_path", "nii_num_slices", "nii_axis", ...}`` or a path).

2. LLaVA / VideoLLaMA3 format — ``conversations`` with ``from``/``value`` and placeholders::

       {"image": ["cxr/001.png"], "conversations": [{"from": "human", "value": "<image>\\nFindings?"},
                                                    {"from": "gpt", "value": "No acute abnormality."}]}

   ``<image>``, ``<video>`` and ``<3d>`` placeholders take the entries of ``image``, ``video`` and ``3d``
   (a string or a list; an entry is a path or the option dict of format 1) in order; their counts must
   match exactly. One newline right after a placeholder is dropped (the chat template adds its own).

Checks here need no model: JSON syntax, schema (``conversation.validate``, purpose "train"; messages numbered
from 0), placeholder counts, media paths that exist. With a processor (``hulumed data check --model M``),
``check_file`` also encodes every record: media readable, token count.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hulumed.conversation import MEDIA_KINDS, Conversation, validate
from hulumed.errors import ConversationError, DataError, HulumedError
from hulumed.json_input import check_value, loads, read_lines

PLACEHOLDERS = {"<image>": "image", "<video>": "video", "<3d>": "3d"}
_PLACEHOLDER_RE = re.compile("(" + "|".join(re.escape(p) for p in PLACEHOLDERS) + ")\n?")
_PATH_KEY = {"image": "image_path", "video": "video_path", "3d": "image_path"}
_LLAVA_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
_MAX_LISTED = 10
MAX_JSON_ARRAY_BYTES = 256 * 2**20  # a .json array is parsed whole; larger data belongs in .jsonl


@dataclass
class Record:
    """One record as read from a file: parsed JSON, or the reason it could not be parsed."""

    source: str
    line: int  # 1-based line on which the record starts
    raw: Any = None
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass
class Example:
    """One training conversation in the processor's format, media paths absolute."""

    where: str  # "file:line", used in every error about this example
    conversation: Conversation
    media: list[tuple[str, str]] = field(default_factory=list)  # (kind, path) in order


# ---------------------------------------------------------------------------------------------- reading
def read_records(path: str | os.PathLike) -> list[Record]:
    """Every record of a ``.jsonl`` (one per line) or ``.json`` (array) file, each with its line number. Lines are
    read as untrusted JSON (``json_input``): a deep, over-long or unencodable record is that record's error."""
    path = Path(path)
    source = str(path)
    try:
        if not path.is_file():
            raise DataError(f"data file {path} is not a regular file")
        with path.open("rb") as handle:
            head = handle.read(4096).decode("utf-8", "replace")
        if path.suffix == ".jsonl" or (path.suffix != ".json" and not head.lstrip().startswith("[")):
            return list(_read_jsonl(source))
        if path.stat().st_size > MAX_JSON_ARRAY_BYTES:
            raise DataError(f"data file {path} is over {MAX_JSON_ARRAY_BYTES // 2**20} MiB; a .json array is read "
                            "whole, use .jsonl (one record per line) for large data")
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DataError(f"cannot read data file {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise DataError(f"data file {path} is not UTF-8 (byte {error.start})") from None
    return list(_read_json_array(source, text))


def _read_jsonl(source: str) -> Iterator[Record]:
    for number, line in read_lines(source):
        if isinstance(line, DataError):
            yield Record(source, number, error=str(line).split(": ", 1)[-1])
            continue
        if not line.strip():
            continue
        try:
            yield Record(source, number, raw=loads(line, where="record"))
        except DataError as error:
            message = str(error).removeprefix("record: ").replace("malformed JSON", "invalid JSON", 1)
            yield Record(source, number, error=message)


def _read_json_array(source: str, text: str) -> Iterator[Record]:
    """Decode the array element by element so each record keeps the line it starts on."""
    decoder = json.JSONDecoder()
    index = _skip_space(text, 0)
    if index >= len(text) or text[index] != "[":
        yield Record(source, _line_of(text, index), error="a .json data file must hold an array of records")
        return
    index = _skip_space(text, index + 1)
    if index < len(text) and text[index] == "]":
        return
    while index < len(text):
        line = _line_of(text, index)
        try:
            value, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as error:
            yield Record(source, error.lineno, error=f"invalid JSON: {error.msg} (column {error.colno})")
            return  # the rest of the array cannot be located reliably
        except (RecursionError, ValueError) as error:
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error).splitlines()[0][:120]
            yield Record(source, line, error=f"invalid JSON: {reason}")
            return
        try:
            check_value(value, "record")
        except DataError as error:
            yield Record(source, line, error=str(error).removeprefix("record: "))
        else:
            yield Record(source, line, raw=value)
        index = _skip_space(text, index)
        if index < len(text) and text[index] == ",":
            index = _skip_space(text, index + 1)
        elif index < len(text) and text[index] == "]":
            return
        else:
            yield Record(source, _line_of(text, index), error="invalid JSON: expected ',' or ']' after a record")
            return
    yield Record(source, _line_of(text, index), error="invalid JSON: the array is not closed")


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


# ---------------------------------------------------------------------------------------------- normalising
def to_example(record: Record, media_root: str | os.PathLike | None = None) -> Example:
    """A parsed record (either format) -> ``Example``; raises ``DataError`` saying what is wrong."""
    if record.error is not None:
        raise DataError(record.error)
    root = Path(media_root) if media_root is not None else Path(record.source).parent
    raw = record.raw
    if isinstance(raw, dict) and "conversations" in raw:
        conversation = _from_llava(raw)
    elif isinstance(raw, dict) and ("conversation" in raw or "messages" in raw):
        conversation = raw.get("conversation", raw.get("messages"))
    elif isinstance(raw, list):
        conversation = raw
    else:
        raise DataError(
            "a record must be {'conversation': [...]}, {'messages': [...]}, a list of messages, or the LLaVA form "
            "{'image': ..., 'conversations': [{'from', 'value'}, ...]}"
        )
    conversation, media = _normalise(conversation, root)
    return Example(record.where, conversation, media)


def _from_llava(raw: dict[str, Any]) -> Conversation:
    """LLaVA / VideoLLaMA3 record -> processor conversation (placeholders become media parts, in order); turn i
    becomes message i, which ``_normalise`` then validates like any processor-format conversation."""
    turns = raw["conversations"]
    if not isinstance(turns, list) or not all(isinstance(t, dict) and "from" in t and "value" in t for t in turns):
        raise DataError("'conversations' must be a list of {'from': ..., 'value': ...} turns")
    pools = {kind: _as_list(raw.get(kind)) for kind in MEDIA_KINDS}
    texts = [t["value"] if isinstance(t["value"], str) else "" for t in turns]
    for tag, kind in PLACEHOLDERS.items():
        count = sum(text.count(tag) for text in texts)
        if count != len(pools[kind]):
            raise DataError(f"{count} {tag} placeholder(s) but {len(pools[kind])} '{kind}' entr(y/ies) in the record")
    used = dict.fromkeys(MEDIA_KINDS, 0)
    conversation: Conversation = []
    for number, turn in enumerate(turns):
        role = _LLAVA_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise DataError(f"turn {number} has unknown 'from' {turn['from']!r}; use human/user, gpt/assistant, system")
        value = turn["value"]
        if not isinstance(value, str):
            raise DataError(f"turn {number}: 'value' must be a string")
        parts: list[dict[str, Any]] = []
        for piece in _PLACEHOLDER_RE.split(value):
            kind = PLACEHOLDERS.get(piece)
            if kind is None:
                if piece:
                    parts.append({"type": "text", "text": piece})
                continue
            parts.append({"type": kind, kind: pools[kind][used[kind]]})
            used[kind] += 1
        conversation.append({"role": role, "content": parts if any(p["type"] != "text" for p in parts) else value})
    return conversation


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _normalise(conversation: Any, root: Path) -> tuple[Conversation, list[tuple[str, str]]]:
    """Validate a processor-format conversation (``conversation.validate``, purpose "train"); copy it with string
    parts as text parts and media paths (``{path_key: path}`` or a bare path string) made absolute under ``root``."""
    try:
        validate(conversation, purpose="train")
    except ConversationError as error:
        raise DataError(str(error)) from error
    out: Conversation = []
    media: list[tuple[str, str]] = []
    for number, message in enumerate(conversation):
        role, content = message["role"], message["content"]
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        parts = []
        for part in content:
            if isinstance(part, str):
                part = {"type": "text", "text": part}
            kind = part["type"]
            if kind == "text":
                parts.append({"type": "text", "text": part["text"]})
                continue
            value = part[kind]
            options = dict(value) if isinstance(value, dict) else {_PATH_KEY[kind]: value}
            path = options.get(_PATH_KEY[kind])
            if not isinstance(path, str) or not path:
                raise DataError(f"message {number}: a {kind} part needs {{'{_PATH_KEY[kind]}': path}} or a path string")
            options[_PATH_KEY[kind]] = str(root / os.path.expanduser(path))
            media.append((kind, options[_PATH_KEY[kind]]))
            parts.append({"type": kind, kind: options})
        out.append({"role": role, "content": parts})
    return out, media


def load_examples(paths: Iterable[str | os.PathLike], media_root: str | os.PathLike | None = None) -> list[Example]:
    """All examples of one or more data files; raises ``DataError`` listing the bad records (see data check)."""
    examples: list[Example] = []
    problems: list[str] = []
    for path in paths:
        for record in read_records(path):
            try:
                example = to_example(record, media_root)
            except DataError as error:
                problems.append(f"{record.where}: {error}")
                continue
            found = [problem for kind, file in example.media if (problem := _media_problem(kind, file))]
            problems.extend(f"{record.where}: {problem}" for problem in found)
            if not found:
                examples.append(example)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise DataError(f"{len(problems)} bad record(s); run `hulumed data check` for all of them:\n  {listed}{more}")
    if not examples:
        raise DataError("the training data has no records")
    return examples


# ---------------------------------------------------------------------------------------------- checking
@dataclass
class CheckReport:
    """What ``check_file`` found: problems by ``file:line`` and a few totals."""

    records: int = 0
    problems: list[str] = field(default_factory=list)  # "file:line: error: message"
    bad_records: int = 0
    modalities: dict[str, int] = field(default_factory=dict)
    max_tokens: int = 0
    total_tokens: int = 0
    supervised_tokens: int = 0


def check_file(
    path: str | os.PathLike,
    media_root: str | os.PathLike | None = None,
    encode: Callable[[Conversation], Any] | None = None,
    max_length: int | None = None,
) -> CheckReport:
    """Validate every record of a data file; never stops at the first problem.

    ``encode`` is ``labels.LabelEncoder.encode`` bound to a checkpoint's processor (or None): it reads the media
    and gives the token count, which is then compared with ``max_length``.
    """
    report = CheckReport()
    for record in read_records(path):
        report.records += 1
        found = _check_record(record, media_root, encode, max_length, report)
        if found:
            report.bad_records += 1
            report.problems.extend(f"{record.where}: error: {message}" for message in found)
    return report


def _media_problem(kind: str, path: str) -> str | None:
    """Why a record's media path cannot be read (None when it can): missing, or not a regular file — a folder is
    fine only where a kind takes one (a frame folder for video, a DICOM series for 3d)."""
    if not os.path.exists(path):
        return f"{kind} not found: {path}"
    if os.path.isdir(path):
        return None if kind in ("video", "3d") else f"{kind} is a folder, not a file: {path}"
    from hulumed.processing.safe_files import regular_file

    try:
        regular_file(path)
    except HulumedError as error:
        return f"{kind}: {error}"
    return None


def _check_record(
    record: Record,
    media_root: str | os.PathLike | None,
    encode: Callable[[Conversation], Any] | None,
    max_length: int | None,
    report: CheckReport,
) -> list[str]:
    try:
        example = to_example(record, media_root)
    except DataError as error:
        return [str(error)]
    missing = [_media_problem(kind, path) for kind, path in example.media]
    missing = [problem for problem in missing if problem]
    if missing:
        return missing
    n = supervised = 0
    if encode is not None:
        try:
            encoded = encode(example.conversation)
        except (HulumedError, ValueError, OSError) as error:
            return [f"cannot encode: {error}"]
        n, supervised = len(encoded.input_ids), encoded.supervised_tokens
        if max_length is not None and n > max_length:
            return [f"{n} tokens > max length {max_length} (lower the image/frame budget or raise --max-length)"]
    for kind in {kind for kind, _ in example.media} or {"text"}:
        report.modalities[kind] = report.modalities.get(kind, 0) + 1
    report.max_tokens = max(report.max_tokens, n)
    report.total_tokens += n
    report.supervised_tokens += supervised
    return []

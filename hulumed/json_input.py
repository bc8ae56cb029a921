"""JSON a user hands us in a file (batch lines, training records, benchmark rows), parsed as untrusted input.

``json.loads`` on such text can end a whole run: 100,000 nested brackets raise ``RecursionError``, a 5,000-digit
integer raises a bare ``ValueError`` (Python's integer-string limit), and ``"\\ud800"`` parses into a string that
later cannot be written as UTF-8 or tokenised. A line of a gigabyte is read into memory whole by ``for line in
file``. Here every such case is one ``DataError`` for that line, and the caller turns it into an error record:

    for number, line in read_lines(path):        # a line over MAX_LINE_BYTES comes back as a DataError
        value = loads(line, where=f"{path}:{number}")

Limits: ``MAX_LINE_BYTES`` per line (16 MiB: a conversation with a long report is kilobytes; media are paths),
``MAX_DEPTH`` nesting (a conversation is 5 levels deep; 64 leaves room for any honest record).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from .errors import DataError

MAX_LINE_BYTES = 16 * 2**20
MAX_DEPTH = 64


def loads(text: str | bytes, where: str = "input") -> Any:
    """``json.loads`` whose every failure is a ``DataError`` naming ``where``; refuses deep nesting and lone
    surrogates (UTF-16 halves that no UTF-8 writer or tokenizer takes)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: malformed JSON: {error.msg} (column {error.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply (limit {MAX_DEPTH} levels)") from None
    except (ValueError, UnicodeDecodeError) as error:  # a number over Python's int digit limit, bad UTF-8
        raise DataError(f"{where}: unreadable JSON value: {str(error).splitlines()[0][:120]}") from None
    check_value(value, where)
    return value


def check_value(value: Any, where: str = "input") -> None:
    """Raise ``DataError`` if ``value`` nests deeper than ``MAX_DEPTH`` or holds a lone surrogate (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                raise DataError(f"{where}: a string holds a lone UTF-16 surrogate (\\ud800-\\udfff); "
                                "fix the file's encoding")
            continue
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise DataError(f"{where}: JSON nested too deeply (limit {MAX_DEPTH} levels)")
            children = list(item.items()) if isinstance(item, dict) else item
            for child in children:
                if isinstance(child, tuple):  # a dict entry: its key, its value
                    stack.append((child[0], depth + 1))
                    stack.append((child[1], depth + 1))
                else:
                    stack.append((child, depth + 1))


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_lines(path: str | os.PathLike, max_line_bytes: int | None = None) -> Iterator[tuple[int, str | DataError]]:
    """(1-based number, text) for each line of a UTF-8 file, never holding more than ``max_line_bytes`` (default
    ``MAX_LINE_BYTES``) of one line: a longer line (or one not UTF-8) comes back as a ``DataError``, skipped to its
    end."""
    max_line_bytes = max_line_bytes or MAX_LINE_BYTES
    with open(path, "rb") as handle:
        number = 0
        while True:
            line = handle.readline(max_line_bytes + 1)
            if not line:
                return
            number += 1
            if len(line) > max_line_bytes and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of the over-long line
                    line = handle.readline(2**20)
                yield number, DataError(f"{path}:{number}: line longer than {max_line_bytes // 2**20} MiB")
                continue
            try:
                yield number, line.decode("utf-8")
            except UnicodeDecodeError as error:
                yield number, DataError(f"{path}:{number}: not UTF-8 (byte {error.start})")

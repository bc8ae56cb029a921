"""Upstream's reasoning mode and ``<think>`` blocks: the one place that knows about them.

* ``THINK_INSTRUCTION`` / ``with_think_instruction``: ``think=True`` appends upstream's instruction (Hulu-Med
  README; MedUniEval's REASONING mode) on a new line to the last user turn.
* ``strip_think``: upstream's ``batch_decode(use_think=False)``: ``<think>...</think>`` spans removed, runs of
  blank lines collapsed, ends stripped.
* ``answer_text``: what benchmark scoring reads: ``<think>`` blocks removed, an unterminated one as well.
* ``reasoning_of``: the text of the complete ``<think>`` blocks of a raw answer (``GenerationResult.reasoning``).
* ``visible_prefix``: the part of a partial (streamed) answer that can no longer change.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

THINK_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_THINK_TO_END = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)  # a block, or an open one to the end
_BLANK_RUN = re.compile(r"\n\s*\n")
OPEN, CLOSE = "<think>", "</think>"


def with_think_instruction(conversation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy with upstream's reasoning instruction appended (on a new line) to the last user turn."""
    conversation = copy.deepcopy(conversation)
    for message in reversed(conversation):
        if message["role"] != "user":
            continue
        if isinstance(message["content"], str):
            message["content"] = f"{message['content']}\n{THINK_INSTRUCTION}"
        else:
            texts = [part for part in message["content"] if isinstance(part, dict) and part.get("type") == "text"]
            if texts:
                texts[-1]["text"] = f"{texts[-1]['text']}\n{THINK_INSTRUCTION}"
            else:
                message["content"].append({"type": "text", "text": THINK_INSTRUCTION})
        return conversation
    raise ValueError("think mode needs a user message")


def strip_think(text: str) -> str:
    """Upstream's `use_think=False` post-processing: drop `<think>...</think>`, collapse blank runs, strip."""
    text = _THINK_BLOCK.sub("", text)
    text = _BLANK_RUN.sub("\n\n", text)
    return text.strip()


def answer_text(raw: str) -> str:
    """The answer part of a raw response, for scoring: every ``<think>...</think>`` block removed, and an open
    ``<think>`` with everything after it, then the ends stripped.

    Unlike ``strip_think`` (upstream's decode, which leaves an unterminated ``<think>`` in place and collapses
    blank-line runs), a response cut off inside its reasoning has no answer, so none of that reasoning may be
    parsed as one; blank-line runs are kept: scoring reads the answer as the model wrote it.
    """
    return _THINK_TO_END.sub("", raw).strip()


def reasoning_of(raw: str) -> str | None:
    """The text of the complete <think> blocks of a raw decode (None when there are none)."""
    blocks = [block.strip() for block in _THINK_BLOCK.findall(raw)]
    return "\n\n".join(blocks) if blocks else None


REPLACEMENT = "\ufffd"  # what a decoder shows for the bytes of an incomplete UTF-8 character


def visible_prefix(raw: str, stop: Sequence[str]) -> str:
    """The part of a partial answer that can no longer change: think blocks removed, an open <think> and a
    possible start of a stop string held back, blank-line runs collapsed, trailing whitespace held back, and a
    trailing replacement character held back (the first byte tokens of a character split across tokens, e.g. µ,
    ° or a Chinese character, decode to U+FFFD until the rest arrives)."""
    raw = raw.rstrip(REPLACEMENT)
    cut = min((raw.find(s) for s in stop if s and s in raw), default=-1)
    text = raw[:cut] if cut >= 0 else raw
    open_think = text.rfind(OPEN)
    if open_think >= 0 and text.find(CLOSE, open_think) < 0:
        text = text[:open_think]
    text = strip_think(text) if text.strip() else ""
    for marker in [OPEN, *stop]:  # hold back a tail that may become a marker
        for k in range(min(len(marker) - 1, len(text)), 0, -1):
            if marker and text.endswith(marker[:k]):
                text = text[:-k]
                break
    return text.rstrip()

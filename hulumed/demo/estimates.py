"""Before sending: visual tokens (processor count, after inter-frame reduction, removed) and memory per input.

Each attachment is measured alone in a one-turn conversation (so the numbers belong to that input), and the
whole conversation as it would be sent gets a total row. Counts come from ``engine.prepare`` (exact), memory
from ``engine.estimate`` (a planning figure: weights + KV cache + the larger of the vision / prefill peaks,
see ``hulumed.estimate``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..conversation import Conversation
from ..generation import GenerationParams
from ..interface import Engine
from .attachments import Attachment

HEADERS = ["input", "kind", "visual tokens", "after reduction", "removed", "prompt tokens", "est. memory"]


@dataclass
class InputEstimate:
    name: str
    kind: str
    visual_tokens: int  # the processor's count
    after_reduction: int  # what the decoder sees
    prompt_tokens: int
    total_bytes: int

    @property
    def removed(self) -> int:
        return self.visual_tokens - self.after_reduction

    def row(self) -> list[str]:
        return [self.name, self.kind, f"{self.visual_tokens:,}", f"{self.after_reduction:,}", f"{self.removed:,}",
                f"{self.prompt_tokens:,}", human_bytes(self.total_bytes)]


def human_bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return f"{count} B"


def measure(engine: Engine, name: str, kind: str, conversation: Conversation,
            params: GenerationParams) -> InputEstimate:
    prepared = engine.prepare([conversation], params)  # exact counts, before and after reduction
    estimate = engine.estimate(prepared, params)  # from the prepared inputs: the media are decoded once
    return InputEstimate(name, kind, int(prepared.visual_tokens_before_reduction[0]), int(prepared.visual_tokens[0]),
                         int(estimate["prompt_tokens"]), int(estimate["total_bytes"]))


def estimate_inputs(
    engine: Engine, history: Conversation, pending: list[Attachment], prompt: str, params: GenerationParams
) -> list[InputEstimate]:
    """One row per pending attachment, then the whole next request (history + the new turn)."""
    from .session import user_turn_of

    rows = []
    text = prompt or "?"
    for attachment in pending:
        alone = [user_turn_of([attachment], text)]
        rows.append(measure(engine, attachment.name, attachment.kind, alone, params))
    rows.append(measure(engine, "whole request", "total", [*history, user_turn_of(pending, text)], params))
    return rows


def markdown_table(rows: list[InputEstimate]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row.row()) + " |" for row in rows]
    return "\n".join(lines)

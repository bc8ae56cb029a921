"""TEMPORARY bridge from today's ``Engine`` (``stream`` of strings + ``on_finish``) to ``hulumed.interface``.

Removed once the engine itself yields ``StreamDelta`` / ``StreamFinal`` and its ``prepare`` returns a
``Prepared`` with counts before and after reduction (issue 10). The demo calls only these two functions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from ..generation import GenerationParams, GenerationResult
from ..interface import Conversation, StreamDelta, StreamEvent, StreamFinal


def stream_events(
    engine: Any, conversation: Conversation, params: GenerationParams, cancel: threading.Event
) -> Iterator[StreamEvent]:
    finals: list[GenerationResult] = []
    try:
        events = engine.stream(conversation, params, cancel=cancel, on_finish=finals.append)
    except TypeError:  # an interface engine: no on_finish
        yield from engine.stream(conversation, params, cancel=cancel)
        return
    for event in events:
        yield event if isinstance(event, (StreamDelta, StreamFinal)) else StreamDelta(event)
    if finals:
        result = finals[0]
        if cancel.is_set() and result.finish_reason != "stop":
            result.finish_reason = "cancelled"
        yield StreamFinal(result)


def visual_counts(engine: Any, conversation: Conversation, params: GenerationParams) -> tuple[int, int | None]:
    """(visual tokens the processor makes, visual tokens after reduction or None when unknown)."""
    prepared = engine.prepare([conversation], params)
    before = getattr(prepared, "visual_tokens_before_reduction", None)
    if before is None:
        return int(prepared.visual_tokens[0]), None
    return int(before[0]), int(prepared.visual_tokens[0])

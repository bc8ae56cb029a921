"""One chat turn: the next user turn -> engine stream -> chat messages, shown as they grow.

``respond`` yields ``(messages, status)`` after every streamed piece: ``messages`` is the chat as Gradio's
``Chatbot`` shows it (a collapsed "Thinking" block before the answer in think mode, filled from the
result's ``reasoning``), ``status`` one line of token counts and the finish reason ("cancelled" after Stop).
A request the engine refuses (bad file, too many visual tokens, malformed turn) becomes a one-line warning in
the chat; the session's conversation and pending attachments stay as they were, so the user can fix and
resend. Nothing here imports Gradio.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import HulumedError
from ..generation import GenerationParams, GenerationResult
from ..interface import Engine, StreamDelta, StreamFinal
from .session import DemoSession, Message

log = logging.getLogger("hulumed.demo")

THINKING_TITLE = "Thinking"
NO_REASONING = "(the model wrote no reasoning block)"

#: Example prompts per modality (the page lists them under the chat box).
EXAMPLE_PROMPTS: dict[str, list[str]] = {
    "report": ["Write a radiology report for this scan: findings and impression."],
    "vqa": ["What abnormality is visible in this image?", "Which organ is shown, and is it normal?"],
    "compare": ["Compare the two images: what changed between them?"],
    "video": ["Describe what happens in this video, step by step."],
    "volume": ["Describe the main findings in this CT volume."],
}


@dataclass
class ChatSettings:
    """The generation settings of the page; ``temperature`` 0 means greedy, ``None`` the checkpoint's value."""

    max_new_tokens: int = 512
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    think: bool = False

    def params(self) -> GenerationParams:
        greedy = self.temperature is not None and self.temperature == 0
        return GenerationParams(
            max_new_tokens=int(self.max_new_tokens),
            do_sample=False if greedy else None,
            temperature=None if greedy else self.temperature,
            top_p=None if greedy else self.top_p,
            seed=None if self.seed is None else int(self.seed),
            think=bool(self.think),
        )


def _user_message(session: DemoSession, text: str) -> Message:
    notes = [f"Attached: {a.describe()}" for a in session.pending]
    return {"role": "user", "content": "\n".join([*notes, text]) if notes else text}


def status_line(result: GenerationResult, seconds: float) -> str:
    finish = {"cancelled": "stopped by you", "length": "max tokens reached"}.get(result.finish_reason,
                                                                                 result.finish_reason)
    return (f"{result.completion_tokens} tokens in {seconds:.1f} s · prompt {result.prompt_tokens} tokens "
            f"({result.visual_tokens} visual) · finish: {finish}")


def respond(
    engine: Engine, session: DemoSession, text: str, settings: ChatSettings, cancel: threading.Event
) -> Iterator[tuple[list[Message], str]]:
    """Stream one answer into ``session.messages``; commit the turn when an answer came back."""
    text = (text or "").strip()
    if not text:
        session.notice = "Type a question first (attachments go with it)."
        yield session.messages, session.notice
        return
    try:
        params = settings.params()
    except ValueError as error:
        session.notice = f"⚠️ Generation settings: {error}"
        yield session.messages, session.notice
        return
    turn = session.next_turn(text)
    conversation = [*session.conversation, turn]
    shown = [*session.messages, _user_message(session, text)]
    thought: Message | None = None
    if params.think:
        thought = {"role": "assistant", "content": "", "metadata": {"title": THINKING_TITLE, "status": "pending"}}
        shown.append(thought)
    answer: Message = {"role": "assistant", "content": ""}
    shown.append(answer)
    session.notice = ""
    yield copy.deepcopy(shown), "generating…"

    started = time.monotonic()
    result: GenerationResult | None = None
    try:
        for event in engine.stream(conversation, params, cancel=cancel):
            if isinstance(event, StreamDelta):
                answer["content"] += event.text
                yield copy.deepcopy(shown), "generating…"
            elif isinstance(event, StreamFinal):
                result = event.result
    except (HulumedError, ValueError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        shown.remove(answer)
        if thought is not None:
            shown.remove(thought)
        shown.append({"role": "assistant", "content": f"⚠️ {message}"})
        session.messages = shown  # shown, not sent again: the conversation is unchanged
        session.notice = f"⚠️ {message}"
        yield shown, session.notice
        return
    except Exception as error:  # noqa: BLE001 - an engine failure must not kill the page; logged in full
        log.exception("generation failed")
        shown.remove(answer)
        if thought is not None:
            shown.remove(thought)
        shown.append({"role": "assistant", "content": f"⚠️ Generation failed: {type(error).__name__}: {error}"})
        session.messages = shown
        session.notice = f"⚠️ Generation failed: {type(error).__name__}"
        yield shown, session.notice
        return
    if result is None:  # pragma: no cover - the interface promises one StreamFinal
        result = GenerationResult(answer["content"], None, [], 0, 0, 0, "cancelled" if cancel.is_set() else "stop")
    answer["content"] = result.text
    if thought is not None:
        thought["content"] = result.reasoning or NO_REASONING
        thought["metadata"] = {"title": THINKING_TITLE, "status": "done",
                               "duration": round(time.monotonic() - started, 1)}
    session.messages = shown
    session.commit(turn, result.text)
    yield shown, status_line(result, time.monotonic() - started)

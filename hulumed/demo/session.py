"""One browser session: its conversation (the engine's message schema), the chat as shown, pending inputs.

Gradio keeps one ``DemoSession`` per browser tab (``gr.State`` copies the initial value per session), so the
model is shared and the conversations are not. A turn is committed only when an answer came back: a failed
turn (bad file, too many tokens) leaves the conversation and the pending attachments as they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..conversation import Conversation
from .attachments import Attachment

Message = dict[str, Any]  # a Gradio chat message: {"role", "content", optional "metadata"}


def user_turn_of(attachments: list[Attachment], text: str) -> dict[str, Any]:
    """The user message: attachments in upload order, then the text (as ``conversation.user_turn``)."""
    return {"role": "user", "content": [*(a.part() for a in attachments), {"type": "text", "text": text}]}


@dataclass
class DemoSession:
    conversation: Conversation = field(default_factory=list)  # committed turns, sent to the engine
    messages: list[Message] = field(default_factory=list)  # the chat as shown (attachment notes, thinking)
    pending: list[Attachment] = field(default_factory=list)  # inputs of the next user turn
    sent: list[Attachment] = field(default_factory=list)  # inputs of the last committed turn (still viewable)
    notice: str = ""  # the last problem shown in the page ("" when none)
    radiological: bool = True  # the slice viewer shows slices as a radiologist reads them (display only)

    def attach(self, attachments: list[Attachment]) -> None:
        self.pending.extend(attachments)

    def replace(self, old: Attachment, new: Attachment) -> None:
        self.pending = [new if a is old or a == old else a for a in self.pending]

    def remove(self, index: int) -> None:
        if 0 <= index < len(self.pending):
            del self.pending[index]

    def latest(self, kind: str, include_sent: bool = False) -> Attachment | None:
        """The most recently attached pending input of ``kind``; with ``include_sent``, else the last sent one
        (what the viewer shows: the study under discussion stays browsable after it was sent)."""
        found = next((a for a in reversed(self.pending) if a.kind == kind), None)
        if found is None and include_sent:
            found = next((a for a in reversed(self.sent) if a.kind == kind), None)
        return found

    def shown(self) -> list[Attachment]:
        """What the side panel shows: the pending inputs, else those sent with the last message."""
        return self.pending or self.sent

    def next_turn(self, text: str) -> dict[str, Any]:
        return user_turn_of(self.pending, text)

    def commit(self, turn: dict[str, Any], answer: str) -> None:
        """Record a finished exchange; the pending attachments went with it."""
        self.conversation = [*self.conversation, turn, {"role": "assistant", "content": answer}]
        if self.pending:
            self.sent = self.pending
        self.pending = []

    def clear(self) -> None:
        self.conversation, self.messages, self.pending, self.sent, self.notice = [], [], [], [], ""
        self.radiological = True

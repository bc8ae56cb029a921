"""The one message schema used everywhere (processor format of upstream's HF-Version README).

A conversation is a list of ``{"role": "user"|"assistant"|"system", "content": str | list[part]}`` messages;
a part is one of

    {"type": "text", "text": "..."}
    {"type": "image", "image": {"image_path": "x.png"}}
    {"type": "video", "video": {"video_path": "clip.mp4" | "frames/", "fps": 1, "max_frames": 128}}
    {"type": "3d", "3d": {"image_path": "ct.nii.gz", "nii_num_slices": 64, "nii_axis": 2}}

``user_turn`` builds a turn from a prompt plus media paths (CLI, batch files, server); ``validate`` checks the
shape with messages that name the offending message and part (``think.with_think_instruction`` appends
upstream's reasoning instruction to the last user turn).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConversationError

if TYPE_CHECKING:
    from .processing.video.options import VideoOptions
    from .processing.volume.options import VolumeOptions

Conversation = list[dict[str, Any]]
_ROLES = {"system", "user", "assistant", "stream"}
MEDIA_KINDS = ("image", "video", "3d")
_PART_TYPES = {"text", *MEDIA_KINDS}
PURPOSES = ("reply", "train", "any")  # see validate


def user_turn(
    prompt: str,
    images: Sequence[str] = (),
    video: str | None = None,
    volume: str | None = None,
    *,
    video_options: VideoOptions | None = None,
    volume_options: VolumeOptions | dict[str, Any] | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    slices: int | None = None,
    axis: int | None = None,
) -> dict[str, Any]:
    """A user message: images first, then the video, then the volume, then the prompt text.

    Media options are upstream's defaults unless given: ``VideoOptions`` / ``VolumeOptions`` (or the ``3d``
    item's keys as a dict); ``fps`` / ``max_frames`` and ``slices`` / ``axis`` are shorthands that override
    those fields. Invalid options raise ``MediaError`` here, before any file is read."""
    from dataclasses import replace

    from .processing.video.options import VideoOptions
    from .processing.volume.options import VolumeOptions

    video_options = video_options or VideoOptions()
    video_options = replace(video_options, **{k: v for k, v in (("fps", fps), ("max_frames", max_frames))
                                              if v is not None})
    if isinstance(volume_options, dict):
        volume_options = VolumeOptions.from_item({k: v for k, v in volume_options.items() if k != "image_path"})
    volume_options = volume_options or VolumeOptions()
    volume_options = replace(volume_options, **{k: v for k, v in (("num_slices", slices), ("axis", axis))
                                                if v is not None})
    content: list[dict[str, Any]] = [{"type": "image", "image": {"image_path": str(path)}} for path in images]
    if video is not None:
        content.append({"type": "video", "video": video_options.item(str(video))})
    if volume is not None:
        content.append({"type": "3d", "3d": volume_options.item(str(volume))})
    content.append({"type": "text", "text": prompt})
    return {"role": "user", "content": content}


def has_media(conversation: Conversation) -> bool:
    return any(
        isinstance(part, dict) and part.get("type") in ("image", "video", "3d")
        for message in conversation
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def validate(conversation: Any, purpose: str = "reply") -> Conversation:
    """Raise ``ConversationError`` (a ``ValueError``) naming the first malformed message or part; return it.

    ``purpose`` adds the rules of one use on top of the shape every use shares (a non-empty list of messages with
    a ``role`` and a ``content`` that is a string or a list of string / typed parts, media options under the
    part's type):

    * ``"reply"`` (engine, server, batch): roles from the schema; the last message is not the assistant's.
    * ``"train"`` (training data): roles system / user / assistant; media only in user messages; at least one
      assistant message with text.
    * ``"any"`` (the processor, upstream's API): the shape only; roles are the chat template's business.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}; got {purpose!r}")
    if not isinstance(conversation, (list, tuple)) or not conversation:
        raise ConversationError("a conversation is a non-empty list of {'role', 'content'} messages")
    roles = {"any": None, "reply": _ROLES, "train": _ROLES - {"stream"}}[purpose]
    answers = 0
    for i, message in enumerate(conversation):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ConversationError(f"message {i} must be a dict with 'role' and 'content'")
        role = message["role"]
        if roles is not None and not (isinstance(role, str) and role in roles):  # a JSON role may be unhashable
            raise ConversationError(f"message {i} has role {role!r}; use one of {sorted(roles)}")
        content = message["content"]
        if isinstance(content, str):
            answers += role == "assistant" and bool(content.strip())
            continue
        if not isinstance(content, (list, tuple)):
            raise ConversationError(f"message {i}: content must be a string or a list of parts")
        for j, part in enumerate(content):
            if isinstance(part, str):
                answers += role == "assistant" and bool(part.strip())
                continue
            kind = part.get("type") if isinstance(part, dict) else None
            if not (isinstance(kind, str) and kind in _PART_TYPES):
                raise ConversationError(
                    f"message {i} part {j}: type must be one of {sorted(_PART_TYPES)}, got {kind!r}"
                )
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise ConversationError(f"message {i} part {j}: a text part needs a string 'text'")
                answers += role == "assistant" and bool(part["text"].strip())
                continue
            if kind not in part:
                raise ConversationError(f"message {i} part {j}: a {kind} part needs its options under the key {kind!r}")
            if purpose == "train" and role != "user":
                raise ConversationError(f"message {i} ({role}) has a {kind} part; media belong in user messages")
    if purpose == "reply" and conversation[-1]["role"] == "assistant":
        raise ConversationError("the last message is the assistant's; end with a user message to get an answer")
    if purpose == "train" and answers == 0:
        raise ConversationError("the conversation has no assistant turn with text: there is nothing to learn")
    return conversation

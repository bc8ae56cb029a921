"""The media of a conversation, loaded: upstream's `_load_multimodal_data`.

In:  a conversation in the processor format (`hulumed.conversation`), whose `image` / `video` / `3d` parts name
     their media.
Out: a copy whose parts carry the loaded media (the caller's conversation is left untouched):
- `image` -> `load_images(...)[0]` as a one-frame item (a path gives PIL, hence upstream's size swap later; an
  in-memory image gives numpy; a DICOM path gives PIL through `load_image`).
- `video` -> `load_video` over the union of the [start, end] windows of every part that shares the same source
  and load options, each part keeping the frames inside its own window, with `num_frames` and `timestamps`;
  frames given directly are used as they are.
- `3d` -> `load_volume` (NIfTI, or DICOM file / series folder / zip, told apart by content) with the item's
  `VolumeOptions`, rewritten as a `video` part without timestamps.
Parts with equal load arguments (start / end aside) share one load, as upstream's do. `gather_visual_items`
lists the loaded items in conversation order for the image processor.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional

from hulumed.conversation import Conversation, validate
from hulumed.errors import MediaError
from hulumed.processing.image import load_images
from hulumed.processing.image_processing import is_video
from hulumed.processing.video import load_video
from hulumed.processing.volume import VolumeOptions, load_volume

Part = dict[str, Any]

VIDEO_ITEM_KEYS = ("video_path", "fps", "max_frames", "start_time", "end_time")


def _load_key(kind: str, value: Any) -> str:
    """Upstream shares one load between parts with equal load arguments (start/end excluded)."""
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in ("start_time", "end_time")}
    return json.dumps([kind, value], default=lambda obj: f"<{type(obj).__name__} {id(obj)}>")


def _load_images(parts: list[Part]) -> None:
    value = parts[0]["image"]
    if isinstance(value, dict):
        if "image_path" not in value:
            raise MediaError(f"An image part needs {{'image_path': ...}}; got keys {sorted(value)}.")
        value = value["image_path"]
    image = load_images(value)[0]
    for part in parts:
        part["image"] = [image]  # one-frame item


def _load_videos(parts: list[Part], fps: Optional[float], max_frames: Optional[int]) -> None:
    value = parts[0]["video"]
    if not isinstance(value, dict):  # frames given directly
        frames = list(value) if isinstance(value, (list, tuple)) else [frame for frame in value]
        for part in parts:
            part["video"], part["num_frames"] = frames, len(frames)
        return
    unknown = set(value) - set(VIDEO_ITEM_KEYS)
    if unknown:
        raise MediaError(f"Unsupported video option(s) {sorted(unknown)}; supported: {sorted(VIDEO_ITEM_KEYS)}.")
    if value.get("video_path") is None:
        raise MediaError("A video part needs {'video_path': folder | file | list of frames}.")
    starts = [0.0 if p["video"].get("start_time") is None else p["video"]["start_time"] for p in parts]
    ends = [math.inf if p["video"].get("end_time") is None else p["video"]["end_time"] for p in parts]
    start, end = min(starts), max(ends)
    clip = load_video(
        value["video_path"],
        start_time=start if start > 0 else None,
        end_time=end if end < math.inf else None,
        fps=fps if value.get("fps") is None else value["fps"],
        max_frames=max_frames if value.get("max_frames") is None else value["max_frames"],
    )
    for part, s, e in zip(parts, starts, ends):
        kept = [(f, t) for f, t in zip(clip.frames, clip.timestamps) if s <= t <= e]
        part["video"] = [f for f, _ in kept]
        part["num_frames"] = len(kept)
        part["timestamps"] = [t for _, t in kept]


def _load_volumes(parts: list[Part]) -> None:
    value = parts[0]["3d"]
    if not isinstance(value, dict) or value.get("image_path") is None:
        raise MediaError(
            "A 3d part needs {'image_path': a .nii/.nii.gz file or a DICOM file, folder or zip, ...}."
        )
    slices = load_volume(value["image_path"], VolumeOptions.from_item(value))
    for part in parts:
        part.pop("3d")
        part["type"], part["video"], part["num_frames"] = "video", slices, len(slices)


def load_conversation_media(
    conversation: Conversation, fps: Optional[float] = 1, max_frames: Optional[int] = 128
) -> Conversation:
    """A copy of `conversation` whose image / video / 3d parts carry loaded media (module docstring); `fps` and
    `max_frames` apply to video parts that do not set their own."""
    validate(conversation, purpose="any")
    groups: dict[str, list[Part]] = {}
    loaded = []
    for message in conversation:
        content = message["content"]
        if not isinstance(content, (list, tuple)):
            loaded.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            if isinstance(part, dict) and part["type"] in ("image", "video", "3d"):
                part = dict(part)  # shallow copy: the caller's conversation is left untouched
                groups.setdefault(_load_key(part["type"], part[part["type"]]), []).append(part)
            parts.append(part)
        loaded.append({"role": message["role"], "content": parts})

    for parts in groups.values():
        kind = parts[0]["type"]
        if kind == "image":
            _load_images(parts)
        elif kind == "video":
            _load_videos(parts, fps, max_frames)
        else:
            _load_volumes(parts)
    return loaded


def gather_visual_items(conversation: Conversation) -> list[tuple[str, Any]]:
    """(modal, item) for every loaded image / video part, in conversation order; empty videos are skipped."""
    items = []
    for message in conversation:
        if not isinstance(message["content"], (list, tuple)):
            continue
        for part in message["content"]:
            if not isinstance(part, dict):
                continue
            if part.get("type") in ("image", "video") and part["type"] not in part:
                raise MediaError(f"The {part['type']} part {part!r} has no {part['type']!r} entry to load.")
            if part.get("type") == "video":
                if not is_video(part["video"]):
                    raise MediaError("A video part must hold a list of frames or a 4-D array.")
                if len(part["video"]) > 0:
                    items.append(("video", part["video"]))
            elif part.get("type") == "image":
                items.append(("image", part["image"]))
    return items

"""A vLLM video loader (``video_backend: "hulumed"``) that reads videos AND volumes with OUR loaders.

vLLM decodes a Hulu-Med checkpoint's ``video_url`` parts with this loader by default (``chat.py``; a request's
``media_io_kwargs`` ``video_backend`` still picks another). This one sniffs the bytes: NIfTI (``.nii`` / ``.nii.gz``),
DICOM (a file or a zip of a series) go through ``load_volume`` (slices along axis 2 by default, window options as
our ``3d`` parts: every ``volume_url`` option — ``slices``, ``axis``, windows, orientation, normalize... — from the
media kwargs),
anything else through ``load_video`` (our fps / max_frames sampling, default 1 fps and 128 frames, with
timestamps). Frames come back as one (T, 3, H, W) uint8 array and the metadata carries ``hulumed_timestamps``
(None for volumes, which the template renders without times).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

_SUFFIX = {"DICOM": ".dcm", "zip": ".zip"}


def _kind(data: bytes) -> tuple[str, str]:
    """("volume" | "video", file suffix) from the leading bytes (``processing.media_kind``, the one sniff)."""
    from ..processing.media_kind import sniff_bytes

    found = sniff_bytes(data[:65536])
    if found.kind in ("volume", "dicom"):
        suffix = _SUFFIX.get(found.format) or (".nii.gz" if data[:2] == b"\x1f\x8b" else ".nii")
        return "volume", suffix
    return "video", ".mp4"


def load_media_bytes(data: bytes, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """(frames (T, 3, H, W) uint8, metadata) of a video or volume given as bytes."""
    from ..processing.video import load_video
    from ..processing.volume import load_volume

    kind, suffix = _kind(data)
    handle = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    try:
        handle.write(data)
        handle.close()
        if kind == "volume":  # every volume option of a volume_url part (the one codec), not a hand-picked five
            from ..processing.volume.options import VolumeOptions, item_from_part

            frames = load_volume(handle.name, VolumeOptions.from_item(item_from_part(kwargs)))
            timestamps = None
        else:
            clip = load_video(handle.name, fps=kwargs.get("fps", 1), max_frames=kwargs.get("max_frames", 128))
            frames, timestamps = clip.frames, list(clip.timestamps)
    finally:
        os.unlink(handle.name)
    array = np.stack([np.asarray(f) for f in frames])
    metadata = {"total_num_frames": len(array), "frames_indices": list(range(len(array))),
                "video_backend": "hulumed", "hulumed_kind": kind, "hulumed_timestamps": timestamps}
    return array, metadata


LOADER_NAME = "hulumed"


def register_video_loader() -> None:
    """Register ``HulumedVideoLoader`` with vLLM's video loader registry under the name ``hulumed``."""
    from vllm.multimodal.video import VIDEO_LOADER_REGISTRY, VideoLoader

    if LOADER_NAME in getattr(VIDEO_LOADER_REGISTRY, "name2class", {}):
        return

    class HulumedVideoLoader(VideoLoader):
        @classmethod
        def load_bytes(cls, data: bytes, num_frames: int = -1, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
            return load_media_bytes(data, **kwargs)

    VIDEO_LOADER_REGISTRY.register(LOADER_NAME)(HulumedVideoLoader)

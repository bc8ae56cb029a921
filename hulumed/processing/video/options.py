"""`VideoOptions`: how a video is sampled — the processor's ``video`` item options, upstream's defaults.

The fields' help texts are the command line's ``--fps`` / ``--max-frames`` (``hulumed.options``) and the demo's
video controls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class VideoOptions:
    """Frames sampled from one video (upstream: 1 fps, at most 128 frames)."""

    fps: float = field(default=1.0, metadata={"help": "video frames per second to sample"})
    max_frames: int = field(default=128, metadata={"help": "most video frames"})

    def item(self, path: str) -> dict[str, Any]:
        """The processor's ``video`` item for ``path``."""
        return {"video_path": path, "fps": self.fps, "max_frames": self.max_frames}

    def describe(self) -> str:
        return f"{self.fps:g} fps, at most {self.max_frames} frames"

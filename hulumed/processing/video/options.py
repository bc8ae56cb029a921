"""`VideoOptions`: how a video is sampled — the processor's ``video`` item options, upstream's defaults.

The fields' help texts are the command line's ``--fps`` / ``--max-frames`` (``hulumed.options``) and the demo's
video controls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hulumed.options import option


@dataclass(frozen=True)
class VideoOptions:
    """Frames sampled from one video (upstream: 1 fps, at most 128 frames)."""

    fps: float = option(1.0, "video frames per second to sample")
    max_frames: int = option(128, "most video frames")

    def item(self, path: str) -> dict[str, Any]:
        """The processor's ``video`` item for ``path``."""
        return {"video_path": path, "fps": self.fps, "max_frames": self.max_frames}

    def describe(self) -> str:
        return f"{self.fps:g} fps, at most {self.max_frames} frames"

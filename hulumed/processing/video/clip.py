"""`Clip`: what every video loader returns, and the one conversion of a decoded frame into its pixel layout.

Every source (frame folders and lists, GIFs, container files) decodes to `(H, W, 3)` uint8 RGB first, and
`channels_first` turns that into the `(3, H, W)` layout a `Clip` holds (upstream's loaders return frames
channels first); `stacked` checks what upstream's `np.stack` requires: at least one frame, one size for all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hulumed.errors import MediaError


@dataclass
class Clip:
    """Decoded frames and their timestamps."""

    frames: list[np.ndarray]  # each (3, H, W) uint8 RGB
    timestamps: list[float]  # seconds, one per frame


def channels_first(frame: np.ndarray) -> np.ndarray:
    """One `(H, W, 3)` uint8 RGB frame as `(3, H, W)` (a view)."""
    return frame.transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def stacked(frames: list[np.ndarray], source: object) -> list[np.ndarray]:
    """`frames`, after checking they can be stacked into one array as upstream does."""
    if not frames:
        raise MediaError(f"No frames could be taken from {source}. Check the path, start/end times and fps.")
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        raise MediaError(f"The frames of {source} differ in size ({sorted(shapes)}); all frames must share one size.")
    return frames

"""Videos that are not containers: a folder of frame images, a list of frames, a GIF (index sampling, Pillow I/O).

Upstream assumes 3 fps for folders and frame lists and 25 fps for GIFs (read with Pillow here instead of imageio).
Frame images and GIF canvases larger than `limits.MAX_FRAME_PIXELS` are refused from their headers, before
decoding.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from hulumed.errors import MediaError
from hulumed.processing import limits, safe_files
from hulumed.processing.image import list_folder, load_image, to_rgb_array
from hulumed.processing.video.clip import Clip, channels_first, stacked
from hulumed.processing.video.sampling import sample_frame_indices

FOLDER_FPS = 3  # upstream's assumed frame rate of a folder of frames
GIF_FPS = 25  # upstream's assumed frame rate of a GIF

PathLike = Union[str, os.PathLike]
Frame = Union[PathLike, Image.Image, np.ndarray]


def check_frame_size(width: int, height: int, source: object) -> None:
    """Refuse frames over `limits.MAX_FRAME_PIXELS`."""
    if width * height > limits.MAX_FRAME_PIXELS:
        raise MediaError(
            f"{source} declares {width} x {height} frames, more than {limits.MAX_FRAME_PIXELS:,} pixels per frame "
            "(decompression bomb guard). Downscale the frames first."
        )


def _check_frame_file(path: PathLike) -> None:
    """Refuse a frame image whose header declares more than the frame limit, before decoding it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: the size is checked here
            with safe_files.open_regular(path) as stream, Image.open(stream) as image:
                width, height = image.size
    except Exception:  # not a PIL image (e.g. DICOM, which checks its own frame size) or unreadable: load_image says
        return
    check_frame_size(width, height, path)


def _frame(frame: Frame) -> np.ndarray:
    """One frame (path, PIL or array) as a `(3, H, W)` uint8 RGB array."""
    if isinstance(frame, (str, os.PathLike)):
        _check_frame_file(frame)
        frame = load_image(frame)
    return channels_first(to_rgb_array(frame))


def _gif_length(path: Path) -> int:
    """The GIF's frame count, after checking its canvas against the frame limit (header only)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: the canvas is checked here
            with Image.open(path) as gif:
                size = gif.size
                if size[0] * size[1] <= limits.MAX_FRAME_PIXELS:
                    return int(getattr(gif, "n_frames", 1))
    except Exception as err:
        raise MediaError(f"Cannot read GIF {path}: {err}. The file is corrupt or not a GIF.") from err
    check_frame_size(size[0], size[1], path)
    return 0


def _read_gif(path: Path, indices: list[int]) -> list[np.ndarray]:
    wanted = set(indices)
    frames = []
    try:
        with Image.open(path) as gif:
            for index in range(getattr(gif, "n_frames", 1)):
                if index in wanted:
                    gif.seek(index)
                    frames.append(channels_first(np.array(gif.convert("RGB"))))
    except Exception as err:
        raise MediaError(f"Cannot read GIF {path}: {err}. The file is corrupt or not a GIF.") from err
    return frames


def frame_sequence(
    frames: Sequence[Frame], source: object, start_time: Optional[float], end_time: Optional[float],
    fps: Optional[float], max_frames: int,
) -> Clip:
    """Index sampling over frames in order (a list, or a folder's sorted files) at an assumed 3 fps."""
    indices = sample_frame_indices(len(frames), FOLDER_FPS, start_time, end_time, fps, max_frames)
    chosen = stacked([_frame(frames[i]) for i in indices], source)
    return Clip(chosen, [i / FOLDER_FPS for i in indices])


def frame_folder(
    path: Path, start_time: Optional[float], end_time: Optional[float], fps: Optional[float], max_frames: int
) -> Clip:
    return frame_sequence(list_folder(path), path, start_time, end_time, fps, max_frames)


def gif(path: Path, start_time: Optional[float], end_time: Optional[float], fps: Optional[float],
        max_frames: int) -> Clip:
    indices = sample_frame_indices(_gif_length(path), GIF_FPS, start_time, end_time, fps, max_frames)
    return Clip(stacked(_read_gif(path, indices), path), [i / GIF_FPS for i in indices])

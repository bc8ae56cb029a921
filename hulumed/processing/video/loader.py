"""`load_video` / `load_video_from_ids`: which path a video source takes, with upstream's rules.

In:  a folder of frame images, a list of frames (paths, PIL images or arrays), a `.gif`, or a container file
     (`.mp4`, `.avi`, ...), plus `fps`, `max_frames`, `start_time`, `end_time`.
Out: a `Clip`: frames as `(3, H, W)` uint8 RGB arrays and one timestamp in seconds per frame (rendered as
     "Time {t|round(1)}s:" by the chat template).

Upstream (HF-Version `HulumedProcessor.load_video`): folders, frame lists, GIFs and windows with
`end_time - start_time < 1` use index sampling (`frames.py`, `container.frames_by_index`); other files go
through the fps-filter emulation (`container.filtered`). Arguments are checked first; every failure is a
`MediaError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from hulumed.errors import MediaError
from hulumed.processing.video import container, frames
from hulumed.processing.video.clip import Clip

PathLike = Union[str, os.PathLike]
VideoSource = Union[PathLike, Sequence[frames.Frame]]


def _check_arguments(
    start_time: Optional[float], end_time: Optional[float], fps: Optional[float], max_frames: Optional[int]
) -> None:
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer))
                                   or max_frames < 1):
        raise MediaError(f"max_frames must be a positive integer; got {max_frames!r}.")
    if fps is not None and (not isinstance(fps, (int, float, np.integer, np.floating)) or not fps > 0
                            or not math.isfinite(fps)):
        raise MediaError(f"fps must be positive or None; got {fps!r}.")
    for name, value in (("start_time", start_time), ("end_time", end_time)):
        if value is not None and (not isinstance(value, (int, float, np.integer, np.floating))
                                  or not math.isfinite(value)):
            raise MediaError(f"{name} must be a number of seconds or None; got {value!r}.")


def _missing(path: Path) -> MediaError:
    return MediaError(f"Video {path} does not exist. Pass a video file, a folder of frames, or a list of frames.")


def load_video_from_ids(
    source: VideoSource,
    start_time: Optional[float] = None,
    end_time: Optional[float] = None,
    fps: Optional[float] = None,
    max_frames: int = 128,
    seek: bool = True,
) -> Clip:
    """Index-sampled loading of a folder, a frame list, a GIF or a (short) container clip."""
    if isinstance(source, (list, tuple)):
        if not source:
            raise MediaError("Got an empty list of video frames. Pass at least one frame.")
        return frames.frame_sequence(source, "the frame list", start_time, end_time, fps, max_frames)
    path = Path(source)
    if path.is_dir():
        return frames.frame_folder(path, start_time, end_time, fps, max_frames)
    if not path.is_file():
        raise _missing(path)
    if path.suffix.lower() == ".gif":
        return frames.gif(path, start_time, end_time, fps, max_frames)
    return container.frames_by_index(path, start_time, end_time, fps, max_frames, seek=seek)


def load_video(
    source: VideoSource,
    start_time: Optional[float] = None,
    end_time: Optional[float] = None,
    fps: Optional[float] = 1,
    max_frames: Optional[int] = 128,
    seek: bool = True,
) -> Clip:
    """Load a video the way upstream's HF-Version `HulumedProcessor.load_video` does (module docstring).

    `seek=True` (default) decodes only the frames that are returned; `seek=False` decodes the whole clip first,
    as upstream does (same frames and timestamps; for comparison).
    """
    _check_arguments(start_time, end_time, fps, max_frames)
    try:
        return _dispatch(source, start_time, end_time, fps, max_frames, seek)
    except MediaError:
        raise
    except Exception as err:  # a decoder or container failure not caught where it happened: still typed
        raise MediaError(
            f"Cannot load video {source if isinstance(source, (str, os.PathLike)) else 'frames'}: "
            f"{type(err).__name__}: {err}. The file may be corrupt or truncated."
        ) from err


def _dispatch(
    source: VideoSource, start_time: Optional[float], end_time: Optional[float], fps: Optional[float],
    max_frames: Optional[int], seek: bool,
) -> Clip:
    index_max = max_frames if max_frames is not None else 128
    short_window = start_time is not None and end_time is not None and end_time - start_time < 1
    if short_window or isinstance(source, (list, tuple)):
        return load_video_from_ids(source, start_time, end_time, fps=fps, max_frames=index_max, seek=seek)
    if not isinstance(source, (str, os.PathLike)):
        raise MediaError(
            f"Unsupported video source of type {type(source).__name__}. Pass a video file, a folder of frames, or a "
            "list of frames."
        )
    path = Path(source)
    if path.is_dir() or path.suffix.lower() == ".gif":
        return load_video_from_ids(path, start_time, end_time, fps=fps, max_frames=index_max, seek=seek)
    if not path.is_file():
        raise _missing(path)
    return container.filtered(path, start_time, end_time, fps, max_frames, seek=seek)

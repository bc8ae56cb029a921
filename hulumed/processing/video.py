"""Video loading with upstream Hulu-Med's frame-sampling rules.

In:  a folder of frame images, a list of frames (paths, PIL images or arrays), a `.gif`, or a container file
     (`.mp4`, `.avi`, ...), plus `fps`, `max_frames`, `start_time`, `end_time`.
Out: a `Clip`: frames as `(3, H, W)` uint8 RGB arrays (channels first, as upstream returns them) and one
     timestamp in seconds per frame (rendered as "Time {t|round(1)}s:" by the chat template).

Two upstream paths (UPSTREAM.md §5.7, HF-Version `load_video` / `load_video_from_ids`):

1. Index sampling (`load_video_from_ids`): folders and frame lists (an assumed 3 fps), GIFs (an assumed 25 fps,
   read with Pillow here instead of imageio), and container clips shorter than 1 s when both start and end
   are given (the container's average fps). Frame range from start/end:
   `f_start = max(int(s * vid_fps) - 1, 0)`, `f_end = min(int(e * vid_fps) - 1, N - 1)`; if `fps` is given and
   `duration / vid_fps < max_frames`: `segment = min(vid_fps // fps, duration)`, indices
   `arange(segment // 2, duration, segment)`; otherwise all frames if `duration <= max_frames`, else
   `linspace(0, duration - 1, max_frames, dtype=int)`. Timestamps = index / vid_fps.
2. Container files (upstream: ffmpeg `fps=fps:round=down` filter over the whole clip, rgb24). Here PyAV
   (imported lazily) decodes the clip and the same fps filter is emulated: output tick n (time n / fps)
   shows the latest frame whose time, rounded down to the tick grid, is <= n, from the first frame's tick to
   the end-of-stream tick (last frame time + its duration, rounded down). Timestamps are
   `arange(start, start + duration + 1/fps, 1/fps)[:T]`; more than `max_frames` frames are subsampled with
   `linspace(0, T - 1, max_frames, dtype=int)`. PyAV's YUV->RGB conversion may differ from ffmpeg's by a
   grey level on some pixels; robust long-video handling is out of scope here.

Every failure (missing path, empty folder, unreadable frame, PyAV missing, undecodable file) is a `MediaError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from hulumed.errors import MediaError
from hulumed.processing.image import list_folder, load_image, to_rgb_array

FOLDER_FPS = 3  # upstream's assumed frame rate of a folder of frames
GIF_FPS = 25  # upstream's assumed frame rate of a GIF

PathLike = Union[str, os.PathLike]
Frame = Union[PathLike, Image.Image, np.ndarray]
VideoSource = Union[PathLike, Sequence[Frame]]


@dataclass
class Clip:
    """Decoded frames and their timestamps."""

    frames: list[np.ndarray]  # each (3, H, W) uint8 RGB
    timestamps: list[float]  # seconds, one per frame


def sample_frame_indices(
    num_frames: int,
    vid_fps: float,
    start_time: Optional[float] = None,
    end_time: Optional[float] = None,
    fps: Optional[float] = None,
    max_frames: int = 128,
) -> list[int]:
    """Upstream `load_video_from_ids` frame choice over a source of `num_frames` frames at `vid_fps`."""
    s, e = start_time, end_time
    if s is not None and e is not None:
        s = s if s >= 0.0 else 0.0
        e = e if e >= 0.0 else 0.0
        if s > e:
            s, e = e, s
        elif s == e:
            e = s + 1
    f_start = 0 if s is None else max(int(s * vid_fps) - 1, 0)
    f_end = num_frames - 1 if e is None else min(int(e * vid_fps) - 1, num_frames - 1)
    frame_indices = list(range(f_start, f_end + 1))
    duration = len(frame_indices)
    if duration == 0:
        return []
    if fps is not None and duration / vid_fps < max_frames:
        # upstream divides by zero when fps > vid_fps; one frame per source frame is the sensible reading
        segment_len = max(min(vid_fps // fps, duration), 1)
        picks = np.arange(segment_len // 2, duration, segment_len, dtype=int)
    elif duration <= max_frames:
        picks = np.arange(duration).astype(int)
    else:
        picks = np.linspace(0, duration - 1, max_frames, dtype=int)
    return [frame_indices[i] for i in picks]


def _channels_first(frame: Frame) -> np.ndarray:
    """One frame (path, PIL or array) as a `(3, H, W)` uint8 RGB array."""
    if isinstance(frame, (str, os.PathLike)):
        frame = load_image(frame)
    return to_rgb_array(frame).transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def _stack_check(frames: list[np.ndarray], source: object) -> list[np.ndarray]:
    """Upstream stacks the frames into one array, so they must share one size."""
    if not frames:
        raise MediaError(f"No frames could be taken from {source}. Check the path, start/end times and fps.")
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        raise MediaError(f"The frames of {source} differ in size ({sorted(shapes)}); all frames must share one size.")
    return frames


def _read_gif(path: Path, indices: list[int]) -> list[np.ndarray]:
    wanted = set(indices)
    frames = []
    try:
        with Image.open(path) as gif:
            for index in range(getattr(gif, "n_frames", 1)):
                if index in wanted:
                    gif.seek(index)
                    frames.append(np.array(gif.convert("RGB")).transpose(2, 0, 1))  # (3, H, W)
    except Exception as err:
        raise MediaError(f"Cannot read GIF {path}: {err}. The file is corrupt or not a GIF.") from err
    return frames


def _gif_length(path: Path) -> int:
    try:
        with Image.open(path) as gif:
            return int(getattr(gif, "n_frames", 1))
    except Exception as err:
        raise MediaError(f"Cannot read GIF {path}: {err}. The file is corrupt or not a GIF.") from err


def _import_av():
    try:
        import av
    except ImportError as err:
        raise MediaError(
            "Reading video files (.mp4, .avi, ...) needs PyAV: pip install av. "
            "Alternatively pass a folder of extracted frames."
        ) from err
    return av


def _open_container(path: Path):
    av = _import_av()
    try:
        container = av.open(str(path))
    except Exception as err:
        raise MediaError(f"Cannot open video {path}: {err}. The file is corrupt or not a supported video.") from err
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path} has no video stream.")
    return container


def _container_frames_by_index(path: Path, start_time, end_time, fps, max_frames) -> Clip:
    """Index sampling on a container file (upstream: decord), used for clips shorter than one second."""
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        vid_fps = float(stream.average_rate or stream.guessed_rate or 0) or 1.0
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]  # (H, W, 3) each
    except MediaError:
        raise
    except Exception as err:
        raise MediaError(f"Cannot decode video {path}: {err}.") from err
    finally:
        container.close()
    indices = sample_frame_indices(len(decoded), vid_fps, start_time, end_time, fps, max_frames)
    frames = _stack_check([decoded[i].transpose(2, 0, 1) for i in indices], path)
    return Clip(frames, [i / vid_fps for i in indices])


def load_video_from_ids(
    source: VideoSource,
    start_time: Optional[float] = None,
    end_time: Optional[float] = None,
    fps: Optional[float] = None,
    max_frames: int = 128,
) -> Clip:
    """Index-sampled loading of a folder, a frame list, a GIF or a (short) container clip (module docstring, 1)."""
    if isinstance(source, (list, tuple)):
        if not source:
            raise MediaError("Got an empty list of video frames. Pass at least one frame.")
        indices = sample_frame_indices(len(source), FOLDER_FPS, start_time, end_time, fps, max_frames)
        frames = _stack_check([_channels_first(source[i]) for i in indices], "the frame list")
        return Clip(frames, [i / FOLDER_FPS for i in indices])
    path = Path(source)
    if path.is_dir():
        files = list_folder(path)
        indices = sample_frame_indices(len(files), FOLDER_FPS, start_time, end_time, fps, max_frames)
        frames = _stack_check([_channels_first(files[i]) for i in indices], path)
        return Clip(frames, [i / FOLDER_FPS for i in indices])
    if not path.is_file():
        raise MediaError(f"Video {path} does not exist. Pass a video file, a folder of frames, or a list of frames.")
    if path.suffix.lower() == ".gif":
        indices = sample_frame_indices(_gif_length(path), GIF_FPS, start_time, end_time, fps, max_frames)
        frames = _stack_check(_read_gif(path, indices), path)
        return Clip(frames, [i / GIF_FPS for i in indices])
    return _container_frames_by_index(path, start_time, end_time, fps, max_frames)


def _load_container(
    path: Path, start_time: Optional[float], end_time: Optional[float], fps: Optional[float], max_frames: Optional[int]
) -> Clip:
    """Emulation of upstream's ffmpeg path (module docstring, 2)."""
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        time_base = stream.time_base
        file_start = Fraction(container.start_time or 0, 1_000_000)
        if container.duration is not None:
            duration = container.duration / 1_000_000
        elif stream.duration is not None:
            duration = float(stream.duration * time_base)
        else:
            raise MediaError(f"Cannot find the duration of video {path}.")
        stream_start = float(stream.start_time * time_base) if stream.start_time is not None else float(file_start)

        do_trim = start_time is not None or end_time is not None
        if start_time is not None:
            new_start = max(stream_start, start_time)
            duration -= new_start - start_time
            start_time = new_start
        else:
            start_time = stream_start
        if end_time is not None:
            duration = min(duration, end_time - start_time)
        # ffmpeg shifts timestamps so that the file start (or the -ss point) is 0 and stops reading after -t
        offset = file_start + (Fraction(start_time) - file_start if do_trim else 0)
        limit = Fraction(duration) if do_trim else None
        default_step = 1 / Fraction(stream.average_rate) if stream.average_rate else Fraction(1, 25)

        frames: list[np.ndarray] = []
        current: Optional[np.ndarray] = None
        current_raw = None
        next_tick: Optional[int] = None
        end = None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            time = frame.pts * time_base - offset  # Fraction, seconds from the (trimmed) start
            if do_trim and time < 0:
                continue
            if limit is not None and time >= limit:
                break
            step = frame.duration * time_base if frame.duration else default_step
            end = time + step
            if fps is None:
                frames.append(frame.to_ndarray(format="rgb24").transpose(2, 0, 1))  # (3, H, W)
                continue
            tick = math.floor(time * Fraction(fps))
            if next_tick is None:
                next_tick = tick
            while current_raw is not None and next_tick < tick:
                if current is None:
                    current = current_raw.to_ndarray(format="rgb24").transpose(2, 0, 1)  # (3, H, W)
                frames.append(current)
                next_tick += 1
            current_raw, current = frame, None
        if fps is not None and current_raw is not None:
            end_tick = math.floor(end * Fraction(fps))
            while next_tick < end_tick or not frames:  # a clip shorter than one tick still gives one frame
                if current is None:
                    current = current_raw.to_ndarray(format="rgb24").transpose(2, 0, 1)  # (3, H, W)
                frames.append(current)
                next_tick += 1
    except MediaError:
        raise
    except Exception as err:
        raise MediaError(
            f"Cannot decode video {path}: {err}. The file is corrupt or uses an unsupported codec."
        ) from err
    finally:
        container.close()

    frames = _stack_check(frames, path)
    if fps is not None:
        timestamps = np.arange(start_time, start_time + duration + 1 / fps, 1 / fps)[: len(frames)]
    else:
        timestamps = np.linspace(start_time, start_time + duration, len(frames))
    if max_frames is not None and len(frames) > max_frames:
        keep = np.linspace(0, len(frames) - 1, max_frames, dtype=int)
        frames = [frames[i] for i in keep]
        timestamps = timestamps[keep]
    return Clip(frames, [float(t) for t in timestamps])


def load_video(
    source: VideoSource,
    start_time: Optional[float] = None,
    end_time: Optional[float] = None,
    fps: Optional[float] = 1,
    max_frames: Optional[int] = 128,
) -> Clip:
    """Load a video the way upstream's HF-Version `HulumedProcessor.load_video` does (module docstring).

    Folders, frame lists, GIFs and clips with `end_time - start_time < 1` use index sampling; other files go
    through the fps-filter emulation on PyAV.
    """
    if max_frames is not None and max_frames < 1:
        raise MediaError(f"max_frames must be a positive integer; got {max_frames!r}.")
    if fps is not None and fps <= 0:
        raise MediaError(f"fps must be positive or None; got {fps!r}.")
    index_max = max_frames if max_frames is not None else 128
    if start_time is not None and end_time is not None and end_time - start_time < 1:
        return load_video_from_ids(source, start_time, end_time, fps=fps, max_frames=index_max)
    if isinstance(source, (list, tuple)):
        return load_video_from_ids(source, start_time, end_time, fps=fps, max_frames=index_max)
    path = Path(source)
    if path.is_dir() or path.suffix.lower() == ".gif":
        return load_video_from_ids(path, start_time, end_time, fps=fps, max_frames=index_max)
    if not path.is_file():
        raise MediaError(f"Video {path} does not exist. Pass a video file, a folder of frames, or a list of frames.")
    return _load_container(path, start_time, end_time, fps, max_frames)

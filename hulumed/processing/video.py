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
   grey level on some pixels.

Unlike upstream, which decodes the whole clip at full resolution before subsampling, the default `seek=True`
path first demuxes (reads packet timestamps, no decoding), runs the fps filter and the `max_frames` choice on
those timestamps (`fps_filter_plan`), then seeks to the keyframe before each chosen frame and decodes only up to
it, converting only chosen frames to RGB: memory is bounded by the frames returned, and decoding stops early.
`seek=False` keeps the decode-everything path (`benchmarks/media.py` compares both; tests check they agree).
Short-window container clips (index sampling) seek the same way.

Every failure (missing path, empty folder or video, unreadable frame, PyAV missing, undecodable file, frames
larger than `MAX_FRAME_PIXELS`) is a `MediaError`.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image

from hulumed.errors import MediaError
from hulumed.processing import limits, safe_files
from hulumed.processing.image import list_folder, load_image, to_rgb_array

logger = logging.getLogger(__name__)

FOLDER_FPS = 3  # upstream's assumed frame rate of a folder of frames
GIF_FPS = 25  # upstream's assumed frame rate of a GIF
MAX_FRAME_PIXELS = limits.MAX_FRAME_PIXELS  # larger frames, GIF canvases and frame images are refused before decoding
MAX_OUTPUT_FRAMES = 2_000_000  # fps-filter output frames (before max_frames); more means corrupt timestamps

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


def _check_frame_size(width: int, height: int, source: object) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise MediaError(
            f"{source} declares {width} x {height} frames, more than {MAX_FRAME_PIXELS:,} pixels per frame "
            "(decompression bomb guard). Downscale the frames first."
        )


def _check_frame_file(path: PathLike) -> None:
    """Refuse a frame image whose header declares more than `MAX_FRAME_PIXELS`, before decoding it."""
    try:
        with safe_files.open_regular(path) as stream, Image.open(stream) as image:
            width, height = image.size
    except Exception:  # not a PIL image (e.g. DICOM, which checks its own frame size) or unreadable: load_image says
        return
    _check_frame_size(width, height, path)


def _channels_first(frame: Frame) -> np.ndarray:
    """One frame (path, PIL or array) as a `(3, H, W)` uint8 RGB array."""
    if isinstance(frame, (str, os.PathLike)):
        _check_frame_file(frame)
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
    """The GIF's frame count, after checking its canvas against `MAX_FRAME_PIXELS` (header only)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: the canvas is checked here
            with Image.open(path) as gif:
                size = gif.size
                if size[0] * size[1] <= MAX_FRAME_PIXELS:
                    return int(getattr(gif, "n_frames", 1))
    except Exception as err:
        raise MediaError(f"Cannot read GIF {path}: {err}. The file is corrupt or not a GIF.") from err
    _check_frame_size(size[0], size[1], path)
    return 0


def _import_av() -> Any:
    try:
        import av
    except ImportError as err:
        raise MediaError(
            "Reading video files (.mp4, .avi, ...) needs PyAV: pip install av. "
            "Alternatively pass a folder of extracted frames."
        ) from err
    return av


def _open_container(path: Path) -> Any:
    """An opened PyAV container with a video stream of sane size (threaded decoding enabled)."""
    av = _import_av()
    if path.stat().st_size == 0:
        raise MediaError(f"Video file {path} is empty (0 bytes). Copy or export it again.")
    try:
        container = av.open(str(path))
    except Exception as err:
        raise MediaError(
            f"Cannot open video {path}: {type(err).__name__}: {err}. The file is corrupt, truncated or not a "
            "supported video."
        ) from err
    try:
        if not container.streams.video:
            raise MediaError(
                f"{path} has no video stream (audio only, truncated, or not a video). Pass a video file."
            )
        stream = container.streams.video[0]
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        if width * height > MAX_FRAME_PIXELS:
            raise MediaError(
                f"{path} declares {width} x {height} frames, more than {MAX_FRAME_PIXELS:,} pixels per frame. The file "
                "is corrupt or the video too large; downscale it first (e.g. ffmpeg -vf scale=-2:1080)."
            )
        stream.thread_type = "AUTO"  # decoder threads; decoded frames are identical
    except MediaError:
        container.close()
        raise
    except Exception as err:
        container.close()
        raise MediaError(f"Cannot read the video stream of {path}: {type(err).__name__}: {err}.") from err
    return container


@contextmanager
def _decoding(path: Path) -> Iterator[Any]:
    """An open container for the block; a decoder failure inside comes out as MediaError; always closed."""
    container = _open_container(path)
    try:
        yield container
    except MediaError:
        raise
    except Exception as err:
        raise MediaError(
            f"Cannot decode video {path}: {type(err).__name__}: {err}. The file is corrupt or uses an unsupported "
            "codec."
        ) from err
    finally:
        container.close()


def _rgb(frame: Any) -> np.ndarray:
    return frame.to_ndarray(format="rgb24").transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


@dataclass
class _FrameTable:
    """Presentation timestamps of every frame of a stream, from demuxing only (no decoding)."""

    pts: list[int]  # sorted, in stream time-base units
    durations: list[int]  # packet durations in the same units, 0 when unknown
    keyframes: list[int]  # sorted pts of keyframes (seek points)


def _frame_table(path: Path) -> _FrameTable:
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        entries, keyframes = [], []
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            entries.append((int(packet.pts), int(packet.duration or 0)))
            if packet.is_keyframe:
                keyframes.append(int(packet.pts))
    except Exception as err:
        raise MediaError(f"Cannot read video {path}: {type(err).__name__}: {err}. The file is corrupt.") from err
    finally:
        container.close()
    entries.sort()
    return _FrameTable([p for p, _ in entries], [d for _, d in entries], sorted(keyframes))


def _decode_selected(path: Path, wanted: list[int], keyframes: list[int]) -> dict[int, np.ndarray]:
    """RGB frames for the presentation timestamps `wanted`, seeking to the keyframe before each one unless the
    decoder is already past that keyframe (then it decodes forward). Only wanted frames are converted."""
    targets = sorted(set(wanted))
    target_set = set(targets)
    found: dict[int, np.ndarray] = {}
    with _decoding(path) as container:
        stream = container.streams.video[0]
        frames: Optional[Iterator[Any]] = None
        last: Optional[int] = None
        for target in targets:
            if target in found:
                continue
            k = bisect.bisect_right(keyframes, target) - 1
            key = keyframes[k] if k >= 0 else None
            if frames is None or last is None or last >= target or (key is not None and key > last):
                container.seek(key if key is not None else target, stream=stream, backward=True, any_frame=False)
                frames, last = container.decode(stream), None
            for frame in frames:
                if frame.pts is None:
                    continue
                last = int(frame.pts)
                if last in target_set and last not in found:
                    found[last] = _rgb(frame)
                if last >= target:
                    break
    return found


def _container_frames_by_index(
    path: Path, start_time: Optional[float], end_time: Optional[float], fps: Optional[float], max_frames: int,
    seek: bool = True,
) -> Clip:
    """Index sampling on a container file (upstream: decord), used for windows shorter than one second.

    Frame i is the i-th frame in presentation order; `vid_fps` is the stream's average rate. With `seek`, only
    the chosen frames are decoded (and converted); without, the whole clip is decoded first as upstream does.
    """
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        vid_fps = float(stream.average_rate or stream.guessed_rate or 0) or 1.0
    finally:
        container.close()
    if seek:
        table = _frame_table(path)
        if not table.pts:
            raise MediaError(f"{path} has no video frames (empty video). Pass a video with at least one frame.")
        indices = sample_frame_indices(len(table.pts), vid_fps, start_time, end_time, fps, max_frames)
        wanted = [table.pts[i] for i in indices]
        decoded = _decode_selected(path, wanted, table.keyframes)
        if all(p in decoded for p in wanted):
            frames = _stack_check([decoded[p] for p in wanted], path)
            return Clip(frames, [i / vid_fps for i in indices])
        logger.info("Seeking in %s missed frames; decoding the whole clip instead.", path)
    with _decoding(path) as container:
        stream = container.streams.video[0]
        decoded_all = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]  # (H, W, 3) each
    indices = sample_frame_indices(len(decoded_all), vid_fps, start_time, end_time, fps, max_frames)
    frames = _stack_check([decoded_all[i].transpose(2, 0, 1) for i in indices], path)
    return Clip(frames, [i / vid_fps for i in indices])


def load_video_from_ids(
    source: VideoSource,
    start_time: Optional[float] = None,
    end_time: Optional[float] = None,
    fps: Optional[float] = None,
    max_frames: int = 128,
    seek: bool = True,
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
    return _container_frames_by_index(path, start_time, end_time, fps, max_frames, seek=seek)


@dataclass
class _Trim:
    """upstream's ffprobe/ffmpeg trim arithmetic for one container and one (start, end) request."""

    start_time: float  # seconds, the first timestamp
    duration: float  # seconds
    offset: Fraction  # subtracted from frame times (ffmpeg shifts the file start or the -ss point to 0)
    limit: Optional[Fraction]  # frames at or after this (shifted) time are not read (-t), None without trim
    do_trim: bool
    default_step: Fraction  # a frame's duration when the stream does not say


def _trim(container: Any, path: Path, start_time: Optional[float], end_time: Optional[float]) -> _Trim:
    stream = container.streams.video[0]
    time_base = stream.time_base
    file_start = Fraction(container.start_time or 0, 1_000_000)
    if container.duration is not None:
        duration = container.duration / 1_000_000
    elif stream.duration is not None:
        duration = float(stream.duration * time_base)
    else:
        raise MediaError(f"Cannot find the duration of video {path}. Remux it (ffmpeg -i in -c copy out.mp4).")
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
    offset = file_start + (Fraction(start_time) - file_start if do_trim else 0)
    limit = Fraction(duration) if do_trim else None
    default_step = 1 / Fraction(stream.average_rate) if stream.average_rate else Fraction(1, 25)
    return _Trim(start_time, duration, offset, limit, do_trim, default_step)


def _check_ticks(count: int) -> None:
    if count > MAX_OUTPUT_FRAMES:
        raise MediaError(
            f"The fps filter would output more than {MAX_OUTPUT_FRAMES:,} frames: the video's timestamps are corrupt "
            "or it is extremely long. Remux or cut it (ffmpeg -i in -c copy out.mp4), or lower fps."
        )


def fps_filter_plan(
    times: Sequence[Fraction], steps: Sequence[Fraction], fps: Optional[float], limit: Optional[Fraction] = None,
    drop_negative: bool = False,
) -> list[int]:
    """Output frame -> source frame index of ffmpeg's `fps=fps:round=down` filter (module docstring, 2).

    `times` are presentation times in seconds (sorted) and `steps` their durations. Output tick n (time n / fps)
    shows the latest frame whose time, rounded down to the tick grid, is <= n, from the first frame's tick to the
    end-of-stream tick (last frame time + its duration, rounded down); a clip shorter than one tick gives one
    frame. With `fps=None` every (kept) frame is output once.
    """
    out: list[int] = []
    current: Optional[int] = None
    next_tick: Optional[int] = None
    end: Optional[Fraction] = None
    for index, (time, step) in enumerate(zip(times, steps)):
        if drop_negative and time < 0:
            continue
        if limit is not None and time >= limit:
            break
        end = time + step
        if fps is None:
            out.append(index)
            continue
        tick = math.floor(time * Fraction(fps))
        if next_tick is None:
            next_tick = tick
        _check_ticks(len(out) + tick - next_tick)
        while current is not None and next_tick < tick:
            out.append(current)
            next_tick += 1
        current = index
    if fps is not None and current is not None and next_tick is not None and end is not None:
        end_tick = math.floor(end * Fraction(fps))
        _check_ticks(len(out) + end_tick - next_tick)
        while next_tick < end_tick or not out:
            out.append(current)
            next_tick += 1
    return out


def _timestamps(trim: _Trim, count: int, fps: Optional[float]) -> np.ndarray:
    """Upstream's timestamps; where its `arange` is shorter than the frames (the container's duration is shorter
    than its last frame; upstream then fails on indexing), the grid is continued at the same step."""
    if fps is None:
        return np.linspace(trim.start_time, trim.start_time + trim.duration, count)
    stop = trim.start_time + trim.duration + 1 / fps
    if (stop - trim.start_time) * fps > count + 2:  # arange's values do not depend on stop, only its length
        stop = trim.start_time + (count + 2) / fps
    stamps = np.arange(trim.start_time, stop, 1 / fps)[:count]
    if len(stamps) < count:
        stamps = np.concatenate([stamps, trim.start_time + np.arange(len(stamps), count) / fps])
    return stamps


def _load_container_decode_all(
    path: Path, start_time: Optional[float], end_time: Optional[float], fps: Optional[float], max_frames: Optional[int]
) -> Clip:
    """Emulation of upstream's ffmpeg path that decodes the whole clip and keeps every output frame before
    subsampling to `max_frames` (module docstring, 2). The reference for `_load_container_seek`."""
    with _decoding(path) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base
        trim = _trim(container, path, start_time, end_time)
        frames: list[np.ndarray] = []
        current: Optional[np.ndarray] = None
        current_raw = None
        next_tick: Optional[int] = None
        end = None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            time = frame.pts * time_base - trim.offset  # Fraction, seconds from the (trimmed) start
            if trim.do_trim and time < 0:
                continue
            if trim.limit is not None and time >= trim.limit:
                break
            step = frame.duration * time_base if frame.duration else trim.default_step
            end = time + step
            if fps is None:
                frames.append(_rgb(frame))
                continue
            tick = math.floor(time * Fraction(fps))
            if next_tick is None:
                next_tick = tick
            _check_ticks(len(frames) + tick - next_tick)
            while current_raw is not None and next_tick < tick:
                if current is None:
                    current = _rgb(current_raw)
                frames.append(current)
                next_tick += 1
            current_raw, current = frame, None
        if fps is not None and current_raw is not None:
            end_tick = math.floor(end * Fraction(fps))
            _check_ticks(len(frames) + end_tick - next_tick)
            while next_tick < end_tick or not frames:  # a clip shorter than one tick still gives one frame
                if current is None:
                    current = _rgb(current_raw)
                frames.append(current)
                next_tick += 1

    frames = _stack_check(frames, path)
    timestamps = _timestamps(trim, len(frames), fps)
    if max_frames is not None and len(frames) > max_frames:
        keep = np.linspace(0, len(frames) - 1, max_frames, dtype=int)
        frames = [frames[i] for i in keep]
        timestamps = timestamps[keep]
    return Clip(frames, [float(t) for t in timestamps])


def _load_container_seek(
    path: Path, start_time: Optional[float], end_time: Optional[float], fps: Optional[float], max_frames: Optional[int]
) -> Clip:
    """The same frames and timestamps as `_load_container_decode_all`, decoding only what is kept.

    1. demux (no decoding) to get every frame's presentation time and duration; 2. run the fps-filter plan and the
    `max_frames` subsampling on those times; 3. seek to and decode only the source frames still needed. Memory is
    bounded by the frames returned. Falls back to decoding everything if seeking misses a frame.
    """
    table = _frame_table(path)
    if not table.pts:
        raise MediaError(f"{path} has no video frames (empty video). Pass a video with at least one frame.")
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        time_base = Fraction(stream.time_base)
        trim = _trim(container, path, start_time, end_time)
    finally:
        container.close()
    times = [p * time_base - trim.offset for p in table.pts]
    steps = [d * time_base if d else trim.default_step for d in table.durations]
    plan = fps_filter_plan(times, steps, fps, trim.limit, drop_negative=trim.do_trim)
    if not plan:
        raise MediaError(
            f"No frames could be taken from {path} between start_time={start_time} and end_time={end_time}. Check "
            "the times against the video's duration."
        )
    timestamps = _timestamps(trim, len(plan), fps)
    if max_frames is not None and len(plan) > max_frames:
        keep = np.linspace(0, len(plan) - 1, max_frames, dtype=int)
        plan = [plan[i] for i in keep]
        timestamps = timestamps[keep]
    wanted = [table.pts[i] for i in plan]
    decoded = _decode_selected(path, wanted, table.keyframes)
    if not all(p in decoded for p in wanted):
        logger.info("Seeking in %s missed frames; decoding the whole clip instead.", path)
        return _load_container_decode_all(path, start_time, end_time, fps, max_frames)
    frames = _stack_check([decoded[p] for p in wanted], path)
    return Clip(frames, [float(t) for t in timestamps])


def load_video(
    source: VideoSource,
    start_time: Optional[float] = None,
    end_time: Optional[float] = None,
    fps: Optional[float] = 1,
    max_frames: Optional[int] = 128,
    seek: bool = True,
) -> Clip:
    """Load a video the way upstream's HF-Version `HulumedProcessor.load_video` does (module docstring).

    Folders, frame lists, GIFs and clips with `end_time - start_time < 1` use index sampling; other files go
    through the fps-filter emulation on PyAV. `seek=True` (default) decodes only the frames that are returned;
    `seek=False` decodes the whole clip first, as upstream does (same frames and timestamps; for comparison).
    """
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
    try:
        return _load_video(source, start_time, end_time, fps, max_frames, seek)
    except MediaError:
        raise
    except Exception as err:  # a decoder or container failure not caught where it happened: still typed
        raise MediaError(
            f"Cannot load video {source if isinstance(source, (str, os.PathLike)) else 'frames'}: "
            f"{type(err).__name__}: {err}. The file may be corrupt or truncated."
        ) from err


def _load_video(
    source: VideoSource, start_time: Optional[float], end_time: Optional[float], fps: Optional[float],
    max_frames: Optional[int], seek: bool,
) -> Clip:
    index_max = max_frames if max_frames is not None else 128
    if start_time is not None and end_time is not None and end_time - start_time < 1:
        return load_video_from_ids(source, start_time, end_time, fps=fps, max_frames=index_max, seek=seek)
    if isinstance(source, (list, tuple)):
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
        raise MediaError(f"Video {path} does not exist. Pass a video file, a folder of frames, or a list of frames.")
    if seek:
        return _load_container_seek(path, start_time, end_time, fps, max_frames)
    return _load_container_decode_all(path, start_time, end_time, fps, max_frames)

"""Container files (`.mp4`, `.avi`, `.webm`, ...) through PyAV (imported lazily): demuxing, seeking, decoding.

Upstream decodes the whole clip with ffmpeg's `fps=fps:round=down` filter (rgb24) and subsamples to
`max_frames` afterwards; windows shorter than one second go through index sampling (decord) instead. Both
are reproduced here with the frame choice of `sampling.py`:

* `seek=True` (default): demux only (packet timestamps, no decoding), run the filter and the `max_frames` choice
  on those timestamps, then seek to the keyframe before each chosen frame and decode up to it, converting only
  the chosen frames to RGB. Memory is bounded by the frames returned and decoding stops early. If seeking
  misses a frame, the clip is decoded the other way.
* `seek=False`: decode every frame in order, feeding the same filter as frames arrive (at most two decoded
  frames held), as upstream does. `benchmarks/media.py` compares the two; tests check they agree.

PyAV's YUV->RGB conversion may differ from ffmpeg's by a grey level on some pixels. Every failure (PyAV
missing, empty or undecodable file, no video stream, frames over `limits.MAX_FRAME_PIXELS`) is a `MediaError`.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

import numpy as np

from hulumed.errors import MediaError
from hulumed.processing import limits
from hulumed.processing.video.clip import Clip, channels_first, stacked
from hulumed.processing.video.sampling import Trim, fps_filter_plan, fps_ticks, keep_at_most, sample_frame_indices
from hulumed.processing.video.sampling import timestamps as filter_timestamps

logger = logging.getLogger(__name__)


def _import_av() -> Any:
    try:
        import av
    except ImportError as err:
        raise MediaError(
            "Reading video files (.mp4, .avi, ...) needs PyAV: pip install av. "
            "Alternatively pass a folder of extracted frames."
        ) from err
    return av


def _open(path: Path) -> Any:
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
        if width * height > limits.MAX_FRAME_PIXELS:
            raise MediaError(
                f"{path} declares {width} x {height} frames, more than {limits.MAX_FRAME_PIXELS:,} pixels per frame. "
                "The file is corrupt or the video too large; downscale it first (e.g. ffmpeg -vf scale=-2:1080)."
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
    container = _open(path)
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
    """A decoded PyAV frame as `(3, H, W)` uint8 RGB: the one conversion of this module."""
    return channels_first(frame.to_ndarray(format="rgb24"))


def _trim(container: Any, path: Path, start_time: Optional[float], end_time: Optional[float]) -> Trim:
    """The container's start, duration and frame rate (ffprobe's view), trimmed as upstream does."""
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
    rate = Fraction(stream.average_rate) if stream.average_rate else None
    return Trim.of(file_start, duration, stream_start, rate, start_time, end_time)


@dataclass
class _FrameTable:
    """Presentation timestamps of every frame of a stream, from demuxing only (no decoding)."""

    pts: list[int]  # sorted, in stream time-base units
    durations: list[int]  # packet durations in the same units, 0 when unknown
    keyframes: list[int]  # sorted pts of keyframes (seek points)


def _frame_table(path: Path) -> _FrameTable:
    container = _open(path)
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
    if not entries:
        raise MediaError(f"{path} has no video frames (empty video). Pass a video with at least one frame.")
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


def _decoded_frames(container: Any) -> Iterator[Any]:
    """The stream's decoded frames that have a presentation timestamp, in decoding order."""
    for frame in container.decode(container.streams.video[0]):
        if frame.pts is not None:
            yield frame


# ----------------------------------------------------------------------------------------- index sampling


def frames_chosen(
    path: Path, choose: Callable[[int, float], Sequence[int]], seek: bool = True,
) -> tuple[list[np.ndarray], list[int], float]:
    """The frames at the indices ``choose(frame_count, vid_fps)`` picks (frame i: the i-th in presentation order;
    ``vid_fps``: the stream's average rate): RGB (3, H, W) uint8 frames, the indices, ``vid_fps``. Seeks to each
    wanted frame; decodes the whole clip when seeking misses one."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        vid_fps = float(stream.average_rate or stream.guessed_rate or 0) or 1.0
    finally:
        container.close()
    if seek:
        table = _frame_table(path)
        indices = list(choose(len(table.pts), vid_fps))
        wanted = [table.pts[i] for i in indices]
        decoded = _decode_selected(path, wanted, table.keyframes)
        if all(p in decoded for p in wanted):
            return [decoded[p] for p in wanted], indices, vid_fps
        logger.info("Seeking in %s missed frames; decoding the whole clip instead.", path)
    with _decoding(path) as container:
        every = list(_decoded_frames(container))
        indices = list(choose(len(every), vid_fps))
        return [_rgb(every[i]) for i in indices], indices, vid_fps


def frames_by_index(
    path: Path, start_time: Optional[float], end_time: Optional[float], fps: Optional[float], max_frames: int,
    seek: bool = True,
) -> Clip:
    """Index sampling on a container file (upstream: decord), used for windows shorter than one second."""
    frames, indices, vid_fps = frames_chosen(
        path, lambda count, rate: sample_frame_indices(count, rate, start_time, end_time, fps, max_frames), seek)
    return Clip(stacked(frames, path), [i / vid_fps for i in indices])


# ----------------------------------------------------------------------------------------- the fps filter


def _decode_all(
    path: Path, start_time: Optional[float], end_time: Optional[float], fps: Optional[float], max_frames: Optional[int]
) -> Clip:
    """Upstream's ffmpeg path: every frame decoded in order through the fps filter, then at most `max_frames`."""
    with _decoding(path) as container:
        time_base = container.streams.video[0].time_base
        trim = _trim(container, path, start_time, end_time)
        held: dict[int, Any] = {}  # decoded frames the filter may still output: the last kept one and the newest

        def times() -> Iterator[tuple[Fraction, Fraction]]:
            last_kept: Optional[int] = None
            for index, frame in enumerate(_decoded_frames(container)):
                for old in [k for k in held if k != last_kept]:  # the filter outputs only its latest kept frame
                    del held[old]
                held[index] = frame
                time = frame.pts * time_base - trim.offset
                if not (trim.do_trim and time < 0):  # fps_ticks skips these (drop_negative)
                    last_kept = index
                yield time, frame.duration * time_base if frame.duration else trim.default_step

        frames: list[np.ndarray] = []
        shown: Optional[int] = None
        for index in fps_ticks(times(), fps, trim.limit, drop_negative=trim.do_trim):
            if index != shown:
                shown, rgb = index, _rgb(held[index])
            frames.append(rgb)
    frames = stacked(frames, path)
    stamps = filter_timestamps(trim, len(frames), fps)
    keep = keep_at_most(len(frames), max_frames)
    if keep is not None:
        frames, stamps = [frames[i] for i in keep], stamps[keep]
    return Clip(frames, [float(t) for t in stamps])


def _seek_planned(
    path: Path, start_time: Optional[float], end_time: Optional[float], fps: Optional[float], max_frames: Optional[int]
) -> Clip:
    """The frames and timestamps of `_decode_all`, decoding only what is kept (module docstring)."""
    table = _frame_table(path)
    container = _open(path)
    try:
        time_base = Fraction(container.streams.video[0].time_base)
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
    stamps = filter_timestamps(trim, len(plan), fps)
    keep = keep_at_most(len(plan), max_frames)
    if keep is not None:
        plan, stamps = [plan[i] for i in keep], stamps[keep]
    wanted = [table.pts[i] for i in plan]
    decoded = _decode_selected(path, wanted, table.keyframes)
    if not all(p in decoded for p in wanted):
        logger.info("Seeking in %s missed frames; decoding the whole clip instead.", path)
        return _decode_all(path, start_time, end_time, fps, max_frames)
    return Clip(stacked([decoded[p] for p in wanted], path), [float(t) for t in stamps])


def filtered(
    path: Path, start_time: Optional[float], end_time: Optional[float], fps: Optional[float],
    max_frames: Optional[int], seek: bool = True,
) -> Clip:
    """A container clip through upstream's fps filter (module docstring), seeking or decoding everything."""
    if seek:
        return _seek_planned(path, start_time, end_time, fps, max_frames)
    return _decode_all(path, start_time, end_time, fps, max_frames)

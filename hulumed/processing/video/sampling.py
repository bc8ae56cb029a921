"""Which frames of a video upstream keeps, and their timestamps: pure arithmetic, no decoding.

Two upstream rules (HF-Version `load_video_from_ids` / `load_video`):

1. Index sampling (`sample_frame_indices`) over a source of N frames at `vid_fps`:
   `f_start = max(int(s * vid_fps) - 1, 0)`, `f_end = min(int(e * vid_fps) - 1, N - 1)`; if `fps` is given and
   `duration / vid_fps < max_frames`: `segment = min(vid_fps // fps, duration)`, indices
   `arange(segment // 2, duration, segment)`; otherwise all frames if `duration <= max_frames`, else
   `linspace(0, duration - 1, max_frames, dtype=int)`.
2. ffmpeg's `fps=fps:round=down` filter (`fps_ticks`): output tick n (time n / fps) shows the latest frame whose
   time, rounded down to the tick grid, is <= n, from the first frame's tick to the end-of-stream tick (last frame
   time + its duration, rounded down); a clip shorter than one tick gives one frame; with `fps=None` every kept
   frame is output once. Upstream's trim (`Trim`, ffprobe / `-ss` / `-t`) decides which frame times enter the
   filter, `timestamps` gives `arange(start, start + duration + 1/fps, 1/fps)[:T]`, and `keep_at_most` the
   `linspace(0, T - 1, max_frames, dtype=int)` subsampling above `max_frames`.

`fps_ticks` is the one implementation of the filter: the seeking loader runs it on demuxed timestamps before
decoding anything, the decode-everything loader runs it on frames as they are decoded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import numpy as np

from hulumed.errors import MediaError

MAX_OUTPUT_FRAMES = 2_000_000  # fps-filter output frames (before max_frames); more means corrupt timestamps


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


@dataclass(frozen=True)
class Trim:
    """Upstream's ffprobe / ffmpeg trim arithmetic for one container and one (start, end) request."""

    start_time: float  # seconds, the first timestamp
    duration: float  # seconds
    offset: Fraction  # subtracted from frame times (ffmpeg shifts the file start or the -ss point to 0)
    limit: Optional[Fraction]  # frames at or after this (shifted) time are not read (-t), None without trim
    do_trim: bool
    default_step: Fraction  # a frame's duration when the stream does not say

    @classmethod
    def of(
        cls,
        file_start: Fraction,
        duration: float,
        stream_start: float,
        average_rate: Optional[Fraction],
        start_time: Optional[float],
        end_time: Optional[float],
    ) -> "Trim":
        """From the container's facts (file start, duration and stream start in seconds, average frame rate)."""
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
        default_step = 1 / Fraction(average_rate) if average_rate else Fraction(1, 25)
        return cls(start_time, duration, offset, limit, do_trim, default_step)


def _check_ticks(count: int) -> None:
    if count > MAX_OUTPUT_FRAMES:
        raise MediaError(
            f"The fps filter would output more than {MAX_OUTPUT_FRAMES:,} frames: the video's timestamps are corrupt "
            "or it is extremely long. Remux or cut it (ffmpeg -i in -c copy out.mp4), or lower fps."
        )


def fps_ticks(
    frames: Iterable[tuple[Fraction, Fraction]], fps: Optional[float], limit: Optional[Fraction] = None,
    drop_negative: bool = False,
) -> Iterator[int]:
    """The source frame index of every output frame of ffmpeg's `fps=fps:round=down` filter (module docstring, 2).

    `frames` gives each source frame's (presentation time, duration) in seconds, in order; it is read lazily, at
    most one frame ahead of the index yielded, and not past `limit`. Frames before time 0 are skipped with
    `drop_negative` (they still count in the indices).
    """
    emitted = 0
    current: Optional[int] = None
    next_tick: Optional[int] = None
    end: Optional[Fraction] = None
    for index, (time, step) in enumerate(frames):
        if drop_negative and time < 0:
            continue
        if limit is not None and time >= limit:
            break
        end = time + step
        if fps is None:
            emitted += 1
            yield index
            continue
        tick = math.floor(time * Fraction(fps))
        if next_tick is None:
            next_tick = tick
        _check_ticks(emitted + tick - next_tick)
        while current is not None and next_tick < tick:
            emitted += 1
            yield current
            next_tick += 1
        current = index
    if fps is not None and current is not None and next_tick is not None and end is not None:
        end_tick = math.floor(end * Fraction(fps))
        _check_ticks(emitted + end_tick - next_tick)
        while next_tick < end_tick or emitted == 0:  # a clip shorter than one tick still gives one frame
            emitted += 1
            yield current
            next_tick += 1


def fps_filter_plan(
    times: Sequence[Fraction], steps: Sequence[Fraction], fps: Optional[float], limit: Optional[Fraction] = None,
    drop_negative: bool = False,
) -> list[int]:
    """`fps_ticks` over known frame times and durations, as a list."""
    return list(fps_ticks(zip(times, steps), fps, limit, drop_negative))


def timestamps(trim: Trim, count: int, fps: Optional[float]) -> np.ndarray:
    """Upstream's timestamps of `count` filter outputs; where its `arange` is shorter than the frames (the
    container's duration is shorter than its last frame; upstream then fails on indexing), the grid is continued
    at the same step."""
    if fps is None:
        return np.linspace(trim.start_time, trim.start_time + trim.duration, count)
    stop = trim.start_time + trim.duration + 1 / fps
    if (stop - trim.start_time) * fps > count + 2:  # arange's values do not depend on stop, only its length
        stop = trim.start_time + (count + 2) / fps
    stamps = np.arange(trim.start_time, stop, 1 / fps)[:count]
    if len(stamps) < count:
        stamps = np.concatenate([stamps, trim.start_time + np.arange(len(stamps), count) / fps])
    return stamps


def keep_at_most(count: int, max_frames: Optional[int]) -> Optional[np.ndarray]:
    """Indices of the `max_frames` outputs upstream keeps out of `count` (`linspace`), or None to keep all."""
    if max_frames is None or count <= max_frames:
        return None
    return np.linspace(0, count - 1, max_frames, dtype=int)

"""Video: upstream's frame choice and timestamps on clips made here, and the seeking path == decode-everything.

Clips are encoded with PyAV (`media_samples.write_clip`); every frame shows its own index in binary, so the tests
can tell which source frame the loader returned.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from hulumed import MediaError  # noqa: E402
from hulumed.processing import HulumedProcessor, fps_filter_plan, limits, load_video  # noqa: E402
from hulumed.processing.video import container as video_container  # noqa: E402
from hulumed.processing.video import fps_ticks  # noqa: E402
from tests.unit.media_samples import decoded_index, write_clip  # noqa: E402

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden"


@lru_cache(maxsize=None)
def _processor() -> HulumedProcessor:
    return HulumedProcessor.from_pretrained(GOLDEN / "tiny-qwen2")


def _cfr_expected(frames: int, rate: float, fps: float) -> list[int]:
    """ffmpeg fps=fps:round=down on a constant-rate clip: tick n shows the last frame i with floor(i*fps/rate) <= n,
    for n from 0 to floor(frames*fps/rate) - 1 (at least one frame)."""
    ticks = max(math.floor(Fraction(frames) * Fraction(fps) / Fraction(rate)), 1)
    return [max(i for i in range(frames) if math.floor(Fraction(i) * Fraction(fps) / Fraction(rate)) <= n)
            for n in range(ticks)]


def test_fps_filter_plan_rules():
    times = [Fraction(i, 3) for i in range(6)]
    steps = [Fraction(1, 3)] * 6
    assert fps_filter_plan(times, steps, 1) == [2, 5]  # the last frame of each 1 s tick wins (round=down)
    assert fps_filter_plan(times, steps, 3) == [0, 1, 2, 3, 4, 5]
    assert fps_filter_plan(times, steps, 2) == [1, 2, 4, 5]
    assert fps_filter_plan(times, steps, None) == [0, 1, 2, 3, 4, 5]
    assert fps_filter_plan(times, steps, 1, limit=Fraction(1)) == [2]  # -t 1: frames at t >= 1 s are not read
    assert fps_filter_plan(times[:1], steps[:1], 0.5) == [0]  # shorter than one tick: still one frame
    assert fps_filter_plan([Fraction(-1, 3), *times[1:]], steps, 3, drop_negative=True) == [1, 2, 3, 4, 5]


def test_fps_ticks_reads_at_most_one_frame_ahead_and_not_past_the_limit():
    """The decode-everything path holds only the frames the filter may still output: this is why."""
    read: list[int] = []

    def frames():
        for i in range(30):
            read.append(i)
            yield Fraction(i, 10), Fraction(1, 10)

    ticks = fps_ticks(frames(), 2)
    for index in ticks:
        assert read[-1] - index <= 1, (index, read[-1])
    assert read[-1] == 29
    read.clear()
    assert list(fps_ticks(frames(), 2, limit=Fraction(1))) == [4, 9]
    assert read[-1] == 10  # the first frame at t >= 1 s ends the reading
    times = [Fraction(i, 10) for i in range(30)]
    assert list(fps_ticks(zip(times, [Fraction(1, 10)] * 30), 2)) == fps_filter_plan(times, [Fraction(1, 10)] * 30, 2)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    vfr = [0, 40, 90, 200, 230, 400, 410, 650, 700, 1000, 1010, 1300, 1500, 1900, 2000, 2600]
    return {
        "cfr10_gop12": write_clip(folder / "cfr10.mp4", 36, 10, gop=12),
        "ntsc_gop1": write_clip(folder / "ntsc.mp4", 20, Fraction(30000, 1001), gop=1),
        "vfr": write_clip(folder / "vfr.mp4", len(vfr), 1000, gop=4, vfr_pts=vfr),
        "mkv": write_clip(folder / "clip.mkv", 30, 12, gop=5, codec="mpeg4"),
    }


@pytest.mark.parametrize("fps", [1, 2, 3, 10])
def test_container_frames_follow_upstream_rule(clips: dict[str, Path], fps: int):
    clip = load_video(clips["cfr10_gop12"], fps=fps, max_frames=None)
    expected = _cfr_expected(36, 10, fps)
    assert [decoded_index(f) for f in clip.frames] == expected
    assert clip.timestamps == pytest.approx([n / fps for n in range(len(expected))], abs=1e-9)
    assert clip.frames[0].shape == (3, 48, 64) and clip.frames[0].dtype == np.uint8


def test_max_frames_subsamples_with_linspace(clips: dict[str, Path]):
    full = _cfr_expected(36, 10, 3)  # 10 ticks
    clip = load_video(clips["cfr10_gop12"], fps=3, max_frames=4)
    keep = np.linspace(0, len(full) - 1, 4, dtype=int)
    assert [decoded_index(f) for f in clip.frames] == [full[i] for i in keep]
    assert clip.timestamps == pytest.approx([k / 3 for k in keep])


def test_short_window_uses_index_sampling(clips: dict[str, Path]):
    # end - start < 1 s: upstream's load_video_from_ids with the container's 10 fps: frames 9..14, segment 6 -> [12]
    for seek in (True, False):
        clip = load_video(clips["cfr10_gop12"], start_time=1.0, end_time=1.5, fps=1, seek=seek)
        assert [decoded_index(f) for f in clip.frames] == [12]
        assert clip.timestamps == pytest.approx([1.2])


OPTIONS = [
    dict(fps=1, max_frames=128),
    dict(fps=3, max_frames=5),
    dict(fps=None, max_frames=7),
    dict(fps=2, max_frames=128, start_time=0.7, end_time=2.6),
    dict(fps=5, max_frames=3, start_time=1.1),
    dict(fps=1, max_frames=128, end_time=1.8),
]


@pytest.mark.parametrize("name", ["cfr10_gop12", "ntsc_gop1", "vfr", "mkv"])
def test_seek_equals_decode_everything(clips: dict[str, Path], name: str):
    for options in OPTIONS:
        try:
            slow = load_video(clips[name], seek=False, **options)
        except MediaError:
            with pytest.raises(MediaError):
                load_video(clips[name], seek=True, **options)
            continue
        fast = load_video(clips[name], seek=True, **options)
        assert fast.timestamps == slow.timestamps, options
        assert len(fast.frames) == len(slow.frames) and all(
            np.array_equal(a, b) for a, b in zip(fast.frames, slow.frames)
        ), options


def test_seek_converts_only_the_returned_frames(clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    calls = []
    real = video_container._rgb
    monkeypatch.setattr(video_container, "_rgb", lambda frame: calls.append(1) or real(frame))
    clip = load_video(clips["cfr10_gop12"], fps=10, max_frames=3)
    assert len(clip.frames) == 3 and len(calls) == 3
    calls.clear()
    load_video(clips["cfr10_gop12"], fps=10, max_frames=3, seek=False)
    assert len(calls) == 36  # upstream keeps every output frame before subsampling


def test_decode_everything_survives_a_frame_before_the_trim_start_mid_stream(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
):
    """Out-of-order timestamps: a frame that the filter skips (time < 0 after the trim) between kept frames must
    not drop the kept frame the filter still outputs (the decode-everything path holds only two frames)."""
    real_frames, real_trim = video_container._decoded_frames, video_container._trim
    seen: list[tuple[int, int]] = []
    trims = []

    def frames(container):
        for index, frame in enumerate(real_frames(container)):
            if index == 20:
                frame.pts = 0  # before start_time: skipped by the filter
            seen.append((frame.pts, frame.duration or 0))
            yield frame

    monkeypatch.setattr(video_container, "_decoded_frames", frames)
    monkeypatch.setattr(video_container, "_trim", lambda *a: trims.append(real_trim(*a)) or trims[-1])
    clip = load_video(clips["cfr10_gop12"], start_time=1.0, end_time=3.4, fps=2, max_frames=None, seek=False)
    import av

    with av.open(str(clips["cfr10_gop12"])) as container:
        tb = Fraction(container.streams.video[0].time_base)
    trim = trims[-1]
    times = [p * tb - trim.offset for p, _ in seen]
    steps = [d * tb if d else trim.default_step for _, d in seen]
    plan = fps_filter_plan(times, steps, 2, trim.limit, drop_negative=True)
    assert 20 not in plan and len(clip.frames) == len(plan) > 0


def test_frame_size_guard(clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(limits, "MAX_FRAME_PIXELS", 100)
    with pytest.raises(MediaError, match="pixels per frame"):
        load_video(clips["cfr10_gop12"])


def test_bad_video_options(clips: dict[str, Path]):
    with pytest.raises(MediaError, match="max_frames"):
        load_video(clips["mkv"], max_frames=0)
    with pytest.raises(MediaError, match="fps"):
        load_video(clips["mkv"], fps=float("nan"))
    with pytest.raises(MediaError, match="start_time"):
        load_video(clips["mkv"], start_time="soon")
    with pytest.raises(MediaError, match="Unsupported video source"):
        load_video(12345)
    with pytest.raises(MediaError, match="No frames"):
        load_video(clips["mkv"], start_time=100.0, end_time=200.0)


def test_video_end_to_end_through_processor(clips: dict[str, Path]):
    conversation = [{"role": "user", "content": [
        {"type": "video", "video": {"video_path": str(clips["cfr10_gop12"]), "fps": 1, "max_frames": 128}},
        {"type": "text", "text": "What happens?"},
    ]}]
    processor = _processor()
    prompt = processor.render_prompt(conversation)
    assert "Time 0.0s:" in prompt and "Time 2.0s:" in prompt
    out = processor(conversation=conversation, return_tensors="pt")
    assert out["grid_sizes"].tolist()[0][0] == 3 and out["modals"] == ["video"]

"""The demo's memory is bounded per session and for all sessions, released on clear / close, and guarded by the
server's media limits (issue: every input bounded, item 5)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import hulumed
from hulumed.demo.app import DemoApp, DemoLimits
from hulumed.demo.session import DemoSession
from tests.conftest import GOLDEN

MIB = 2**20


@pytest.fixture(scope="module")
def engine():
    engine = hulumed.load(GOLDEN / "tiny-qwen2", device="cpu")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def big_volume(tmp_path_factory) -> Path:
    """A small .nii.gz whose axis-0 view is read whole as float64: 32 MiB in memory from ~60 KB on disk."""
    path = tmp_path_factory.mktemp("vol") / "ct.nii.gz"
    data = np.zeros((256, 256, 64), np.int16)
    data[64:192, 64:192, :] = 300
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    assert path.stat().st_size < MIB
    return path


def _attach_axis0(app: DemoApp, key: str, path: Path) -> DemoSession:
    session, errors = app.attach(DemoSession(), [str(path)], key=key)
    assert not errors
    session = app.update_volume(session, 0, 4, "none (per-slice min-max, upstream)", None, None, key=key)
    app.panel(session, key=key)  # what the page renders: the viewer's slice reads the volume (axis 0: whole)
    return session


def test_sessions_share_a_bounded_budget_and_clear_releases(engine, big_volume, tmp_path):
    limits = DemoLimits(session_bytes=48 * MIB, total_bytes=80 * MIB)
    app = DemoApp(engine, workspace=str(tmp_path / "ws"), limits=limits)
    peaks = []
    for number in range(4):
        _attach_axis0(app, f"s{number}", big_volume)
        peaks.append(app.held_bytes())
        assert app.volumes(f"s{number}").held_bytes >= 32 * MIB  # this session's volume is really kept
    assert max(peaks) <= limits.total_bytes  # older sessions dropped as soon as the newest grows past the total
    for number in range(4):
        app.forget_session(f"s{number}")  # Clear / closed page
    assert app.held_bytes() == 0


def test_one_session_keeps_at_most_its_budget(engine, big_volume, tmp_path):
    app = DemoApp(engine, workspace=str(tmp_path / "ws"), limits=DemoLimits(session_bytes=40 * MIB))
    session = _attach_axis0(app, "one", big_volume)
    for count in (3, 5, 6, 7):  # new options: new views; old ones go when over the budget
        session = app.update_volume(session, 0, count, "none (per-slice min-max, upstream)", None, None, key="one")
    assert app.volumes("one").held_bytes <= 40 * MIB + 32 * MIB  # the newest entry is always kept
    app.release("one")
    assert app.held_bytes() == 0


def test_slider_moves_read_one_plane_and_never_rerun_the_processor(engine, big_volume, tmp_path, monkeypatch):
    app = DemoApp(engine, workspace=str(tmp_path / "ws"))
    sessions = {key: _attach_axis0(app, key, big_volume) for key in ("a", "b", "c", "d", "e", "f")}
    calls = []
    original = app.processor.load_conversation_media
    monkeypatch.setattr(app.processor, "load_conversation_media",
                        lambda conversation: calls.append(1) or original(conversation))
    for index in range(0, 256, 32):
        for key, session in sessions.items():
            volume = session.latest("volume", include_sent=True)
            out = app.volume_outputs(session, volume, index, key=key)
            assert sorted(out["slice"].shape) == [3, 64, 256] and out["index"] == index
    assert calls == []  # six sessions moving sliders: no processor run, the viewer reads what is loaded


def test_a_huge_pixel_count_image_is_refused_before_decoding(engine, tmp_path):
    from PIL import Image

    path = tmp_path / "huge.png"
    Image.new("1", (16_000, 11_000)).save(path)  # 176 megapixels, a few KB on disk
    assert path.stat().st_size < MIB
    app = DemoApp(engine, workspace=str(tmp_path / "ws"))
    session, errors = app.attach(DemoSession(), [str(path)])
    assert session.pending == [] and len(errors) == 1
    assert "176,000,000 pixels is over the limit of 40,000,000" in errors[0]


def test_a_file_over_the_media_byte_limit_is_refused(engine, big_volume, tmp_path):
    app = DemoApp(engine, workspace=str(tmp_path / "ws"), limits=DemoLimits(max_media_bytes=1024))
    session, errors = app.attach(DemoSession(), [str(big_volume)])
    assert session.pending == [] and "over this demo's limit of 1,024" in errors[0]
    assert app.held_bytes() == 0


def test_an_estimate_row_decodes_its_media_once(engine, monkeypatch):
    """The demo's estimate rows prepare each request once and estimate from that (no second decode), and the
    estimate from a Prepared equals the one from the conversation."""
    from hulumed.demo.attachments import Attachment, VolumeOptions
    from hulumed.demo.estimates import estimate_inputs
    from hulumed.generation import GenerationParams

    volume = Attachment("volume", str(GOLDEN / "inputs" / "volume.nii.gz"), "volume.nii.gz",
                        volume=VolumeOptions(num_slices=4))
    conversation = [{"role": "user", "content": [volume.part(), {"type": "text", "text": "Findings?"}]}]
    params = GenerationParams.greedy(8)
    assert engine.estimate(engine.prepare([conversation], params), params) == engine.estimate(conversation, params)
    calls = []
    original = engine.processor.load_conversation_media
    monkeypatch.setattr(engine.processor, "load_conversation_media",
                        lambda c: calls.append(1) or original(c))
    rows = estimate_inputs(engine, [], [volume], "Findings?", params)
    assert len(rows) == 2 and len(calls) == 2  # one decode per row (the volume alone, the whole request)


def test_an_attached_volume_is_decoded_once_per_file_and_options(engine, tmp_path, monkeypatch):
    """Attach + panel (viewer strip, slider, both estimate rows) decode the volume once; other options decode
    again once; the remembered slices are the session's (released with it) and equal a fresh decode."""
    import numpy as np

    from hulumed.demo.app import DemoApp
    from hulumed.demo.session import DemoSession
    from hulumed.processing.volume import load_volume, reader

    calls = []
    original = reader.read_volume
    monkeypatch.setattr(reader, "read_volume", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    app = DemoApp(engine, workspace=str(tmp_path / "ws"))
    path = str(GOLDEN / "inputs" / "volume.nii.gz")
    session, errors = app.attach(DemoSession(), [path], key="s1")
    assert errors == []
    app.panel(session, key="s1")
    assert len(calls) == 1
    session = app.update_volume(session, axis=2, num_slices=4, window="lung", center=None, width=None, key="s1")
    app.panel(session, key="s1")
    assert len(calls) == 2  # new options: one more decode, shared by the viewer and the estimate rows
    [remembered] = [v for k, v in app.volumes("s1").slices.entries.items() if "lung" in k[3]]
    fresh = load_volume(path, num_slices=4, window="lung")
    assert all(np.array_equal(a, b) for a, b in zip(remembered, fresh)) and not remembered[0].flags.writeable
    app.release("s1")
    assert app.held_bytes() == 0

"""The demo's app logic without Gradio: attachments, what the viewer shows, estimates, one chat turn."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import hulumed
from hulumed.demo.attachments import Attachment, VideoOptions, VolumeOptions, classify, inside_root, kind_of
from hulumed.demo.chat import NO_REASONING, THINKING_TITLE, ChatSettings, respond
from hulumed.demo.estimates import estimate_inputs, markdown_table
from hulumed.demo.session import DemoSession
from hulumed.demo.viewer import VolumeCache, video_frames, viewer_slice, volume_view
from hulumed.errors import MediaError
from hulumed.generation import GenerationResult
from hulumed.interface import StreamDelta, StreamFinal
from hulumed.processing.video import load_video
from hulumed.processing.volume import load_volume
from hulumed.think import THINK_INSTRUCTION
from tests.conftest import GOLDEN

INPUTS = GOLDEN / "inputs"
BAD = Path(__file__).parents[1] / "fixtures" / "bad"


@pytest.fixture(scope="module")
def engine():
    return hulumed.load(GOLDEN / "tiny-qwen2", device="cpu")


def _volume(**options) -> Attachment:
    return Attachment("volume", str(INPUTS / "volume.nii.gz"), "volume.nii.gz", volume=VolumeOptions(**options))


# ----------------------------------------------------------------------------------------- attachments


def test_files_are_classified_by_content(tmp_path):
    renamed = tmp_path / "scan.bin"  # a NIfTI without its extension is still a volume
    renamed.write_bytes((INPUTS / "volume.nii.gz").read_bytes())
    assert kind_of(renamed) == "volume"
    assert kind_of(INPUTS / "image_a.png") == "image"
    assert kind_of(INPUTS / "video.mp4") == "video"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    attachments, errors = classify([str(text), str(INPUTS / "image_a.png")])
    assert [a.kind for a in attachments] == ["image"]
    assert len(errors) == 1 and "notes.txt" in errors[0] and "unsupported file type" in errors[0]


def test_several_dicom_files_are_one_series(tmp_path):
    pytest.importorskip("pydicom")
    from tests.unit.media_samples import hu_volume, write_series

    paths = [str(p) for p in write_series(tmp_path / "upload", hu_volume(slices=3), [0.0, 2.0, 4.0])]
    attachments, errors = classify(paths, series_dir=str(tmp_path))
    assert errors == [] and [a.kind for a in attachments] == ["volume"]
    assert len(list(Path(attachments[0].path).iterdir())) == 3
    one, _ = classify(paths[:1])
    assert [a.kind for a in one] == ["image"]
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in paths:
            zf.write(path, Path(path).name)
    assert kind_of(archive) == "volume"


def test_media_root_refuses_paths_outside(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    assert inside_root("a.png", str(tmp_path)) == (tmp_path / "a.png").resolve()
    with pytest.raises(MediaError, match="outside the media root"):
        inside_root("../etc/passwd", str(tmp_path))


def test_parts_follow_the_message_schema():
    volume = _volume(axis=1, num_slices=4, window="lung").part()
    assert volume == {"type": "3d", "3d": {"image_path": str(INPUTS / "volume.nii.gz"), "nii_axis": 1,
                                           "nii_num_slices": 4, "window": "lung"}}
    video = Attachment("video", "v.mp4", "v.mp4", video=VideoOptions(fps=2, max_frames=8)).part()
    assert video == {"type": "video", "video": {"video_path": "v.mp4", "fps": 2, "max_frames": 8}}


# ----------------------------------------------------------------------------------------- viewer


@pytest.mark.parametrize("options", [
    {}, {"num_slices": 5}, {"axis": 0, "num_slices": 7}, {"num_slices": 4, "window": "lung"},
    {"num_slices": 3, "window": (0.0, 2.0)}, {"axis": 1, "window": "ct_rgb"},
])
def test_strip_is_exactly_what_the_model_receives(engine, options):
    attachment = _volume(**options)
    view = volume_view(engine.processor, VolumeCache(), attachment)
    window = options.get("window")
    expected = load_volume(attachment.path, num_slices=options.get("num_slices"), axis=options.get("axis", 2),
                           window=list(window) if isinstance(window, tuple) else window)
    assert len(view.strip) == len(expected) == len(view.indices)
    for (image, caption), slice_chw, index in zip(view.strip, expected, view.indices):
        np.testing.assert_array_equal(image, np.transpose(slice_chw, (1, 2, 0)))
        assert caption == f"slice {index}"
    cache = VolumeCache()
    for (image, _), index in zip(view.strip, view.indices):  # the viewer's slice at a received index is identical
        np.testing.assert_array_equal(viewer_slice(cache, attachment, index), image)


def test_radiological_view_is_the_radiological_slice_and_leaves_the_model_alone(engine, tmp_path):
    """The viewer's default display: the slice a radiologist reads (patient's right on the left), taken from the
    same one slice; the strip (the model's slices) keeps the attachment's raw orientation."""
    import nibabel
    from nibabel.orientations import io_orientation

    from hulumed.processing.volume import read_volume, slice_volume

    rng = np.random.default_rng(0)
    affine = np.array([[0.0, 0.0, -2.5, 30.0], [-0.8, 0.0, 0.0, 10.0], [0.0, 0.9, 0.0, -5.0], [0, 0, 0, 1]])
    path = tmp_path / "oblique.nii.gz"
    nibabel.save(nibabel.Nifti1Image(rng.normal(size=(9, 7, 5)).astype(np.float32), affine), str(path))
    attachment = Attachment("volume", str(path), "oblique.nii.gz", volume=VolumeOptions(axis=2))
    cache = VolumeCache()
    target, flip = io_orientation(affine)[2]
    everything = slice_volume(read_volume(path), axis=int(target), orientation="radiological")
    for index in range(5):
        shown = viewer_slice(cache, attachment, index, radiological=True)
        mapped = 4 - index if flip < 0 else index
        np.testing.assert_array_equal(shown, np.transpose(everything[mapped], (1, 2, 0)))
        raw = viewer_slice(cache, attachment, index)
        assert raw.shape != shown.shape or not np.array_equal(raw, shown)  # the display really changed
    view = volume_view(engine.processor, cache, attachment)
    np.testing.assert_array_equal(view.strip[2][0], viewer_slice(cache, attachment, view.indices[2]))


def test_the_page_strip_shows_at_most_32_of_the_models_slices():
    from hulumed.demo.viewer import VolumeView, shown_strip

    strip = [(np.full((2, 2, 3), k % 256, np.uint8), f"slice {k}") for k in range(300)]
    shown, label = shown_strip(VolumeView((4, 4, 300), 300, list(range(300)), strip))
    assert len(shown) == 32 and shown[0][1] == "slice 0" and shown[-1][1] == "slice 299"
    assert "300 slices" in label and "32 shown" in label
    few, label = shown_strip(VolumeView((4, 4, 8), 8, list(range(8)), strip[:8]))
    assert few == strip[:8] and "all 8" in label


def test_a_volume_view_is_computed_once_per_options(engine, monkeypatch):
    from hulumed.demo import viewer

    calls = []
    original = viewer._loaded_part
    monkeypatch.setattr(viewer, "_loaded_part", lambda *a: calls.append(1) or original(*a))
    cache = VolumeCache()
    for _ in range(3):
        volume_view(engine.processor, cache, _volume(num_slices=4))
    volume_view(engine.processor, cache, _volume(num_slices=5))
    assert len(calls) == 2


def test_volume_view_indices_follow_upstreams_linspace():
    view = volume_view(hulumed.processing.HulumedProcessor.from_pretrained(GOLDEN / "tiny-qwen2"), VolumeCache(),
                       _volume(num_slices=5))
    assert view.total == 12
    assert view.indices == np.linspace(0, 11, 5, dtype=int).tolist()


def test_video_frames_carry_the_processors_timestamps(engine):
    attachment = Attachment("video", str(INPUTS / "video.mp4"), "video.mp4", video=VideoOptions(fps=2, max_frames=6))
    frames = video_frames(engine.processor, attachment)
    clip = load_video(attachment.path, fps=2, max_frames=6)
    assert [c for _, c in frames] == [f"{t:.1f}s" for t in clip.timestamps]
    for (image, _), frame in zip(frames, clip.frames):
        np.testing.assert_array_equal(image, np.transpose(frame, (1, 2, 0)))


@pytest.mark.parametrize("name", ["nii_truncated_data.nii.gz", "nii_nan.nii.gz", "nii_garbage.nii"])
def test_bad_volumes_raise_media_errors(engine, name):
    attachment = Attachment("volume", str(BAD / name), name)
    with pytest.raises(MediaError):
        volume_view(engine.processor, VolumeCache(), attachment)


# ----------------------------------------------------------------------------------------- estimates


def test_estimates_are_the_engines_counts(engine):
    volume, image = _volume(num_slices=4), Attachment("image", str(INPUTS / "image_a.png"), "image_a.png")
    params = ChatSettings(max_new_tokens=16).params()
    rows = estimate_inputs(engine, [], [volume, image], "What is shown?", params)
    assert [r.kind for r in rows] == ["volume", "image", "total"]
    alone = [{"role": "user", "content": [volume.part(), {"type": "text", "text": "What is shown?"}]}]
    expected = engine.estimate(alone, params)
    assert rows[0].prompt_tokens == expected["prompt_tokens"] and rows[0].total_bytes == expected["total_bytes"]
    prepared = engine.prepare([alone], params)
    assert rows[0].visual_tokens == prepared.visual_tokens_before_reduction[0] > 0
    assert rows[0].after_reduction == prepared.visual_tokens[0]
    whole = [{"role": "user", "content": [volume.part(), image.part(), {"type": "text", "text": "What is shown?"}]}]
    assert rows[2].prompt_tokens == engine.estimate(whole, params)["prompt_tokens"]
    # with a volume in the request every image is merged 2x2 (upstream rule), so rows do not simply add up
    assert rows[2].visual_tokens < rows[0].visual_tokens + rows[1].visual_tokens


# ----------------------------------------------------------------------------------------- chat turns


class ScriptedEngine:
    """An engine that answers with a fixed raw text, word by word (stands in for a model that thinks)."""

    def __init__(self, pieces: list[str], reasoning: str | None = None, fail: Exception | None = None) -> None:
        self.pieces, self.reasoning, self.fail = pieces, reasoning, fail
        self.seen: list = []

    def stream(self, conversation, params=None, cancel=None):
        self.seen.append((conversation, params))
        if self.fail is not None:
            raise self.fail
        sent = []
        for piece in self.pieces:
            if cancel is not None and cancel.is_set():
                break
            sent.append(piece)
            yield StreamDelta(piece)
        finish = "cancelled" if cancel is not None and cancel.is_set() else "stop"
        yield StreamFinal(GenerationResult("".join(sent), self.reasoning, [1] * len(sent), 10, len(sent), 0, finish))


def test_think_turn_shows_a_collapsed_reasoning_block():
    engine = ScriptedEngine(["The ", "answer."], reasoning="step one")
    session = DemoSession()
    updates = list(respond(engine, session, "Why?", ChatSettings(think=True), threading.Event()))
    messages, status = updates[-1]
    thought, answer = messages[-2], messages[-1]
    assert thought["metadata"]["title"] == THINKING_TITLE and thought["metadata"]["status"] == "done"
    assert thought["content"] == "step one" and answer["content"] == "The answer."
    assert any(m[-1]["content"] == "The " for m, _ in updates[:-1])  # streamed before the end
    assert engine.seen[0][1].think is True  # the engine applies the instruction itself
    assert THINK_INSTRUCTION not in str(session.conversation)  # history keeps the user's own words
    assert "finish: stop" in status


def test_think_without_reasoning_says_so():
    session = DemoSession()
    messages, _ = list(respond(ScriptedEngine(["x"]), session, "Q", ChatSettings(think=True), threading.Event()))[-1]
    assert messages[-2]["content"] == NO_REASONING


def test_multi_turn_sends_the_history_and_attachments_of_any_turn():
    engine = ScriptedEngine(["ok"])
    session = DemoSession()
    session.attach([Attachment("image", "a.png", "a.png")])
    list(respond(engine, session, "first", ChatSettings(), threading.Event()))
    assert session.pending == []
    session.attach([_volume(num_slices=2)])
    list(respond(engine, session, "second", ChatSettings(), threading.Event()))
    sent = engine.seen[-1][0]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"][0]["type"] == "image" and sent[2]["content"][0]["type"] == "3d"
    assert len(session.conversation) == 4


def test_a_refused_turn_keeps_the_session():
    session = DemoSession()
    session.attach([Attachment("image", "a.png", "a.png")])
    failing = ScriptedEngine([], fail=MediaError("a.png is truncated.\nmore detail"))
    messages, status = list(respond(failing, session, "Q", ChatSettings(), threading.Event()))[-1]
    assert status == "⚠️ a.png is truncated." and messages[-1]["content"] == "⚠️ a.png is truncated."
    assert session.conversation == [] and len(session.pending) == 1  # nothing lost
    messages, status = list(respond(ScriptedEngine(["fine"]), session, "Q", ChatSettings(), threading.Event()))[-1]
    assert messages[-1]["content"] == "fine" and len(session.conversation) == 2


def test_stop_sets_cancelled():
    cancel = threading.Event()
    engine = ScriptedEngine(["a", "b", "c", "d"])
    session = DemoSession()
    turn = respond(engine, session, "Q", ChatSettings(), cancel)
    next(turn)  # the placeholder
    next(turn)  # the first piece
    cancel.set()
    messages, status = list(turn)[-1]
    assert messages[-1]["content"] == "a" and "stopped by you" in status


def test_settings_map_to_generation_params():
    assert ChatSettings(temperature=0).params().do_sample is False
    params = ChatSettings(max_new_tokens=9, temperature=0.5, top_p=0.9, seed=3).params()
    assert (params.max_new_tokens, params.temperature, params.top_p, params.seed) == (9, 0.5, 0.9, 3)
    session = DemoSession()
    _, status = list(respond(ScriptedEngine([]), session, "Q", ChatSettings(top_p=3), threading.Event()))[-1]
    assert status.startswith("⚠️ Generation settings: top_p")


def test_estimates_show_what_reduction_removed(tmp_path):
    import json
    import shutil

    folder = tmp_path / "tiny"
    shutil.copytree(GOLDEN / "tiny-qwen2", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "use_token_compression": True}))
    engine = hulumed.load(folder, device="cpu")
    volume = _volume()
    params = ChatSettings(max_new_tokens=4).params()
    [row, _] = estimate_inputs(engine, [], [volume], "Q", params)
    prepared = engine.prepare([[{"role": "user", "content": [volume.part(), {"type": "text", "text": "Q"}]}]], params)
    assert (row.visual_tokens, row.after_reduction) == (prepared.visual_tokens_before_reduction[0],
                                                        prepared.visual_tokens[0])
    assert row.removed == row.visual_tokens - row.after_reduction > 0
    assert f"| {row.removed:,} |" in markdown_table([row])

"""``hulumed demo`` driven by Gradio's own Python client on 127.0.0.1, with the tiny checkpoint.

Every endpoint the page uses is called as the browser calls it (same session state); answers are compared with
the engine's own output for the same conversation, strips with the volume loader's slices.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import hulumed  # noqa: E402
from hulumed.demo.app import build_demo, launch  # noqa: E402
from hulumed.generation import GenerationParams  # noqa: E402
from hulumed.processing.video import load_video  # noqa: E402
from hulumed.processing.volume import load_volume  # noqa: E402
from tests.conftest import GOLDEN  # noqa: E402

INPUTS = GOLDEN / "inputs"
BAD = Path(__file__).parents[1] / "fixtures" / "bad"
GREEDY = {"t": 0, "sd": -1}

# /attach and /volume outputs, in order (app.py's panel_outputs without the state)
PANEL = ["attachments", "notice", "volume_info", "slider", "slice", "strip", "axis", "slices", "window", "frames",
         "images", "estimate"]


class Recording:
    """The real engine, remembering what the demo asks it to stream."""

    def __init__(self, engine) -> None:
        self._engine, self.streams = engine, []

    def stream(self, conversation, params=None, cancel=None, **kwargs):
        self.streams.append((conversation, params))
        return self._engine.stream(conversation, params, cancel=cancel, **kwargs)

    def __getattr__(self, name):
        return getattr(self._engine, name)


@pytest.fixture(scope="module")
def engine():
    return Recording(hulumed.load(GOLDEN / "tiny-qwen2", device="cpu"))


@pytest.fixture(scope="module")
def url(engine):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = build_demo(engine)
    _, local, _ = launch(demo, host="127.0.0.1", port=port, block=False)
    assert local.startswith("http://127.0.0.1:")
    yield local
    demo.close()


@pytest.fixture
def client(url):
    return gradio_client.Client(url, verbose=False)  # a fresh browser session per test


def _panel(values) -> dict:
    return dict(zip(PANEL, values))


def _attach(client, *paths: Path) -> dict:
    values = client.predict(paths=[gradio_client.handle_file(str(p)) for p in paths], api_name="/attach")
    return _panel(values[:-1])


def _send(client, text: str, **settings) -> tuple[list[dict], str]:
    state = client.predict(message=text, **{"m": 8, **GREEDY, **settings}, api_name="/send")
    return state[0], state[1]


def _png(path: str) -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(path).convert("RGB"))


def _text(message: dict) -> str:
    content = message["content"]
    return "".join(part.get("text", "") for part in content) if isinstance(content, list) else content


def test_image_turn_answers_like_the_engine(client, engine):
    panel = _attach(client, INPUTS / "image_a.png")
    assert "image_a.png (image)" in panel["attachments"] and panel["notice"] == ""
    assert len(panel["images"]) == 1
    np.testing.assert_array_equal(_png(panel["images"][0]["image"]), _png(str(INPUTS / "image_a.png")))
    assert "| image_a.png | image |" in panel["estimate"]
    messages, status = _send(client, "What is shown?")
    conversation, _ = engine.streams[-1]
    part = conversation[-1]["content"][0]
    assert part["type"] == "image" and Path(part["image"]["image_path"]).name == "image_a.png"
    [expected] = engine.generate([conversation], GenerationParams.greedy(8))
    assert _text(messages[-1]) == expected.text and expected.text
    assert "finish:" in status and "visual" in status


def test_volume_with_a_window_shows_what_the_model_gets(client, engine):
    panel = _attach(client, INPUTS / "volume.nii.gz")
    assert "12 slices along axis 2" in panel["volume_info"] and len(panel["strip"]) == 12
    values = client.predict(axis_value=2, count=4, window_value="lung", center_value=40, width_value=400,
                            api_name="/volume")
    panel = _panel(values)
    expected = load_volume(INPUTS / "volume.nii.gz", num_slices=4, axis=2, window="lung")
    assert [item["caption"] for item in panel["strip"]] == [f"slice {i}" for i in np.linspace(0, 11, 4, dtype=int)]
    for item, slice_chw in zip(panel["strip"], expected):
        np.testing.assert_array_equal(_png(item["image"]), np.transpose(slice_chw, (1, 2, 0)))
    assert "window lung" in panel["attachments"]
    image, slider = client.predict(index=3, api_name="/slice")
    assert "received by the model" in slider["label"] and "radiological view" in slider["label"]  # the default
    image, slider = client.predict(value=False, index=3, api_name="/radiological")  # the stored orientation
    np.testing.assert_array_equal(_png(image), np.transpose(expected[1], (1, 2, 0)))  # slice 3 is the second one
    assert "received by the model" in slider["label"] and "stored orientation" in slider["label"]
    _send(client, "Describe the findings.")
    conversation, _ = engine.streams[-1]
    item = conversation[-1]["content"][0]["3d"]
    assert (item["nii_num_slices"], item["nii_axis"], item["window"]) == (4, 2, "lung")


def test_custom_window_and_a_bad_one(client):
    _attach(client, INPUTS / "volume.nii.gz")
    panel = _panel(client.predict(axis_value=0, count=3, window_value="custom center / width", center_value=1,
                                  width_value=2, api_name="/volume"))
    expected = load_volume(INPUTS / "volume.nii.gz", num_slices=3, axis=0, window=[1, 2])
    np.testing.assert_array_equal(_png(panel["strip"][2]["image"]), np.transpose(expected[2], (1, 2, 0)))
    panel = _panel(client.predict(axis_value=0, count=3, window_value="custom center / width", center_value=1,
                                  width_value=-5, api_name="/volume"))
    assert panel["notice"].startswith("⚠️") and "positive width" in panel["notice"]
    assert "window 1/2" in panel["attachments"]  # the last good settings are kept


def test_video_frames_with_timestamps(client, engine):
    _attach(client, INPUTS / "video.mp4")
    panel = _panel(client.predict(fps_value=2, frames_value=5, api_name="/video"))
    clip = load_video(INPUTS / "video.mp4", fps=2, max_frames=5)
    assert [f["caption"] for f in panel["frames"]] == [f"{t:.1f}s" for t in clip.timestamps]
    np.testing.assert_array_equal(_png(panel["frames"][0]["image"]), np.transpose(clip.frames[0], (1, 2, 0)))
    messages, _ = _send(client, "Describe this video.")
    conversation, _ = engine.streams[-1]
    assert conversation[-1]["content"][0]["video"]["fps"] == 2 and _text(messages[-1])


def test_multi_turn_with_attachments_in_the_second_turn(client, engine):
    first, _ = _send(client, "Hello")
    first_answer = _text(first[-1])
    _attach(client, INPUTS / "image_b.png")
    messages, _ = _send(client, "And this image?")
    conversation, _ = engine.streams[-1]
    assert [m["role"] for m in conversation] == ["user", "assistant", "user"]
    assert conversation[1]["content"] == first_answer
    assert conversation[2]["content"][0]["type"] == "image"
    [expected] = engine.generate([conversation], GenerationParams.greedy(8))
    assert _text(messages[-1]) == expected.text and len(messages) == 4


def test_think_adds_a_thinking_block(client, engine):
    messages, _ = _send(client, "Why?", th=True)
    conversation, params = engine.streams[-1]
    assert params.think is True and conversation[-1]["content"][-1]["text"] == "Why?"
    thought = messages[-2]
    assert thought["metadata"]["title"] == "Thinking" and thought["metadata"]["status"] == "done"


def test_corrupt_upload_is_reported_and_the_session_keeps_working(client):
    panel = _attach(client, BAD / "nii_truncated_data.nii.gz")
    assert panel["notice"].startswith("⚠️ nii_truncated_data.nii.gz") and "truncated" in panel["notice"]
    assert "Traceback" not in panel["notice"] and "\n" not in panel["notice"]
    assert "No attachments" in panel["attachments"]
    panel = _attach(client, BAD / "img_truncated.png", INPUTS / "image_a.png")
    assert "img_truncated.png" in panel["notice"] and "image_a.png (image)" in panel["attachments"]
    messages, status = _send(client, "Still there?")
    assert _text(messages[-1]) and "finish:" in status


def test_stop_really_stops(client):
    job = client.submit(message="Tell me a long story.", m=4096, **GREEDY, api_name="/send")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        outputs = job.outputs()
        if outputs and outputs[-1][1] == "generating…" and outputs[-1][0] and _text(outputs[-1][0][-1]):
            break
        time.sleep(0.05)
    started = time.monotonic()
    client.predict(api_name="/stop")
    messages, status = job.result(timeout=60)[:2]
    assert time.monotonic() - started < 20  # 4096 greedy tokens take about a minute on this CPU
    assert "stopped by you" in status
    assert int(status.split(" tokens")[0]) < 4096


def test_sessions_are_separate(url, client):
    _send(client, "Only mine")
    other = gradio_client.Client(url, verbose=False)
    messages, _ = _send(other, "Hi")
    assert len(messages) == 2
    cleared = client.predict(api_name="/clear")
    assert cleared[0] == []


def test_dicom_series_as_zip_and_as_several_files(client, tmp_path):
    pytest.importorskip("pydicom")
    import zipfile

    from tests.unit.media_samples import hu_volume, write_series

    files = write_series(tmp_path / "series", hu_volume(slices=5), [0.0, 1.5, 3.0, 4.5, 6.0])
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in files:
            zf.write(path, path.name)
    panel = _attach(client, archive)
    assert "study.zip (volume" in panel["attachments"] and "5 slices along axis 2" in panel["volume_info"]
    client.predict(api_name="/detach")
    panel = _attach(client, *files)
    assert "DICOM series (5 files)" in panel["attachments"] and len(panel["strip"]) == 5


def test_media_root_files_are_attached_and_escapes_refused(engine, tmp_path):
    from hulumed.demo.app import DemoApp
    from hulumed.demo.session import DemoSession

    root = tmp_path / "studies"
    root.mkdir()
    (root / "ct.nii.gz").write_bytes((INPUTS / "volume.nii.gz").read_bytes())
    app = DemoApp(engine, media_root=str(root))
    session = app.attach_from_root(DemoSession(), [str(root / "ct.nii.gz"), str(tmp_path / "elsewhere.png")])
    assert [a.name for a in session.pending] == ["ct.nii.gz"]
    assert "outside the media root" in session.notice


# ----------------------------------------------------------------------------------------- what stays on disk


def test_a_closed_session_leaves_no_file_behind(engine, tmp_path):
    """forget_session (the page's unload event) deletes the session's uploads and its assembled DICOM series;
    files of the media root it attached are never touched."""
    pytest.importorskip("pydicom")
    from hulumed.demo.app import DemoApp
    from hulumed.demo.session import DemoSession
    from tests.unit.media_samples import hu_volume, write_series

    workspace = tmp_path / "workspace"
    workspace.mkdir(mode=0o700)
    uploads = [workspace / f"upload{k}" / "slice.dcm" for k in range(3)]  # Gradio keeps each upload in a folder
    series = write_series(tmp_path / "series", hu_volume(slices=3), [0.0, 2.0, 4.0])
    for source, upload in zip(series, uploads):
        upload.parent.mkdir()
        upload.write_bytes(source.read_bytes())
    root_file = tmp_path / "root" / "a.png"
    root_file.parent.mkdir()
    root_file.write_bytes((INPUTS / "image_a.png").read_bytes())
    app = DemoApp(engine, media_root=str(root_file.parent), workspace=str(workspace))
    session, errors = app.attach(DemoSession(), [str(p) for p in uploads] + [str(root_file)], key="s1")
    assert errors == [] and [a.kind for a in session.pending] == ["image", "volume"]
    assert any((workspace / "sessions" / "s1").iterdir())  # the series was assembled in the session's folder
    app.attach(DemoSession(), [str(uploads[0])], key="s2")  # another session holds the same upload
    app.forget_session("s1")
    assert uploads[0].exists() and not any(p.exists() for p in uploads[1:])
    assert not (workspace / "sessions" / "s1").exists()
    app.forget_session("s2")
    assert not uploads[0].exists()
    assert root_file.exists()
    assert [p for p in workspace.rglob("*") if p.is_file()] == []


def test_the_server_file_list_never_shows_what_is_outside_the_root(tmp_path):
    from hulumed.demo.app import server_files

    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0")
    root = tmp_path / "media"
    (root / "study").mkdir(parents=True)
    (root / "study" / "ct.nii.gz").write_bytes(b"x")
    (root / "etc_link").symlink_to(outside)  # a symlinked folder inside the root
    (root / "passwd_link").symlink_to(outside / "passwd")  # a symlinked file pointing outside
    assert server_files(str(root)) == ["study/ct.nii.gz"]


def test_hulumed_demo_removes_its_files_when_it_stops_and_refuses_big_uploads(tmp_path):
    """`hulumed demo` as a user runs it: uploads go to a private folder (0700) that is gone after SIGTERM; an
    upload over --max-upload-mb is refused."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [sys.executable, "-m", "hulumed", "demo", "--model", str(GOLDEN / "tiny-qwen2"), "--port", str(port),
         "--device", "cpu", "--max-upload-mb", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env)
    try:
        deadline = time.monotonic() + 120
        client = None
        while time.monotonic() < deadline and client is None:
            try:
                client = gradio_client.Client(f"http://127.0.0.1:{port}", verbose=False)
            except Exception:
                time.sleep(1)
        assert client is not None, "the demo did not start"
        [workspace] = [p for p in tmp_path.iterdir() if p.name.startswith("hulumed-demo-")]
        assert (workspace.stat().st_mode & 0o777) == 0o700
        values = client.predict(paths=[gradio_client.handle_file(str(INPUTS / "image_a.png"))], api_name="/attach")
        assert "image_a.png" in values[0]
        assert any(p.is_file() for p in workspace.rglob("*"))  # the upload is kept while the session lives
        with pytest.raises(Exception):  # 60 KB over a 0.05 MB limit
            big = tmp_path / "big.png"
            big.write_bytes((INPUTS / "image_a.png").read_bytes() + b"\0" * 60_000)
            client.predict(paths=[gradio_client.handle_file(str(big))], api_name="/attach")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert not workspace.exists()
    assert tempfile.gettempdir()  # (the test's own temp folder is untouched)

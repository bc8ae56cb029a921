"""Attacks on ``hulumed serve --media-root DIR`` (loopback, tiny checkpoint): file access outside the root,
blocking files, option injection, and request bodies that used to give 500s.

Each case asserts the status, that no file outside the media root was opened (an audit hook records every
``open`` of the test process, where the server thread runs), and that a normal request succeeds right after.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("pydicom")

import hulumed  # noqa: E402
from hulumed.serve.background import serving  # noqa: E402
from hulumed.serve.settings import ServerSettings  # noqa: E402
from tests.conftest import GOLDEN  # noqa: E402
from tests.unit.media_samples import hu_volume, write_series  # noqa: E402

INPUTS = GOLDEN / "inputs"
OPENED: list[str] = []
_WATCH: list[str] = []  # prefix of the outside folder, set by the fixture


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _WATCH and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0]) if not isinstance(args[0], int) else ""
        if path.startswith(_WATCH[0]):
            OPENED.append(path)


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def engine():
    return hulumed.load(GOLDEN / "tiny-qwen2", device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict[str, Path]:
    outside = tmp_path_factory.mktemp("outside")
    root = tmp_path_factory.mktemp("media")
    secret_dir = outside / "series"
    write_series(secret_dir, hu_volume(slices=3), positions=[0.0, 1.0, 2.0])
    secret_png = outside / "secret.png"
    shutil.copy(INPUTS / "image_b.png", secret_png)
    shutil.copy(INPUTS / "volume.nii.gz", outside / "secret.nii.gz")
    (root / "ct.nii.gz").write_bytes((INPUTS / "volume.nii.gz").read_bytes())
    (root / "a.png").write_bytes((INPUTS / "image_a.png").read_bytes())
    (root / "clip.mp4").write_bytes((INPUTS / "video.mp4").read_bytes())
    # a DICOM series folder whose entries are symlinks to files outside the root
    (root / "series_escape").mkdir()
    for k, file in enumerate(sorted(secret_dir.iterdir())):
        os.symlink(file, root / "series_escape" / f"s{k}.dcm")
    # a frames folder with one symlinked frame outside
    frames = root / "frames_escape"
    shutil.copytree(INPUTS / "video_frames", frames)
    os.symlink(secret_png, frames / "zz_frame.png")
    # a symlinked sub-folder pointing outside
    os.symlink(secret_dir, root / "linked_series")
    # a good series folder, for the positive control
    write_series(root / "series_ok", hu_volume(slices=3), positions=[0.0, 1.0, 2.0])
    os.mkfifo(root / "pipe.png")
    os.mkfifo(root / "pipe.nii")
    _WATCH[:] = [str(outside.resolve())]
    return {"root": root, "outside": outside}


@pytest.fixture(scope="module")
def server(engine, tree):
    settings = ServerSettings(model_name="tiny", media_root=tree["root"], max_tokens_limit=16,
                              max_visual_tokens=2000)
    with serving(engine, settings) as url:
        yield url


def _post(url: str, body, timeout: float = 20, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout, **kwargs)


def _media(kind: str, spec: dict) -> dict:
    return {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": kind, kind: spec}, {"type": "text", "text": "Describe."}]}]}


def _still_serving(url: str) -> None:
    ok = _post(url, {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert ok.status_code == 200, ok.text


ATTACKS = {
    # 1. option injection: the loaders must see only the checked url
    "volume image_path injection": ("volume_url", {"url": "ct.nii.gz", "image_path": "{outside}/secret.nii.gz"},
                                    400, "invalid_option"),
    "volume image_path injection, absent file": ("volume_url", {"url": "ct.nii.gz", "image_path": "/no/such.nii.gz"},
                                                 400, "invalid_option"),
    "video video_path injection": ("video_url", {"url": "frames_escape", "video_path": "{outside}/series"},
                                   400, "invalid_option"),
    "unknown volume option": ("volume_url", {"url": "ct.nii.gz", "bogus": 1}, 400, "invalid_option"),
    "unknown video option": ("video_url", {"url": "a.png", "bogus": 1}, 400, "invalid_option"),
    # existence oracle: absent and present outside paths get the same answer
    "outside path that exists": ("image_url", {"url": "{outside}/secret.png"}, 403, "path_outside_media_root"),
    "outside path that does not exist": ("image_url", {"url": "{outside}/none.png"}, 403, "path_outside_media_root"),
    "outside file:// URL": ("image_url", {"url": "file://{outside}/secret.png"}, 403, "path_outside_media_root"),
    # 2. symlink escapes through folders
    "series folder of symlinks outside": ("volume_url", {"url": "series_escape"}, 403, "path_outside_media_root"),
    "frames folder with a symlink outside": ("video_url", {"url": "frames_escape"}, 403, "path_outside_media_root"),
    "symlinked folder outside": ("volume_url", {"url": "linked_series"}, 403, "path_outside_media_root"),
    # 3. FIFOs never block a request
    "FIFO as image": ("image_url", {"url": "pipe.png"}, 400, "invalid_media"),
    "FIFO as volume": ("volume_url", {"url": "pipe.nii"}, 400, "invalid_media"),
    # 4. the root itself, and folders where a file is needed
    "media root as volume": ("volume_url", {"url": "."}, 400, "folder_not_allowed"),
    "media root by absolute path": ("volume_url", {"url": "{root}"}, 400, "folder_not_allowed"),
    "media root as video": ("video_url", {"url": "{root}/"}, 400, "folder_not_allowed"),
    "folder as image": ("image_url", {"url": "series_ok"}, 400, "folder_not_allowed"),
    # 9. NUL bytes
    "NUL byte in a path": ("image_url", {"url": "a.png\u0000.txt"}, 400, "invalid_path"),
    "NUL byte in a file:// URL": ("volume_url", {"url": "file:///etc/passwd%00.nii"}, 400, "invalid_path"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_file_access_attacks_are_refused(server, tree, name):
    kind, spec, status, code = ATTACKS[name]
    spec = {k: v.format(outside=tree["outside"], root=tree["root"]) if isinstance(v, str) else v
            for k, v in spec.items()}
    OPENED.clear()
    reply = _post(server, _media(kind, spec))
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == code
    assert str(tree["outside"]) not in reply.text and "passwd" not in reply.text
    assert OPENED == []
    _still_serving(server)


def test_allowed_folders_and_files_still_work(server, tree):
    for kind, url in (("volume_url", "series_ok"), ("video_url", "clip.mp4"),
                      ("volume_url", "ct.nii.gz"), ("image_url", "a.png")):
        reply = _post(server, _media(kind, {"url": url}), timeout=60)
        assert reply.status_code == 200, (kind, url, reply.text)


def test_fifo_does_not_hold_a_slot(engine, tree):
    settings = ServerSettings(model_name="tiny", media_root=tree["root"], max_queue=1, max_tokens_limit=4)
    with serving(engine, settings) as url:
        results = []
        worker = threading.Thread(target=lambda: results.append(_post(url, _media("image_url", {"url": "pipe.png"}))))
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive() and results[0].status_code == 400
        assert httpx.get(f"{url}/health").json()["in_flight"] == 0
        _still_serving(url)


def test_loader_guard_refuses_fifo_and_outside_links(tree):
    from hulumed.errors import MediaAccessError, MediaError
    from hulumed.processing import safe_files

    with pytest.raises(MediaError, match="not a regular file"):
        safe_files.regular_file(tree["root"] / "pipe.png")
    with pytest.raises(MediaError, match="not a regular file"):
        safe_files.open_regular(tree["root"] / "pipe.png")
    with pytest.raises(MediaAccessError):
        safe_files.folder_files(tree["root"] / "series_escape", root=tree["root"], recursive=True)
    with pytest.raises(MediaError):  # a FIFO among frames is an error, among series files it is skipped
        safe_files.folder_files(tree["root"], recursive=False)
    files = safe_files.folder_files(tree["root"] / "series_ok", root=tree["root"], recursive=True)
    assert len(files) == 3 and all(np.char.endswith(str(f), ".dcm") for f in files)

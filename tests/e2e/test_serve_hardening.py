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
import time
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


def _hi(**extra) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra}


def _raw(text: str) -> bytes:
    return text.encode()


RAW_BAD = {
    "lone surrogate in text": _raw('{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", '
                                   '"content": "a\\ud800b"}]}'),
    "lone surrogate in a text part": _raw('{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", '
                                          '"content": [{"type": "text", "text": "\\udfff"}]}]}'),
    "lone surrogate, streamed": _raw('{"model": "tiny", "max_tokens": 2, "stream": true, "messages": '
                                     '[{"role": "user", "content": "\\ud800"}]}'),
    "lone surrogate in a media url": _raw('{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", '
                                          '"content": [{"type": "image_url", "image_url": '
                                          '{"url": "a\\ud800.png"}}]}]}'),
    "deep arrays in an ignored field": _raw('{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", '
                                            '"content": "hi"}], "junk": ' + "[" * 10_000 + "]" * 10_000 + "}"),
    "deep objects in an ignored field": _raw('{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", '
                                             '"content": "hi"}], "junk": ' + '{"a":' * 10_000 + "1" + "}" * 10_000
                                             + "}"),
    "deep arrays in content": _raw('{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", '
                                   '"content": [{"type": "text", "text": "x", "y": ' + "[" * 10_000 + "]" * 10_000
                                   + "}]}]}"),
    "5000-digit max_tokens": _raw('{"model": "tiny", "max_tokens": ' + "9" * 5000 + ', "messages": '
                                  '[{"role": "user", "content": "hi"}]}'),
    "5000-digit seed": _raw('{"model": "tiny", "max_tokens": 2, "seed": ' + "9" * 5000 + ', "messages": '
                            '[{"role": "user", "content": "hi"}]}'),
    "4000-digit seed": _raw('{"model": "tiny", "max_tokens": 2, "seed": ' + "9" * 4000 + ', "messages": '
                            '[{"role": "user", "content": "hi"}]}'),
    "NUL byte in text": _raw('{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", '
                             '"content": "a\\u0000b"}]}'),
}
JSON_BAD = {
    "tiny repetition_penalty with sampling": _hi(repetition_penalty=1e-300, temperature=0.7),
    "huge repetition_penalty with sampling": _hi(repetition_penalty=1e300, temperature=0.7),
    "tiny temperature": _hi(temperature=1e-300),
    "huge top_k": _hi(top_k=10**30, temperature=0.7),
    "negative huge seed": _hi(seed=-(10**30)),
}


@pytest.mark.parametrize("name", sorted(RAW_BAD) + sorted(JSON_BAD))
def test_malformed_requests_are_4xx_not_500(server, name):
    if name in RAW_BAD:
        reply = httpx.post(f"{server}/v1/chat/completions", content=RAW_BAD[name], timeout=30,
                           headers={"content-type": "application/json"})
    else:
        reply = _post(server, JSON_BAD[name])
    if name in ("NUL byte in text", "tiny temperature"):
        assert reply.status_code == 200, reply.text  # harmless: NUL is text, temperature ~0 is greedy (as vLLM)
    else:
        assert 400 <= reply.status_code < 500, reply.text
        assert reply.json()["error"]["message"] and "Traceback" not in reply.text
    _still_serving(server)


def _timed_post(url: str, body: dict, limit_s: float) -> httpx.Response:
    import time

    began = time.monotonic()
    reply = _post(url, body, timeout=limit_s + 30)
    assert time.monotonic() - began < limit_s, f"took {time.monotonic() - began:.1f} s"
    return reply


def test_huge_prompts_and_stop_lists_are_refused_quickly(server):
    megabyte = "lorem ipsum dolor sit amet " * (2**20 // 27)
    one_part = {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": megabyte}]}
    many_parts = {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "text", "text": megabyte[:1024]}] * 1024}]}
    for body in (one_part, many_parts):
        reply = _timed_post(server, body, 10)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "prompt_too_long", reply.text
    stops = _timed_post(server, _hi(stop=[f"s{i}" for i in range(10_000)]), 10)
    assert stops.status_code == 400 and stops.json()["error"]["code"] == "invalid_stop"
    long_stop = _timed_post(server, _hi(stop=["x" * 10_000]), 10)
    assert long_stop.status_code == 400
    _timed_post(server, _hi(), 10)


def test_unfinished_uploads_hold_no_slot_and_time_out(engine):
    import socket
    import time

    settings = ServerSettings(model_name="tiny", max_queue=4, body_timeout_s=2.0, max_tokens_limit=4)
    with serving(engine, settings) as url:
        host, port = url.removeprefix("http://").split(":")
        sockets = []
        try:
            for _ in range(12):  # three times the queue, each stuck half way through its body
                sock = socket.create_connection((host, int(port)), timeout=10)
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000\r\n\r\n{\"model\": \"tiny\", ")
                sockets.append(sock)
            time.sleep(0.3)
            ok = _post(url, _hi())
            assert ok.status_code == 200, ok.text
            sockets[0].settimeout(10)
            answer = sockets[0].recv(4096).decode(errors="replace")  # the deadline passes: 408
            assert answer.startswith("HTTP/1.1 408"), answer[:200]
        finally:
            for sock in sockets:
                sock.close()
        assert httpx.get(f"{url}/health").json()["in_flight"] == 0
        _still_serving(url)


def test_trickling_remote_fetch_hits_a_total_deadline(engine):
    import http.server
    import time

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    remote = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=remote.serve_forever, daemon=True).start()
    try:
        settings = ServerSettings(model_name="tiny", allow_remote_media=True, remote_timeout_s=1.0,
                                  max_tokens_limit=4)
        with serving(engine, settings) as url:
            began = time.monotonic()
            reply = _post(url, _media("image_url", {"url": f"http://127.0.0.1:{remote.server_port}/x.png"}))
            assert time.monotonic() - began < 5
            assert reply.status_code == 408 and reply.json()["error"]["code"] == "remote_fetch_timeout"
            _still_serving(url)
    finally:
        remote.shutdown()


BAD = Path(__file__).resolve().parents[1] / "fixtures" / "bad"


def _data(path: Path, media_type: str) -> str:
    import base64

    return f"data:{media_type};base64," + base64.b64encode(path.read_bytes()).decode()


def test_bombs_over_http_are_refused_and_the_server_keeps_serving(server, tree):
    frames = tree["root"] / "frames_huge"
    frames.mkdir(exist_ok=True)
    shutil.copy(INPUTS / "video_frames" / "frame_000.png", frames / "a.png")
    shutil.copy(BAD / "img_bomb.png", frames / "b.png")  # header: 60000 x 60000
    cases = [
        ("volume_url", {"url": _data(BAD / "nii_declares_8gb.nii.gz", "application/gzip")}, 400),
        ("volume_url", {"url": _data(BAD / "nii_huge_slice.nii.gz", "application/gzip")}, 400),
        ("volume_url", {"url": _data(BAD / "dcm_huge_frame.dcm", "application/dicom")}, 400),
        ("video_url", {"url": _data(BAD / "vid_gif_huge_canvas.gif", "image/gif")}, 413),
        ("video_url", {"url": "frames_huge"}, 413),
        ("image_url", {"url": _data(BAD / "img_bomb.png", "image/png")}, 413),
    ]
    for kind, spec, status in cases:
        for stream in (False, True):
            reply = _post(server, {**_media(kind, spec), "stream": stream})
            assert reply.status_code == status, (kind, stream, reply.text[:300])
            assert "Traceback" not in reply.text
    _still_serving(server)


def test_media_errors_never_show_server_paths(server, tree):
    """Every bad-media answer names the part relative to the media root (or by its part file), never the server's
    folders: local files, data: URIs (written to the request's scratch folder) and folders, streamed and not."""
    import tempfile

    bad = tree["root"] / "bad"
    bad.mkdir(exist_ok=True)
    for name in ("img_truncated.png", "nii_garbage.nii", "nii_nan.nii.gz", "vid_truncated.mkv", "dcm_random.dcm"):
        shutil.copy(BAD / name, bad / name)
    kinds = {"png": "image_url", "nii": "volume_url", "gz": "volume_url", "mkv": "video_url", "dcm": "volume_url"}
    forbidden = [str(tree["root"]), str(tree["root"].resolve()), tempfile.gettempdir(), "hulumed-req-"]
    answered = 0
    for file in sorted(bad.iterdir()):
        kind = kinds[file.name.rsplit(".", 1)[-1]]
        for url in (f"bad/{file.name}", _data(file, "application/octet-stream")):
            for stream in (False, True):
                reply = _post(server, {**_media(kind, {"url": url}), "stream": stream})
                text = reply.text
                assert reply.status_code in (200, 400, 413) and "Traceback" not in text, text[:300]
                if reply.status_code != 200 or "error" in text:
                    answered += 1
                    assert not any(f in text for f in forbidden), text[:500]
    assert answered >= 10  # the bad files really were refused
    _still_serving(server)


def test_the_key_guards_every_route_but_the_open_ones(engine, tree):
    """With an API key: /openapi.json and the API need it; /health and /metrics answer without it by default
    (a setting: open_routes), and with open_routes="" they need it too."""
    key = {"Authorization": "Bearer s3cret"}
    with serving(engine, ServerSettings(model_name="tiny", api_key="s3cret")) as url:
        assert httpx.get(f"{url}/openapi.json", timeout=10).status_code == 401
        assert httpx.get(f"{url}/openapi.json", headers=key, timeout=10).json()["info"]["title"] == "hulumed"
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cres"}, timeout=10).status_code == 401
    with serving(engine, ServerSettings(model_name="tiny", api_key="s3cret", open_routes="")) as url:
        assert httpx.get(f"{url}/health", timeout=10).status_code == 401
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
        assert httpx.get(f"{url}/health", headers=key, timeout=10).status_code == 200
    with serving(engine, ServerSettings(model_name="tiny")) as url:  # no key: nothing to guard
        assert httpx.get(f"{url}/openapi.json", timeout=10).status_code == 200


def test_a_file_swapped_for_an_outside_symlink_during_requests_is_never_read(server, tree):
    """A writer keeps swapping root/race.png between a real image and a symlink to an outside file while requests
    name it: every answer comes from the file inside the root (the server reads what it opened and checked; the
    outside image has another size, so another visual-token count). Bounded: 24 requests, 4 at a time, the
    swapper stops after them."""
    import concurrent.futures

    race = tree["root"] / "race.png"
    real = tree["root"] / ".race_real.png"
    link = tree["root"] / ".race_link.png"
    shutil.copy(INPUTS / "image_a.png", race)
    stop = threading.Event()

    def swap() -> None:
        # each state is held a moment, so requests meet both (without the pauses the copy step dominates and on
        # a loaded machine every request can meet the symlink, leaving nothing answered to check)
        while not stop.is_set():
            shutil.copy(INPUTS / "image_a.png", real)
            os.replace(real, race)
            time.sleep(0.002)
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(tree["outside"] / "secret.png", link)
            os.replace(link, race)
            time.sleep(0.002)

    OPENED.clear()
    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: _post(server, _media("image_url", {"url": "race.png"}), timeout=60),
                                    range(24)))
    finally:
        stop.set()
        swapper.join(timeout=10)
    # refused (403 outside the root; 400 when the entry changed between the checks) or answered from inside
    assert all(r.status_code == 200 or r.json()["error"]["code"] in ("path_outside_media_root", "invalid_path")
               for r in replies), [r.text[:200] for r in replies]
    inside = _post(server, _media("image_url", {"url": "a.png"})).json()["usage"]["prompt_tokens_details"]
    answered = [r.json()["usage"]["prompt_tokens_details"] for r in replies if r.status_code == 200]
    assert answered and all(u == inside for u in answered), answered  # image_a's tokens; the secret has other ones
    assert OPENED == []  # the outside file was never opened by its own name either
    _still_serving(server)

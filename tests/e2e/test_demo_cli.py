"""``hulumed demo`` as a command: it serves the page on loopback, refuses bad flags in one line, imports lazily."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import GOLDEN

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def test_cli_does_not_import_gradio():
    code = "import sys, hulumed.cli; hulumed.cli.build_parser(); print('gradio' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


def test_bad_media_root_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hulumed", "demo", "--model", str(GOLDEN / "tiny-qwen2"),
                           "--media-root", str(tmp_path / "missing")], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == f"hulumed demo: error: --media-root {tmp_path / 'missing'} is not a folder"


def test_demo_serves_the_page_on_loopback(tmp_path):
    pytest.importorskip("gradio")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "hulumed", "demo", "--model", str(GOLDEN / "tiny-qwen2"), "--port", str(port),
         "--media-root", str(GOLDEN / "inputs"), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
    )
    try:
        deadline, page = time.monotonic() + 120, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert page is not None and page.status_code == 200, process.stdout.read() if process.poll() else "timeout"
        assert "Hulu-Med demo" in httpx.get(f"http://127.0.0.1:{port}/config", timeout=5).text
    finally:
        process.terminate()
        process.wait(timeout=30)

"""The end-to-end examples of docs/media.md run as written, on media made here and the tiny checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hulumed.processing import WINDOW_PRESETS
from tests.unit.media_samples import hu_volume, write_clip, write_series

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "media.md").read_text()
GOLDEN = ROOT / "tests" / "fixtures" / "golden"


def _block(marker: str) -> str:
    match = re.search(re.escape(f"<!-- example: {marker} -->") + r"\s*```python\n(.*?)```", DOC, re.S)
    assert match, f"docs/media.md lost its {marker} example"
    return match.group(1)


def _run(code: str, replacements: dict[str, str]) -> None:
    defaults = {'"ZJU-AI4H/Hulu-Med-7B"': repr(str(GOLDEN / "tiny-qwen2")), "max_new_tokens=256": "max_new_tokens=3"}
    for old, new in {**defaults, **replacements}.items():
        assert old in code, old
        code = code.replace(old, new)
    exec(compile(code, "docs/media.md", "exec"), {})  # noqa: S102 - our own docs


def test_dicom_ct_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("pydicom")
    write_series(tmp_path / "ct", hu_volume(rows=30, columns=30, slices=5), [0, 2, 4, 6, 8])
    _run(_block("dicom-ct"), {'"ct_series/"': repr(str(tmp_path / "ct"))})
    assert capsys.readouterr().out.strip()


def test_video_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("av")
    clip = write_clip(tmp_path / "clip.mp4", 12, 4)
    _run(_block("video"), {'"clip.mp4"': repr(str(clip))})
    assert capsys.readouterr().out.strip()


def test_every_window_preset_is_documented():
    for name, window in WINDOW_PRESETS.items():
        assert re.search(rf"`{name}` \| {window.center:g} \| {window.width:g}", DOC), name
    assert "`ct_rgb`" in DOC

"""``O/summary.md`` and the ``O/summary.png`` bar chart from hand-written ``metrics.json`` files (no model)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from hulumed.eval.runner import summary_table, write_chart, write_summary

ROWS = [
    {"benchmark": "VQA_RAD", "benchmark_version": "1", "scoring": "fixed", "count": 10, "unparsable": 1,
     "accuracy": 0.6, "metrics": {"bleu1": 0.25, "rougel": 0.5}},
    {"benchmark": "MedQA_USMLE", "benchmark_version": "1", "scoring": "fixed", "count": 8, "unparsable": 0,
     "accuracy": 0.875, "metrics": {}},
    {"benchmark": "PMC_VQA", "benchmark_version": "1", "scoring": "upstream", "count": 4, "unparsable": 2,
     "accuracy": 0.25, "metrics": {}},
    {"benchmark": "IU_XRAY", "benchmark_version": "1", "scoring": "fixed", "count": 3, "unparsable": 0,
     "metrics": {"bleu1": 0.3, "rougel": 0.4}},  # report: no accuracy, no bar
]


def _write(output: Path, rows: list[dict]) -> None:
    for row in rows:
        folder = output / row["benchmark"]
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(row))


def test_summary_table_rows(tmp_path: Path) -> None:
    _write(tmp_path, ROWS)
    table = summary_table(tmp_path)
    assert "| VQA_RAD | 1 | fixed | 10 | 60.0 | 78.0 | 76.1 | 81.4 | 1 | 25.0 | 50.0 |" in table
    assert "| IU_XRAY | 1 | fixed | 3 | – | – | – | – | 0 | 30.0 | 40.0 |" in table


def test_summary_png_is_a_bar_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    _write(tmp_path, ROWS)
    assert write_summary(tmp_path) == tmp_path / "summary.md"
    png = tmp_path / "summary.png"
    data = png.read_bytes()
    assert len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 200
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.size == (width, height)
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    # tab:blue (#1f77b4) bars: three separate runs of blue columns along a row near the bottom of the bars
    blue = (np.abs(pixels - [31, 119, 180]) < 8).all(axis=-1)
    rows_with_blue = np.flatnonzero(blue.any(axis=1))
    assert rows_with_blue.size > 50
    row = blue[rows_with_blue[-1] - 2]
    starts = np.flatnonzero(row[1:] & ~row[:-1]) + 1
    assert len(starts) + int(row[0]) == 3


def test_no_chart_without_accuracies(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    _write(tmp_path, ROWS[3:])
    assert write_chart(tmp_path) is None and not (tmp_path / "summary.png").exists()
    assert (write_summary(tmp_path)).exists()

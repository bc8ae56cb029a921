"""Reading a benchmark's public release from disk: rows from parquet, JSON, JSONL or CSV files.

``find_files(root, split)`` finds the files of one split the way the hub lays them out (``data/test-*.parquet``,
``test.json``, ``test_2.csv``…); ``read_rows(path)`` turns one file into a list of dicts. Parquet needs
``pyarrow`` (``pip install 'hulumed[eval]'``); the error says so when it is missing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ..errors import DataError

EXTENSIONS = (".parquet", ".jsonl", ".json", ".csv")


def find_files(root: Path, split: str | None = None, names: tuple[str, ...] = ()) -> list[Path]:
    """Data files under ``root``: those named in ``names`` if any exist, else every data file whose name starts
    with ``split`` (hub parquet shards ``test-00000-of-00001.parquet`` included), sorted."""
    if not root.is_dir():
        raise DataError(f"{root} does not exist; download the benchmark there (see `hulumed eval --list`)")
    for name in names:
        if (root / name).is_file():
            return [root / name]
    found = sorted(
        path for path in root.rglob("*")
        if path.is_file() and path.suffix in EXTENSIONS and (split is None or path.name.startswith(split))
    )
    if not found:
        wanted = f"{', '.join(names)} or " if names else ""
        raise DataError(f"no {wanted}{split or ''}*{{{','.join(EXTENSIONS)}}} file under {root}")
    return found


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All rows of one parquet / JSON (a list, or {"data": [...]}) / JSONL / CSV file."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as error:
            raise DataError(f"{path} is parquet, which needs pyarrow: pip install 'hulumed[eval]'") from error
        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of rows")
        return data
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    raise DataError(f"{path}: unsupported file type (use one of {EXTENSIONS})")


def read_split(root: Path, split: str | None = None, names: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The rows of every file of one split, in file order."""
    return [row for path in find_files(root, split, names) for row in read_rows(path)]

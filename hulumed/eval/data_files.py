"""Reading a benchmark's public release from disk: which files, which folder, which zip, and their rows.

* ``find_files(root, patterns)``: one discovery rule per release. ``patterns`` are globs relative to the
  release folder, tried in order; the first that matches anything wins (``("phrases_no_exclude_test.jsonl",
  "test.jsonl", "data/test-*.parquet")``). Nothing else is read, so a train file beside the test file is ignored.
  ``split_patterns("test")`` is the hub's layout of one split (``data/test-*.parquet``, ``test.jsonl``…).
* ``release_folder(data_dir, names)``: ``D/<name>`` for the first of ``names`` (registry name, upstream's folder
  name, hub repo name) that exists, compared case-insensitively and ignoring ``-``/``_``.
* ``media_folder(root, folder, archive)``: a media folder the release ships zipped (SLAKE ``imgs.zip``…), extracted
  on first use beside the zip, or into ``$HULUMED_CACHE/eval`` (default ``~/.cache/hulumed/eval``) when the
  release folder is read-only.
* ``read_rows(path)``: one parquet / JSON / JSONL / CSV file as a list of dicts. Parquet needs ``pyarrow``
  (``pip install 'hulumed[eval]'``); the error says so when it is missing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError

EXTENSIONS = (".parquet", ".jsonl", ".json", ".csv")


def split_patterns(split: str) -> tuple[str, ...]:
    """The hub's layouts of one split: parquet shards (``data/`` or top level), then JSONL / JSON / CSV files."""
    return (f"data/{split}-*.parquet", f"{split}-*.parquet", f"data/{split}.jsonl", f"{split}.jsonl",
            f"data/{split}.json", f"{split}.json", f"{split}.csv")


def find_files(root: Path, patterns: Sequence[str]) -> list[Path]:
    """The files of the first pattern (a glob relative to ``root``) that matches any data file, sorted."""
    if not root.is_dir():
        raise DataError(f"{root} does not exist; download the benchmark there (see `hulumed eval --list`)")
    for pattern in patterns:
        found = sorted(p for p in root.glob(pattern) if p.is_file() and p.name.endswith(EXTENSIONS))
        if found:
            return found
    raise DataError(f"{root}: none of {', '.join(patterns)} found (see `hulumed eval --list` and docs/eval.md)")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All rows of one parquet / JSON (a list, or {"data": [...]}) / JSONL / CSV file."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as error:
            raise DataError(f"{path} is parquet, which needs pyarrow: pip install 'hulumed[eval]'") from error
        return pq.read_table(path).to_pylist()
    try:
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
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from error
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    raise DataError(f"{path}: unsupported file type (use one of {EXTENSIONS})")


def read_release(root: Path, patterns: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of every file the discovery rule finds, in file order."""
    return [row for path in find_files(root, patterns) for row in read_rows(path)]


def folder_key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def release_folder(data_dir: Path, names: Sequence[str]) -> Path:
    """``data_dir/<name>`` for the first of ``names`` present (case, '-' and '_' ignored); an error names them all."""
    if not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} does not exist")
    present = {folder_key(p.name): p for p in sorted(data_dir.iterdir()) if p.is_dir()}
    for name in names:
        exact = data_dir / name
        if exact.is_dir():
            return exact
        if folder_key(name) in present:
            return present[folder_key(name)]
    raise DataError(f"no folder {' / '.join(dict.fromkeys(names))} under {data_dir}; download the benchmark there "
                    "(see `hulumed eval --list` and docs/eval.md)")


def cache_root() -> Path:
    """Where extracted zips of read-only releases and converted volumes go: ``$HULUMED_CACHE/eval``."""
    return Path(os.environ.get("HULUMED_CACHE", Path.home() / ".cache" / "hulumed")) / "eval"


def _extract(archive: Path, destination: Path, folder: str) -> Path:
    """Unzip ``archive`` so that ``destination/folder`` holds its content (a single top folder is unwrapped)."""
    staging = destination / f".{folder}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    print(f"extracting {archive} (first use) into {destination / folder} ...", file=sys.stderr, flush=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(staging)
    except (zipfile.BadZipFile, OSError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"{archive} could not be extracted ({error}); download it again") from error
    entries = [p for p in staging.iterdir() if p.name != "__MACOSX"]
    source = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
    os.replace(source, destination / folder)
    shutil.rmtree(staging, ignore_errors=True)
    return destination / folder


def media_folder(root: Path, folder: str, archive: str | None = None) -> Path:
    """``root/folder``; if absent and ``root/archive`` exists, the archive extracted on first use (beside it, or
    into the cache when ``root`` is read-only). Raises a ``DataError`` naming both when neither is there."""
    target = root / folder
    if target.is_dir():
        return target
    if archive is None or not (root / archive).is_file():
        wanted = f"{target}/ (or {root / archive} to extract)" if archive else f"{target}/"
        raise DataError(f"{wanted} not found; see docs/eval.md for what to download and extract")
    zipped = root / archive
    if os.access(root, os.W_OK):
        return _extract(zipped, root, folder)
    digest = hashlib.sha256(str(zipped.resolve()).encode()).hexdigest()[:12]
    cached = cache_root() / f"{root.name}-{digest}"
    if (cached / folder).is_dir():
        return cached / folder
    cached.mkdir(parents=True, exist_ok=True)
    return _extract(zipped, cached, folder)


def confine_media(name: str, folder: Path, samples: Sequence[Any]) -> None:
    """Refuse a release whose rows name media outside its own folder (or its extraction cache), before anything is
    read or sent: an absolute path, a ``../`` path or a symlink out of the release would otherwise be read and
    uploaded to the evaluation endpoint. Paths are resolved (symlinks followed) before they are compared."""
    roots = [folder.resolve(), cache_root().resolve()]
    outside = []
    for sample in samples:
        for path in sample.media_paths():
            try:
                real = Path(path).resolve()
            except (OSError, RuntimeError):
                outside.append(path)
                continue
            if not any(real == root or root in real.parents for root in roots):
                outside.append(path)
    if outside:
        raise DataError(
            f"{name}: {len(outside)} media path(s) named by the release point outside its folder {folder} (e.g. "
            f"{outside[0]!r}); a release may only show files inside it, so nothing was read or sent. Check where "
            "the release came from."
        )

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
  (``pip install 'hulumed[eval]'``); the error says so when it is missing. A release is untrusted input: a row
  that is not an object, a JSONL line that is malformed, nested 100,000 deep, over 16 MiB or holds a lone
  surrogate, a CSV field over ``MAX_CSV_FIELD`` — each is skipped and reported to ``collect_row_errors`` (the
  runner writes them to ``errors.jsonl``), the other rows are read.
* Zips are extracted bounded (``check_archive``): at most ``MAX_ARCHIVE_BYTES`` in all, ``MAX_MEMBER_BYTES`` per
  member, members that inflate over ``MAX_RATIO`` times their compressed size are refused (a bomb), and the
  declared total must fit the free disk — all checked from the zip directory before anything is written.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import hashlib
import os
import shutil
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..json_input import check_value, loads, read_lines

EXTENSIONS = (".parquet", ".jsonl", ".json", ".csv")
MAX_CSV_FIELD = 16 * 2**20  # one CSV cell (a long question with options is kilobytes)
MAX_JSON_BYTES = 1 * 2**30  # a .json release file is parsed whole
MAX_ARCHIVE_BYTES = 200 * 2**30  # what one release zip may inflate to in all
MAX_MEMBER_BYTES = 8 * 2**30  # one member (an image, a video, a volume)
MAX_RATIO = 200  # inflated / compressed size of one member over 1 MiB (images barely compress; bombs are ~1000x)
MAX_MEMBERS = 2_000_000

_ROW_ERRORS: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar("row_errors", default=None)


@contextlib.contextmanager
def collect_row_errors() -> Iterator[list[dict[str, Any]]]:
    """Within the block, rows ``read_rows`` skips are appended to the yielded list as ``{"file", "row", "error"}``
    (outside any block they are printed to stderr)."""
    errors: list[dict[str, Any]] = []
    token = _ROW_ERRORS.set(errors)
    try:
        yield errors
    finally:
        _ROW_ERRORS.reset(token)


def _bad_row(path: Path, row: int, error: str) -> None:
    errors = _ROW_ERRORS.get()
    if errors is None:
        print(f"hulumed eval: skipped {path} row {row}: {error}", file=sys.stderr)
    else:
        errors.append({"file": str(path), "row": row, "error": error})


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
    """The rows (objects) of one parquet / JSON (a list, or {"data": [...]}) / JSONL / CSV file; bad rows are
    skipped and reported (``collect_row_errors``)."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as error:
            raise DataError(f"{path} is parquet, which needs pyarrow: pip install 'hulumed[eval]'") from error
        try:
            return _objects(path, pq.read_table(path).to_pylist())
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"{path}: not a readable parquet file ({str(error)[:200]})") from None
    if path.suffix == ".jsonl":
        rows = []
        for number, line in read_lines(path):
            if isinstance(line, str) and not line.strip():
                continue
            try:
                if isinstance(line, DataError):
                    raise line
                rows.append((number, loads(line, where=f"{path}:{number}")))
            except DataError as error:
                _bad_row(path, number, str(error).removeprefix(f"{path}:{number}: "))
        return [row for number, row in rows if _is_object(path, number, row)]
    if path.suffix == ".json":
        if path.stat().st_size > MAX_JSON_BYTES:
            raise DataError(f"{path} is over {MAX_JSON_BYTES // 2**30} GiB; not read")
        try:
            data = loads(path.read_bytes(), where=str(path))
        except DataError as error:
            if "surrogate" not in str(error) and "too deeply" not in str(error):
                raise DataError(f"{path}: not valid JSON ({str(error).removeprefix(f'{path}: ')})") from None
            data = _json_rows_one_by_one(path)  # one bad row: keep the others
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of rows")
        return _objects(path, data)
    if path.suffix == ".csv":
        return _csv_rows(path)
    raise DataError(f"{path}: unsupported file type (use one of {EXTENSIONS})")


def _is_object(path: Path, number: int, row: Any) -> bool:
    if isinstance(row, dict):
        return True
    _bad_row(path, number, f"a row must be an object, not {type(row).__name__}")
    return False


def _objects(path: Path, rows: list[Any]) -> list[dict[str, Any]]:
    return [row for number, row in enumerate(rows, start=1) if _is_object(path, number, row)]


def _json_rows_one_by_one(path: Path) -> list[Any]:
    """A JSON list whose whole-file check failed: each element parsed and checked alone (1-based element numbers)."""
    import json

    try:
        data = json.loads(path.read_bytes())
    except (RecursionError, ValueError) as error:
        raise DataError(f"{path}: unreadable JSON ({type(error).__name__})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of rows")
    kept = []
    for number, row in enumerate(data, start=1):
        try:
            check_value(row, "row")
            kept.append(row)
        except DataError as error:
            _bad_row(path, number, str(error).removeprefix("row: "))
            kept.append(None)  # keeps the numbering of the rows after it; dropped as not an object
    return kept


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    csv.field_size_limit(MAX_CSV_FIELD)
    rows = []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return rows
                except csv.Error as error:
                    _bad_row(path, reader.line_num, f"{error} (a CSV field is at most {MAX_CSV_FIELD // 2**20} MiB)")
                    continue
                rows.append(row)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 (byte {error.start})") from None


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
            check_archive(archive, bundle, destination)
            bundle.extractall(staging)
    except DataError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, NotImplementedError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"{archive} could not be extracted ({error}); download it again") from error
    entries = [p for p in staging.iterdir() if p.name != "__MACOSX"]
    source = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
    os.replace(source, destination / folder)
    shutil.rmtree(staging, ignore_errors=True)
    return destination / folder


def check_archive(archive: Path, bundle: zipfile.ZipFile, destination: Path) -> None:
    """Refuse (``DataError``) a zip whose directory declares a bomb: too many members, a member over
    ``MAX_MEMBER_BYTES`` or inflating over ``MAX_RATIO`` times, a total over ``MAX_ARCHIVE_BYTES`` or over the free
    disk at ``destination``. zipfile never writes more than a member's declared size (it checks size and CRC)."""
    members = bundle.infolist()
    if len(members) > MAX_MEMBERS:
        raise DataError(f"{archive} has {len(members):,} members (over {MAX_MEMBERS:,}); not extracted")
    total = 0
    for member in members:
        total += member.file_size
        if member.file_size > MAX_MEMBER_BYTES:
            raise DataError(f"{archive}: member {member.filename[:200]} inflates to {member.file_size:,} bytes (over "
                            f"{MAX_MEMBER_BYTES // 2**30} GiB); not extracted")
        if member.file_size > 2**20 and member.file_size > MAX_RATIO * max(member.compress_size, 1):
            raise DataError(f"{archive}: member {member.filename[:200]} inflates {member.file_size:,} bytes from "
                            f"{member.compress_size:,} (over {MAX_RATIO}x: a decompression bomb); not extracted")
    if total > MAX_ARCHIVE_BYTES:
        raise DataError(f"{archive} inflates to {total:,} bytes (over {MAX_ARCHIVE_BYTES // 2**30} GiB); not "
                        "extracted")
    free = shutil.disk_usage(destination).free
    if total > free:
        raise DataError(f"{archive} inflates to {total:,} bytes but {destination} has {free:,} free; not extracted")


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

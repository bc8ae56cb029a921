"""Opening media files safely: only regular files, folders walked without following links out, an optional root.

Every path the media loaders and the server's media rules open goes through here:

* `regular_file(path, root)`: the path (after following symlinks) must be a regular file -- never a FIFO,
  socket or device, which would hang or stream forever -- and, with a `root`, must resolve inside it.
* `folder_files(folder, root, recursive)`: the files of a frame folder (sorted `os.listdir`, upstream's order)
  or of a DICOM series folder (`os.walk`, symlinked sub-folders not followed); every entry is checked with
  `regular_file` (a FIFO among DICOM files is skipped, among frames it is an error), at most `MAX_FILES`.
* `open_regular(path)`: opens without blocking on a FIFO swapped in after the check (`O_NONBLOCK`), and checks
  the opened descriptor is a regular file.
* `read_capped(stream, cap, name)`: reads a (decompressing) stream in blocks and stops with a `MediaError`
  as soon as more than `cap` bytes come out, so a small archive cannot inflate into gigabytes.

Refusals are `MediaError`; a path that leaves the root is a `MediaAccessError` (the server answers 403).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from hulumed.errors import MediaAccessError, MediaError

PathLike = str | os.PathLike

MAX_FILES = 20_000  # files looked at in one folder
BLOCK = 1 << 20  # bytes read per step by read_capped


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def regular_file(path: PathLike, root: Path | None = None, name: str | None = None) -> Path:
    """`path` resolved; a `MediaError` unless it is a regular file (and, with `root`, inside the resolved root)."""
    path = Path(path)
    label = name or str(path)
    if "\x00" in str(path):
        raise MediaError("A media path must not contain a NUL byte.")
    try:
        resolved = path.resolve(strict=True)
        mode = resolved.stat().st_mode
    except (OSError, RuntimeError, ValueError) as err:
        raise MediaError(f"{label} does not exist or cannot be read ({type(err).__name__}).") from err
    if root is not None and not _inside(resolved, root.resolve()):
        raise MediaAccessError(f"{label} resolves outside the media root.")
    if not stat.S_ISREG(mode):
        raise MediaError(f"{label} is not a regular file (a folder, pipe, socket or device); pass a file.")
    return resolved


def folder_files(folder: PathLike, root: Path | None = None, recursive: bool = False) -> list[Path]:
    """The files of `folder`: sorted entries (not `recursive`) or every file below it in sorted path order.

    Non-recursive: every entry must be a regular file (a frame folder; upstream loads every entry). Recursive:
    sub-folders are walked (symlinked ones are not followed), entries that are not regular files are skipped.
    With `root`, any entry resolving outside it is a `MediaAccessError`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(f"{folder} is not a folder. Pass an existing folder of image files.")
    if root is not None and not _inside(folder.resolve(), root.resolve()):
        raise MediaAccessError(f"{folder} resolves outside the media root.")
    try:
        if not recursive:
            candidates = [folder / name for name in sorted(os.listdir(folder))]
            if len(candidates) > MAX_FILES:
                raise MediaError(f"{folder} holds more than {MAX_FILES:,} entries. Pass a smaller folder.")
        else:
            candidates = []
            for base, _dirs, names in os.walk(folder):  # followlinks=False: symlinked folders are not entered
                candidates.extend(Path(base) / name for name in names)
                if len(candidates) > MAX_FILES:
                    raise MediaError(f"{folder} holds more than {MAX_FILES:,} files. Pass the folder of one series.")
            candidates.sort()
    except OSError as err:
        raise MediaError(f"Cannot list folder {folder}: {err}. Check that it exists and is readable.") from err
    files = []
    for entry in candidates:
        try:
            regular_file(entry, root)
        except MediaAccessError:
            raise
        except MediaError:
            if not recursive:
                raise
            continue
        files.append(entry)
    return files


def open_regular(path: PathLike) -> BinaryIO:
    """Open `path` for reading; refuses (without blocking) anything that is not a regular file."""
    if "\x00" in str(path):
        raise MediaError("A media path must not contain a NUL byte.")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError) as err:
        raise MediaError(f"Cannot open {path}: {type(err).__name__}. Check that it exists and is readable.") from err
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MediaError(f"{path} is not a regular file (a folder, pipe, socket or device); pass a file.")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return open(fd, "rb")


def read_capped(stream: BinaryIO, cap: int, name: str, what: str = "decompresses to") -> bytes:
    """All bytes of `stream`, read in blocks; a `MediaError` as soon as more than `cap` bytes come out."""
    out = bytearray()
    while True:
        block = stream.read(min(BLOCK, cap + 1 - len(out)))
        if not block:
            return bytes(out)
        out.extend(block)
        if len(out) > cap:
            raise MediaError(
                f"{name} {what} more than {cap:,} bytes, over the per-item memory budget (decompression bomb "
                "guard). Pass a smaller file."
            )


def pin_inside(path: PathLike, root: Path, destination: Path) -> Path:
    """A stable copy of the regular file `path` at `destination`, taken from what was *opened*, not from the name.

    The file is opened without following a final symlink (`O_NOFOLLOW`, `O_NONBLOCK`); the opened descriptor's
    real path (`/proc/self/fd`) must lie inside `root` and be a regular file, else `MediaAccessError` / `MediaError`.
    Then `destination` becomes a hard link to that very inode (no copy; falls back to copying from the descriptor
    across file systems or where hard links are not allowed). Whatever happens to the name afterwards (a swap for a
    symlink to an outside file), the loaders read `destination`: the file that was checked.
    """
    import shutil

    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(str(path), flags)
    except OSError as err:  # ELOOP: the final component is a symlink now
        raise MediaAccessError(f"{Path(path).name} could not be opened safely ({type(err).__name__}).") from err
    try:
        info = os.fstat(fd)
        proc = Path(f"/proc/self/fd/{fd}")
        opened = Path(os.readlink(proc)) if proc.is_symlink() else Path(path).resolve()
        if not _inside(opened, root.resolve()):
            raise MediaAccessError(f"{Path(path).name} resolves outside the media root.")
        if not stat.S_ISREG(info.st_mode):
            raise MediaError(f"{Path(path).name} is not a regular file (a folder, pipe, socket or device).")
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(proc, destination, follow_symlinks=True)  # the opened inode itself
        except (OSError, NotImplementedError):
            with os.fdopen(os.dup(fd), "rb") as source, open(destination, "wb") as target:
                shutil.copyfileobj(source, target, 2**20)
        return destination
    finally:
        os.close(fd)

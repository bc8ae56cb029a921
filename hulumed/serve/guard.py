"""What a request's media part may name and carry: the server's file-access and option rules in one place.

* `part_options(kind, spec)`: the options of an ``image_url`` / ``video_url`` / ``volume_url`` part, mapped to the
  processor's keys. Only the listed keys are accepted; ``image_path`` / ``video_path`` (the processor's own path
  keys) are reserved, so only the checked ``url`` ever reaches the loaders (400 otherwise).
* `local_media(raw, root, kind, ...)`: a path (plain or from a ``file://`` URL) below the media root. It must resolve
  (symlinks, ``..``) inside the root -- checked before its existence, so outside paths get the same 403 whether
  they exist or not -- and be a regular file, or a strict sub-folder of the root for a ``video_url`` (frames) or a
  ``volume_url`` (DICOM series), every file of which must be a regular file resolving inside the root too
  (`processing.safe_files`). Files and folders count against the media byte limit; images, GIF canvases and
  frame-folder images against the pixel limit (header only).
Refusals are `MediaRejected` with the HTTP status and an error code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import MediaAccessError, MediaError, MediaRejected
from ..processing import safe_files
from ..processing.conversation_media import VIDEO_ITEM_KEYS
from ..processing.volume.options import VOLUME_PART_KEYS
from .settings import over_limit

VIDEO_OPTIONS = tuple(k for k in VIDEO_ITEM_KEYS if k != "video_path")
# request key -> processor key of a `3d` item: the processor's own keys, plus the short names of the CLI
VOLUME_OPTIONS = VOLUME_PART_KEYS  # the one codec: processing/volume/options.py
IGNORED = ("url", "detail")  # "detail" is OpenAI's image hint; it has no meaning here
RESERVED = ("image_path", "video_path")


def part_options(kind: str, spec: dict[str, Any], index: int) -> dict[str, Any]:
    """The processor options of one media part; unknown or reserved keys are a 400."""
    allowed: dict[str, str] = {}
    if kind == "video_url":
        allowed = {k: k for k in VIDEO_OPTIONS}
    elif kind == "volume_url":
        allowed = dict(VOLUME_OPTIONS)
    for key in spec:
        if key in RESERVED:
            raise MediaRejected(f"content part {index}: {kind} option {key!r} is reserved; name the media with 'url'",
                                code="invalid_option")
        if key not in allowed and key not in IGNORED:
            known = sorted({*allowed, "url"})
            raise MediaRejected(f"content part {index}: unknown {kind} option {str(key)[:40]!r} (known: {known})",
                                code="invalid_option")
    return {allowed[k]: v for k, v in spec.items() if k in allowed}


def check_pixels(path: Path, max_pixels: int) -> None:
    """413 when a PIL-readable image (or GIF canvas) declares more than `max_pixels`; reads the header only."""
    from ..processing.image import declared_pixels

    try:
        pixels = declared_pixels(path)
    except MediaError:
        raise MediaRejected(f"image over PIL's decompression-bomb limit; this server allows {max_pixels} pixels",
                            status=413, code="image_too_large") from None
    if pixels is not None and pixels > max_pixels:
        raise MediaRejected(f"image of {pixels} pixels is over the limit of {max_pixels}", status=413,
                            code="image_too_large")


def local_media(raw: str, root: Path, kind: str, max_bytes: int, max_pixels: int) -> Path:
    """The resolved path of a local media part, after every rule of the module docstring."""
    if "\x00" in raw:
        raise MediaRejected("a media path must not contain a NUL byte", code="invalid_path")
    root = root.resolve()
    candidate = Path(raw) if os.path.isabs(raw) else root / raw
    try:
        where = candidate.resolve()  # non-strict: outside paths are refused whether or not they exist
    except (OSError, RuntimeError, ValueError):
        raise MediaRejected(f"invalid media path: {raw[:200]}", code="invalid_path") from None
    if where != root and root not in where.parents:
        raise MediaRejected("media path is outside the media root", status=403, code="path_outside_media_root")
    try:
        resolved = candidate.resolve(strict=True)
        mode = resolved.stat().st_mode
    except (OSError, RuntimeError, ValueError):
        raise MediaRejected(f"media not found under the media root: {raw[:200]}", code="media_not_found") from None
    if resolved == root:
        raise MediaRejected("the media root itself is not a media item; name a file or a sub-folder",
                            code="folder_not_allowed")
    import stat

    try:
        if stat.S_ISDIR(mode):
            return _folder(resolved, root, kind, max_bytes, max_pixels)
        safe_files.regular_file(resolved, root, name=raw[:200])
    except MediaAccessError:
        raise MediaRejected("media path is outside the media root", status=403,
                            code="path_outside_media_root") from None
    except MediaError as error:
        raise MediaRejected(str(error), code="invalid_media") from None
    size = resolved.stat().st_size
    if size > max_bytes:
        raise MediaRejected(over_limit("the media file", "max_media_bytes", max_bytes, size), status=413,
                            code="media_too_large")
    return resolved  # the caller checks the pixels of images and GIFs (whatever their source)


def _folder(folder: Path, root: Path, kind: str, max_bytes: int, max_pixels: int) -> Path:
    if kind == "image_url":
        raise MediaRejected("an image_url must be one image file, not a folder", code="folder_not_allowed")
    files = safe_files.folder_files(folder, root, recursive=kind == "volume_url")
    if not files:
        raise MediaRejected("the media folder holds no files", code="invalid_media")
    total = sum(f.stat().st_size for f in files)
    if total > max_bytes:
        raise MediaRejected(over_limit("the media folder", "max_media_bytes", max_bytes, total), status=413,
                            code="media_too_large")
    if kind == "video_url":
        for frame in files:
            check_pixels(frame, max_pixels)
    return folder


def public_message(message: str, settings: Any) -> str:
    """An error message as a client may see it: paths under the media root said relative to it, a request's
    scratch files by their own name, so no reply shows the server's folder layout."""
    import re
    import tempfile

    scratch = re.escape(os.path.join(os.path.realpath(tempfile.gettempdir()), "hulumed-req-"))
    message = re.sub(scratch + r"[^/\s]+/", "", message)
    scratch_unresolved = re.escape(os.path.join(tempfile.gettempdir(), "hulumed-req-"))
    message = re.sub(scratch_unresolved + r"[^/\s]+/", "", message)
    root = getattr(settings, "media_root", None)
    if root is not None:
        for form in dict.fromkeys((str(Path(root).resolve()), str(root))):
            message = message.replace(form.rstrip("/") + "/", "").replace(form, "<media root>")
    return message

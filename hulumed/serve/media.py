"""OpenAI message parts -> hulumed conversation parts, with every media rule of the server enforced.

Where media may come from:
* ``data:`` URIs (base64): decoded into a per-request scratch folder (deleted after the request);
* local paths (plain or ``file://``): only when the server has a ``media_root``, by the rules of ``guard.py``
  (inside the root after resolving symlinks and ``..``, regular files only, sub-folders only for frames and DICOM
  series, every file of a folder checked too);
* ``http(s)://``: only with ``allow_remote_media``, with a total deadline and the media byte limit.
Options of a part: only those ``guard.part_options`` lists (others, and the reserved path keys, are a 400).
Limits: bytes per part, pixels per image / GIF canvas / frame (decompression bombs), number of media parts.
Every refusal is a ``MediaRejected`` carrying the HTTP status and an OpenAI-style error code.
"""

from __future__ import annotations

import base64
import binascii
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import MediaAccessError, MediaError, MediaRejected
from ..processing import safe_files
from .guard import check_pixels, local_media, part_options
from .settings import ServerSettings, over_limit

_EXTENSIONS = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/webp": ".webp", "image/bmp": ".bmp",
    "image/tiff": ".tif", "image/gif": ".gif", "video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov",
    "video/x-msvideo": ".avi", "application/dicom": ".dcm", "application/x-nifti": ".nii", "application/nifti": ".nii",
}


class MediaResolver:
    """Turns the ``messages`` of one request into a conversation; owns that request's scratch folder."""

    def __init__(self, settings: ServerSettings, scratch: Path) -> None:
        self.settings = settings
        self.scratch = scratch
        self.parts = 0

    def conversation(self, messages: list[Any]) -> list[dict[str, Any]]:
        out = []
        for message in messages:
            content = message.content
            if content is None:
                content = ""
            if isinstance(content, list):
                content = [self._part(part, i) for i, part in enumerate(content)]
            out.append({"role": message.role, "content": content})
        return out

    # ------------------------------------------------------------------ parts
    def _part(self, part: dict[str, Any], index: int) -> dict[str, Any]:
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise MediaRejected(f"content part {index}: a text part needs a string 'text'", code="invalid_part")
            return {"type": "text", "text": part["text"]}
        if kind not in ("image_url", "video_url", "volume_url"):
            raise MediaRejected(
                f"content part {index}: unsupported type {kind!r} (text, image_url, video_url, volume_url)",
                code="invalid_part",
            )
        spec = part.get(kind)
        if isinstance(spec, str):
            spec = {"url": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
            raise MediaRejected(f"content part {index}: {kind} needs a 'url'", code="invalid_part")
        options = part_options(kind, spec, index)
        self.parts += 1
        if self.parts > self.settings.max_media_parts:
            raise MediaRejected(
                f"too many media parts: at most {self.settings.max_media_parts} per request", code="too_many_media"
            )
        path = self._materialize(spec["url"], kind)
        if path.is_file() and (kind == "image_url" or path.suffix.lower() == ".gif"):
            check_pixels(path, self.settings.max_pixels)
        if kind == "image_url":
            return {"type": "image", "image": {"image_path": str(path)}}
        if kind == "video_url":
            return {"type": "video", "video": {**options, "video_path": str(path)}}
        return {"type": "3d", "3d": {**options, "image_path": str(path)}}

    # ------------------------------------------------------------------ sources
    def _materialize(self, url: str, kind: str) -> Path:
        if url.startswith("data:"):
            return self._from_data_uri(url, kind)
        scheme = urlparse(url).scheme.lower()
        if scheme in ("http", "https"):
            return self._from_remote(url, kind)
        if scheme == "file":
            return self._from_local(unquote(urlparse(url).path), kind)
        if scheme and len(scheme) > 1:
            raise MediaRejected(f"unsupported URL scheme {scheme!r}; use data:, a path under the media root or http(s)")
        return self._from_local(url, kind)

    def _scratch_file(self, data: bytes, media_type: str, kind: str) -> Path:
        extension = _EXTENSIONS.get(media_type.lower(), "")
        if not extension:
            if data[128:132] == b"DICM":
                extension = ".dcm"
            elif kind == "volume_url":
                extension = ".nii.gz" if data[:2] == b"\x1f\x8b" else ".nii"
            elif kind == "video_url":
                extension = ".mp4"
        self.scratch.mkdir(parents=True, exist_ok=True)
        path = self.scratch / f"part-{self.parts}{extension}"
        path.write_bytes(data)
        return path

    def _from_data_uri(self, url: str, kind: str) -> Path:
        header, sep, payload = url[5:].partition(",")
        if not sep:
            raise MediaRejected("malformed data: URI (no comma)", code="invalid_data_uri")
        media_type = header.split(";")[0]
        if ";base64" not in header:
            raise MediaRejected("data: URIs must be base64-encoded (data:<type>;base64,<data>)",
                                code="invalid_data_uri")
        if len(payload) * 3 // 4 > self.settings.max_media_bytes:
            raise MediaRejected(
                over_limit("the media part", "max_media_bytes", self.settings.max_media_bytes, len(payload) * 3 // 4),
                status=413, code="media_too_large",
            )
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as error:
            raise MediaRejected(f"invalid base64 in data: URI: {error}", code="invalid_base64") from error
        if not data:
            raise MediaRejected("empty media part", code="invalid_media")
        return self._scratch_file(data, media_type, kind)

    def _from_local(self, raw: str, kind: str) -> Path:
        root = self.settings.media_root
        if root is None:
            raise MediaRejected(
                "local media paths are disabled on this server (start it with --media-root DIR)", status=403,
                code="local_media_disabled",
            )
        checked = local_media(raw, root, kind, self.settings.max_media_bytes, self.settings.max_pixels)
        return self._pinned(checked, root, kind)

    def _pinned(self, checked: Path, root: Path, kind: str) -> Path:
        """The checked file (or every file of the checked folder) pinned into the request's scratch folder: linked
        (or copied) from the descriptor that was opened and verified inside the root, so a name swapped for a
        symlink after the check cannot make the loaders read an outside file."""
        target = self.scratch / f"local-{self.parts}"
        try:
            if checked.is_file():
                return safe_files.pin_inside(checked, root, target / checked.name)
            for file in safe_files.folder_files(checked, root, recursive=kind == "volume_url"):
                safe_files.pin_inside(file, root, target / file.relative_to(checked))
        except MediaAccessError:
            raise MediaRejected("media path is outside the media root", status=403,
                                code="path_outside_media_root") from None
        except MediaError as error:
            raise MediaRejected(str(error), code="invalid_media") from None
        return target

    def _from_remote(self, url: str, kind: str) -> Path:
        if not self.settings.allow_remote_media:
            raise MediaRejected(
                "remote media URLs are disabled on this server (start it with --allow-remote-media)", status=403,
                code="remote_media_disabled",
            )
        import httpx

        limit = self.settings.max_media_bytes
        budget = self.settings.remote_timeout_s
        deadline = time.monotonic() + budget  # total, not per read: a trickling server cannot hold the request
        try:
            with httpx.stream("GET", url, timeout=budget, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise MediaRejected(f"fetching {url} answered HTTP {response.status_code}",
                                        code="remote_fetch_failed")
                data = bytearray()
                for block in response.iter_bytes():
                    data.extend(block)
                    if len(data) > limit:
                        raise MediaRejected(over_limit("the remote media", "max_media_bytes", limit), status=413,
                                            code="media_too_large")
                    if time.monotonic() > deadline:
                        raise MediaRejected(f"fetching {url} took longer than {budget:g} s", status=408,
                                            code="remote_fetch_timeout")
                media_type = response.headers.get("content-type", "").split(";")[0]
        except httpx.HTTPError as error:
            raise MediaRejected(f"fetching {url} failed: {type(error).__name__}", code="remote_fetch_failed") from error
        return self._scratch_file(bytes(data), media_type, kind)

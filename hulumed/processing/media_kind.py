"""What a media file is, from its first bytes: the one sniff the CLI, the demo and the vLLM loader share.

    media_kind(path_or_bytes) -> MediaKind(kind, format)

``kind`` is ``"image"``, ``"video"``, ``"volume"`` (NIfTI-1 / NIfTI-2, plain or gzip, or a zip — a DICOM series),
``"dicom"`` (one DICOM file: an image, or a multi-frame volume) or ``None`` when the bytes match nothing known
(the loaders then report what is wrong). Only the head is read (4 KiB, and the first KiB a gzip stream inflates
to), never the whole file. An animated GIF is an image here; the video loader also reads GIFs.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

_IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF87a": "GIF", b"GIF89a": "GIF",
                b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}
_MKV = b"\x1a\x45\xdf\xa3"


@dataclass(frozen=True)
class MediaKind:
    kind: str | None  # "image" | "video" | "volume" | "dicom" | None
    format: str  # "PNG", "MP4", "NIfTI", "DICOM", "zip", ... or "unknown"


def _gunzip_head(data: bytes, size: int = 1024) -> bytes:
    try:
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(data[:65536], size)
    except zlib.error:
        return b""


def sniff_bytes(head: bytes) -> MediaKind:
    """The kind of a file whose first bytes are ``head`` (at least 4 KiB of it when the file is that long)."""
    inner = _gunzip_head(head) if head[:2] == b"\x1f\x8b" else head[:1024]
    if inner[344:348] in (b"n+1\x00", b"ni1\x00") or inner[4:8] in (b"n+2\x00", b"ni2\x00"):
        return MediaKind("volume", "NIfTI")
    if head[128:132] == b"DICM":
        return MediaKind("dicom", "DICOM")
    if head[:4] == b"PK\x03\x04":
        return MediaKind("volume", "zip")
    for magic, name in _IMAGE_MAGIC.items():
        if head.startswith(magic):
            return MediaKind("image", name)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return MediaKind("image", "WEBP")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
            return MediaKind("image", brand.decode("ascii", "replace").upper())
        return MediaKind("video", "MOV" if brand == b"qt  " else "MP4")
    if head[:4] == _MKV:
        return MediaKind("video", "WebM/MKV")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return MediaKind("video", "AVI")
    if head[:3] == b"FLV":
        return MediaKind("video", "FLV")
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return MediaKind("video", "MPEG-TS")
    return MediaKind(None, "unknown")


def media_kind(source: str | os.PathLike | bytes) -> MediaKind:
    """The kind of a file (its first 4 KiB) or of bytes; a folder is ``MediaKind(None, "folder")``."""
    if isinstance(source, bytes):
        return sniff_bytes(source[:65536])
    if os.path.isdir(source):
        return MediaKind(None, "folder")
    from .safe_files import open_regular

    with open_regular(source) as handle:
        return sniff_bytes(handle.read(65536))

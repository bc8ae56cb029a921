"""Uploaded files -> attachments: what each file is (by content), its options, and its conversation part.

In:  paths of uploaded (or media-root) files. Out: ``Attachment`` objects; ``Attachment.part()`` is the
conversation part in the one message schema (``hulumed.conversation``):

* image  — PNG / JPEG / BMP / TIFF / WebP, or one DICOM file (read by the processor's DICOM path);
* video  — mp4 / webm / avi / mov / mkv / m4v / gif, sampled at ``fps`` with at most ``max_frames`` frames;
* volume — a NIfTI file (``.nii`` / ``.nii.gz``, by header), a DICOM series as a zip, or several DICOM files
  of one upload (gathered into one series folder); sliced along ``axis`` into ``num_slices`` slices
  (``None``: all, as upstream), optionally through a window preset or a custom (center, width).

A file that is none of these raises ``MediaError`` with a one-line message; content checks (decoding) happen
in ``viewer`` when the attachment is first shown.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import MediaError
from ..processing.dicom import sniff_dicom, sniff_zip
from ..processing.video.options import VideoOptions
from ..processing.volume import VolumeOptions, sniff_nifti

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v", ".gif")
KINDS = ("image", "video", "volume")


def describe_volume(options: VolumeOptions) -> str:
    """How a volume is sliced, in words (the demo's attachment list)."""
    count = "all slices" if options.num_slices is None else f"{options.num_slices} slices"
    window = options.window
    shown = (
        "no window (per-slice min-max)" if window is None
        else f"window {window[0]:g}/{window[1]:g}" if isinstance(window, (tuple, list))
        else f"window {window}"
    )
    return f"axis {options.axis}, {count}, {shown}"


@dataclass(frozen=True)
class Attachment:
    """One input of the next user turn."""

    kind: str  # "image" | "video" | "volume"
    path: str  # a file (or, for a DICOM series of several files, a folder)
    name: str  # what the user uploaded, for display
    volume: VolumeOptions = field(default_factory=VolumeOptions)
    video: VideoOptions = field(default_factory=VideoOptions)

    def part(self) -> dict[str, Any]:
        """The conversation part for this attachment."""
        if self.kind == "image":
            return {"type": "image", "image": {"image_path": self.path}}
        if self.kind == "video":
            return {"type": "video", "video": self.video.item(self.path)}
        return {"type": "3d", "3d": self.volume.item(self.path)}

    def files(self) -> list[str]:
        """The files this attachment reads: its path, or the regular files of a series folder."""
        if not os.path.isdir(self.path):
            return [self.path]
        return [os.path.join(self.path, name) for name in sorted(os.listdir(self.path))
                if os.path.isfile(os.path.join(self.path, name))]

    def describe(self) -> str:
        if self.kind == "volume":
            return f"{self.name} (volume: {describe_volume(self.volume)})"
        if self.kind == "video":
            return f"{self.name} (video: {self.video.describe()})"
        return f"{self.name} (image)"

    def with_volume(self, options: VolumeOptions) -> Attachment:
        return replace(self, volume=options)

    def with_video(self, options: VideoOptions) -> Attachment:
        return replace(self, video=options)


def _name(path: Path) -> str:
    """The file name a user chose (Gradio keeps it as the last path component)."""
    return path.name


def kind_of(path: Path) -> str:
    """``image``, ``video`` or ``volume`` for one file, by content first, then by extension."""
    if not path.is_file():
        raise MediaError(f"{_name(path)}: not a file (upload a file, or a zip of a DICOM series).")
    if sniff_nifti(path):
        return "volume"
    if sniff_zip(path):
        return "volume"
    if sniff_dicom(path):
        return "image"
    suffix = path.suffix.lower()
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return "volume"  # a broken NIfTI: the viewer reports what is wrong with it
    if suffix in IMAGE_SUFFIXES or suffix == ".dcm":
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise MediaError(
        f"{_name(path)}: unsupported file type. Upload images (PNG/JPEG/DICOM), a video (mp4/webm/avi), a NIfTI "
        "volume (.nii/.nii.gz) or a DICOM series (zip or several .dcm files)."
    )


def classify(paths: list[str], series_dir: str | None = None) -> tuple[list[Attachment], list[str]]:
    """Attachments for the uploaded ``paths`` and one error message per file that was refused.

    Several DICOM files in one upload are one series: they are linked into a new folder under ``series_dir``
    (default: a temporary folder) that becomes a single volume attachment. A single DICOM file is an image.
    """
    attachments: list[Attachment] = []
    errors: list[str] = []
    dicoms: list[Path] = []
    for raw in paths:
        path = Path(raw)
        try:
            kind = kind_of(path)
        except MediaError as error:
            errors.append(str(error))
            continue
        if kind == "image" and sniff_dicom(path):
            dicoms.append(path)
            continue
        attachments.append(Attachment(kind=kind, path=str(path), name=_name(path)))
    if len(dicoms) == 1:
        attachments.append(Attachment(kind="image", path=str(dicoms[0]), name=_name(dicoms[0])))
    elif dicoms:
        folder = Path(tempfile.mkdtemp(prefix="hulumed-series-", dir=series_dir))
        for i, path in enumerate(dicoms):
            shutil.copyfile(path, folder / f"{i:05d}_{path.name}")
        attachments.append(Attachment(kind="volume", path=str(folder), name=f"DICOM series ({len(dicoms)} files)"))
    return attachments, errors


def inside_root(path: str, root: str) -> Path:
    """``path`` resolved, refused (``MediaError``) when it is not below ``root`` (the ``--media-root``)."""
    base = Path(root).resolve()
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else base / candidate).resolve()
    if resolved != base and base not in resolved.parents:
        raise MediaError(f"{path}: outside the media root; pick files below {base}.")
    return resolved

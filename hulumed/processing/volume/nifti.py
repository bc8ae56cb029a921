"""NIfTI (and any format nibabel reads) -> a `Volume` of float64 voxels, refusing bombs from the header.

Upstream's `load_nii` reads `nibabel.load(path).get_fdata()` (float64) in the raw voxel-array axis order; so does
`read_nifti`. Before anything is read, the declared shape is checked against `limits.MAX_VOXELS` (and one slice
along the requested axis against `limits.MAX_FRAME_PIXELS`), and the file against the bytes its header needs
(truncated files). A NIfTI file with an unusual extension is recognised by its magic bytes and read with a cap.
4-D series need `time_index`. Every failure is a `MediaError`.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from hulumed.errors import MediaError
from hulumed.processing import limits, safe_files
from hulumed.processing.volume.geometry import Volume

PathLike = Union[str, os.PathLike]


def _nifti_magic(head: bytes) -> bool:
    """NIfTI-1 (`n+1`/`ni1` at 344) or NIfTI-2 (`n+2`/`ni2` at 4) header bytes."""
    return head[344:347] in (b"n+1", b"ni1") or head[4:7] in (b"n+2", b"ni2")


def sniff_nifti(path: Path) -> bool:
    """True when the file starts with a NIfTI header (plain or gzip-compressed)."""
    try:
        with open(path, "rb") as reader:
            head = reader.read(548)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as reader:
                head = reader.read(548)
    except (OSError, EOFError, gzip.BadGzipFile):
        return False
    return _nifti_magic(head)


def _check_shape(path: Path, shape: tuple[int, ...], axis: Optional[int] = None) -> int:
    """The declared voxel count, refused (before anything is read) above `limits.MAX_VOXELS`, or when one slice
    along `axis` would be over `limits.MAX_FRAME_PIXELS`."""
    if any(s < 0 for s in shape):
        raise MediaError(f"{path} has a corrupt header (negative dimension in shape {shape}). Re-export the volume.")
    voxels = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if voxels > limits.MAX_VOXELS:
        raise MediaError(
            f"{path} declares {voxels:,} voxels (shape {shape}), more than the limit of {limits.MAX_VOXELS:,} (the "
            "per-item memory budget): the header is corrupt or the volume is too large (decompression "
            "bomb guard). Crop or downsample it first, or raise hulumed.processing.limits.MAX_VOXELS."
        )
    if axis in (0, 1, 2) and len(shape) >= 3:
        plane = int(np.prod([n for i, n in enumerate(shape[:3]) if i != axis], dtype=np.float64))
        if plane > limits.MAX_FRAME_PIXELS:
            raise MediaError(
                f"{path} declares slices of {plane:,} pixels along axis {axis} (shape {shape}), more than the limit "
                f"of {limits.MAX_FRAME_PIXELS:,} (decompression bomb guard). Downsample the volume first."
            )
    return voxels


def _check_size(path: Path, image: Any, axis: Optional[int] = None) -> None:
    """Refuse huge or truncated volumes before nibabel allocates or memory-maps them."""
    shape = tuple(int(s) for s in image.shape)
    voxels = _check_shape(path, shape, axis)
    header = image.header
    try:
        needed = int(header.get_data_offset()) + voxels * header.get_data_dtype().itemsize
    except Exception:  # analyze-like headers without an offset
        return
    if path.suffix.lower() == ".nii":
        have = path.stat().st_size
    elif path.name.lower().endswith(".nii.gz"):
        with open(path, "rb") as reader:
            reader.seek(-4, os.SEEK_END)
            have = struct.unpack("<I", reader.read(4))[0]  # gzip ISIZE: uncompressed size mod 2**32
        if needed >= 2**32:
            return
    else:
        return
    if have < needed:
        raise MediaError(
            f"{path} is truncated: its header needs {needed:,} bytes of data but the file holds {have:,}. "
            "Copy or export the volume again."
        )


def _open_nifti(path: Path) -> Any:
    import nibabel

    try:
        return nibabel.load(str(path))
    except nibabel.filebasedimages.ImageFileError:
        if not sniff_nifti(path):
            raise
    # a NIfTI file with an unusual extension: read the header first, then at most the bytes it declares
    with safe_files.open_regular(path) as raw_stream:
        gzipped = raw_stream.read(2) == b"\x1f\x8b"
        raw_stream.seek(0)
        stream = gzip.GzipFile(fileobj=raw_stream) if gzipped else raw_stream
        head = stream.read(548)
        header_class = nibabel.Nifti2Header if head[4:7] in (b"n+2", b"ni2") else nibabel.Nifti1Header
        header = header_class.from_fileobj(io.BytesIO(head))
        voxels = _check_shape(path, tuple(int(n) for n in header.get_data_shape()))
        needed = int(header.get_data_offset()) + voxels * header.get_data_dtype().itemsize
        raw = head + safe_files.read_capped(stream, max(needed - len(head), 0), str(path), "holds")
    image_class = nibabel.Nifti2Image if raw[4:7] in (b"n+2", b"ni2") else nibabel.Nifti1Image
    return image_class.from_bytes(raw)


def read_nifti(path: PathLike, time_index: Optional[int] = None, axis: Optional[int] = None) -> Volume:
    """A NIfTI (or other nibabel) volume as float64 voxels `(D0, D1, D2)` with its affine; with `axis`, a volume
    whose slices along it would be over the plane limit is refused before reading."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"NIfTI file {path} does not exist. Check the path.")
    if not path.is_file():
        raise MediaError(f"{path} is not a file. A 3d item needs the path of a .nii or .nii.gz file.")
    try:
        import nibabel  # noqa: F401
    except ImportError as err:  # pragma: no cover - nibabel is a core dependency
        raise MediaError("Reading NIfTI volumes needs nibabel: pip install nibabel.") from err
    try:
        image = _open_nifti(path)
        _check_size(path, image, axis)
        kind = np.dtype(image.get_data_dtype()).kind
        if kind not in "biuf":
            raise MediaError(
                f"{path} stores {np.dtype(image.get_data_dtype())} voxels (complex or RGB); a scalar volume is needed. "
                "Save the magnitude (or one channel) as a new NIfTI file."
            )
        shape = tuple(image.shape)
        if len(shape) == 4 and shape[3] > 1:
            if time_index is None:
                raise MediaError(
                    f"{path} is a 4-D series of {shape[3]} volumes (shape {shape}). Pass time_index "
                    f"(0..{shape[3] - 1}) to pick one."
                )
            if not isinstance(time_index, (int, np.integer)) or not -shape[3] <= time_index < shape[3]:
                raise MediaError(f"time_index must be an integer in 0..{shape[3] - 1} for {path}; got {time_index!r}.")
            image = image.slicer[..., int(time_index)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # casts of corrupt data: NaN / Inf are reported below
            volume = np.asarray(image.get_fdata(), dtype=np.float64)
        affine = np.asarray(image.affine, dtype=np.float64)
    except MediaError:
        raise
    except Exception as err:  # ImageFileError, EOFError, zlib errors, struct errors, MemoryError, ...
        raise MediaError(
            f"Cannot read {path} as a NIfTI volume: {type(err).__name__}: {err}. Pass a valid .nii or .nii.gz file "
            "(or a DICOM file, folder or zip); the file may be corrupt or truncated."
        ) from err
    if volume.size == 0:
        raise MediaError(f"{path} holds no voxels (shape {volume.shape}). Re-export the volume.")
    if volume.ndim == 4 and volume.shape[3] == 1:
        volume = volume[..., 0]  # (D0, D1, D2, 1) -> (D0, D1, D2)
    if volume.ndim != 3:
        raise MediaError(f"{path} holds a {volume.ndim}-D array of shape {volume.shape}; a 3-D volume is needed.")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        affine = np.eye(4)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))  # mm per index step along each axis
    positions = tuple(np.arange(n, dtype=np.float64) * z for n, z in zip(volume.shape, zooms))
    return Volume(volume, affine, positions, f"NIfTI file {path}")  # type: ignore[arg-type]

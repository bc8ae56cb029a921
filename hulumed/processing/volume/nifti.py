"""NIfTI (and any format nibabel reads) -> a `Volume` of float64 voxels, refusing bombs from the header.

Upstream's `load_nii` reads `nibabel.load(path).get_fdata()` (float64) in the raw voxel-array axis order; the
values `read_nifti`'s voxels give are those, bit for bit, read only for the planes that are sliced. Before anything
is read, the declared shape is checked against `limits.MAX_VOXELS` (and one slice
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from hulumed.errors import MediaError
from hulumed.processing import limits, safe_files
from hulumed.processing.volume.geometry import Volume, Voxels, plane_index

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
        try:
            return nibabel.load(str(path), keep_file_open=True)  # a compressed file is read forward once
        except TypeError:  # an image class without the option
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


def _unreadable(path: Path, err: Exception) -> MediaError:
    return MediaError(
        f"Cannot read {path} as a NIfTI volume: {type(err).__name__}: {err}. Pass a valid .nii or .nii.gz file "
        "(or a DICOM file, folder or zip); the file may be corrupt or truncated."
    )


class NiftiVoxels(Voxels):
    """The voxels of a NIfTI file, read plane by plane through nibabel's array proxy.

    Values equal `get_fdata()` bit for bit: a 3-D image is scaled in float64 as `get_fdata` does; one volume of a
    4-D series is scaled as nibabel's `slicer` scales it, then converted to float64 (what `read_nifti` always did).
    An uncompressed file is memory-mapped, so a plane reads only its pages; a compressed file is kept open and read
    forward once for the planes of the last axis (contiguous on disk), or read whole once for another axis (its
    planes are spread over the whole stream)."""

    def __init__(self, image: Any, path: Path, time_index: Optional[int]) -> None:
        self.proxy, self.path = image.dataobj, path
        self.time = () if time_index is None else (time_index,)  # trailing index of a 4-D series
        self.scale_dtype = np.float64 if time_index is None or image.shape[3] == 1 else None
        self.shape = tuple(int(n) for n in image.shape[:3])  # type: ignore[assignment]
        self.dtype = np.dtype(np.float64)
        self.compressed = path.name.lower().endswith((".gz", ".bz2", ".zst"))
        self._whole: Optional[np.ndarray] = None

    def _scaled(self, key: tuple[Any, ...]) -> np.ndarray:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # casts of corrupt data: NaN / Inf are reported by the slicer
                if hasattr(self.proxy, "_get_scaled"):  # nibabel's ArrayProxy: the code path get_fdata takes
                    values = self.proxy._get_scaled(dtype=self.scale_dtype, slicer=key + self.time)
                else:  # an array already in memory
                    values = np.asarray(self.proxy[key + self.time])
                return np.asarray(values).astype(np.float64, copy=False)
        except MediaError:
            raise
        except Exception as err:  # EOFError, zlib errors, struct errors, MemoryError, ...
            raise _unreadable(self.path, err) from err

    def _read(self, axis: int, indices: Sequence[int]) -> list[np.ndarray]:
        if self.compressed and axis != 2 and indices:
            if self._whole is None:
                self._whole = self._scaled((slice(None),) * 3)  # (D0, D1, D2)
            return [self._whole[plane_index(axis, i)] for i in indices]
        return [self._scaled(plane_index(axis, i)) for i in indices]  # ascending: one forward pass


def read_nifti(path: PathLike, time_index: Optional[int] = None, axis: Optional[int] = None) -> Volume:
    """A NIfTI (or other nibabel) volume `(D0, D1, D2)` with its affine, its voxels read on demand as float64
    (`NiftiVoxels`); the header is checked here, before any voxel is read, and with `axis`, a volume whose slices
    along it would be over the plane limit is refused."""
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
        shape = tuple(int(n) for n in image.shape)
        if len(shape) == 4 and shape[3] > 1:
            if time_index is None:
                raise MediaError(
                    f"{path} is a 4-D series of {shape[3]} volumes (shape {shape}). Pass time_index "
                    f"(0..{shape[3] - 1}) to pick one."
                )
            if not isinstance(time_index, (int, np.integer)) or not -shape[3] <= time_index < shape[3]:
                raise MediaError(f"time_index must be an integer in 0..{shape[3] - 1} for {path}; got {time_index!r}.")
            time_index = int(time_index) % shape[3]
        elif len(shape) == 4:
            time_index = 0  # (D0, D1, D2, 1) -> (D0, D1, D2)
        else:
            time_index = None
        affine = np.asarray(image.affine, dtype=np.float64)
    except MediaError:
        raise
    except Exception as err:  # ImageFileError, EOFError, zlib errors, struct errors, MemoryError, ...
        raise _unreadable(path, err) from err
    if int(np.prod(shape, dtype=np.float64)) == 0:
        raise MediaError(f"{path} holds no voxels (shape {shape}). Re-export the volume.")
    spatial = len(shape) - (1 if len(shape) == 4 else 0)
    if spatial != 3:
        shown = shape[:3] if len(shape) == 4 else shape
        raise MediaError(f"{path} holds a {spatial}-D array of shape {shown}; a 3-D volume is needed.")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        affine = np.eye(4)
    voxels = NiftiVoxels(image, path, time_index)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))  # mm per index step along each axis
    positions = tuple(np.arange(n, dtype=np.float64) * z for n, z in zip(voxels.shape, zooms))
    return Volume(voxels, affine, positions, f"NIfTI file {path}")  # type: ignore[arg-type]

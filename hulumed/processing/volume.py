"""3-D volumes (NIfTI, and DICOM series through `dicom.py`) -> slices, upstream-exact by default.

In:  a `.nii` / `.nii.gz` path (or any format nibabel reads), a DICOM file / folder / zip (`load_volume` tells
     them apart by content), and the `3d` item's options.
Out: a list of k slices, each a `(3, X, Y)` uint8 array (channels first). The processor feeds them as a "video"
     item (merge 2, no timestamps).

Default rules = upstream HF-Version `load_nii` (UPSTREAM.md §5.8):
- `nibabel.load(path).get_fdata()` (float64), raw voxel-array axis order: no reorientation, flip or rotation.
- `axis` 0, 1 or 2 (default 2, "axial" in upstream's README): slice i is `volume[i]`, `volume[:, i]` or
  `volume[:, :, i]`; (X, Y) are the two remaining axes in order.
- `num_slices` < number of slices: keep `np.linspace(0, n - 1, num_slices, dtype=int)`; otherwise keep all.
- optional clip to [window_center - window_width / 2, window_center + window_width / 2] (both given).
- per-slice min-max to [0, 255] (`(x - min) / (max - min) * 255`), then `astype(uint8)` (truncation); a constant
  slice becomes zeros; grey replicated to 3 channels.

Options (none is upstream; each changes the pixels the model sees):
- `orientation`: "raw" (default) | "ras" (nibabel's closest canonical RAS+ axis order, as `as_closest_canonical`)
  | "radiological" (RAS, then every slice shown as a viewer does: axial/coronal with the patient's right on
  the image left, anterior / superior at the top; sagittal with anterior on the left, superior at the top).
- `window`: a preset of `WINDOW_PRESETS` (lung, mediastinum, soft_tissue, abdomen, liver, bone, brain, subdural,
  stroke), "ct_rgb" (three windows as R, G, B), or `(center, width)`: fixed window -> [0, 255], rounded; no
  min-max. Exclusive with `window_center` / `window_width` (which keep upstream's clip + min-max).
- `normalize`: "slice" (default, upstream) | "volume" (one min-max over the whole clipped volume, rounded).
- `slice_spacing` (mm): keep the slices nearest to positions `0, s, 2s, ...` mm from the first slice (DICOM series
  use their real, possibly uneven, positions); `num_slices` then caps the count with the same linspace rule.
- `time_index`: which volume of a 4-D series to use (required when there is more than one).

Every failure (missing file, not a volume, truncated data, NaN/Inf voxels, too many voxels, wrong dimensionality,
bad options) is a `MediaError` whose message says what to do.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from hulumed.errors import MediaError
from hulumed.processing import limits, safe_files
from hulumed.processing.windowing import WindowSpec, resolve_window, windowed_rgb

PathLike = Union[str, os.PathLike]

ORIENTATIONS = ("raw", "ras", "radiological")
NORMALIZATIONS = ("slice", "volume")
# keys of the processor's `3d` item: upstream's four, then the options of this module and of dicom.py
VOLUME_ITEM_KEYS = (
    "image_path",
    "nii_num_slices",
    "nii_axis",
    "window_center",
    "window_width",
    "window",
    "orientation",
    "normalize",
    "slice_spacing",
    "time_index",
    "series_uid",
)
MAX_VOXELS = limits.MAX_VOXELS  # refuse larger volumes before reading them (decompression bombs, corrupt headers)
MAX_PLANE_PIXELS = limits.MAX_FRAME_PIXELS  # one slice of the requested axis


@dataclass
class Volume:
    """Voxels with their geometry, before slicing."""

    data: np.ndarray  # (D0, D1, D2) float voxels: raw NIfTI values, HU for CT DICOM
    affine: np.ndarray  # (4, 4) voxel index -> RAS+ millimetres
    positions: tuple[np.ndarray, np.ndarray, np.ndarray]  # mm of each index along axis 0, 1, 2
    source: str  # what was read, for messages (never patient data)


# ----------------------------------------------------------------------------------------- reading NIfTI


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
    """The declared voxel count, refused (before anything is read) above `MAX_VOXELS`, or when one slice along
    `axis` would be over `MAX_PLANE_PIXELS`."""
    if any(s < 0 for s in shape):
        raise MediaError(f"{path} has a corrupt header (negative dimension in shape {shape}). Re-export the volume.")
    voxels = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if voxels > MAX_VOXELS:
        raise MediaError(
            f"{path} declares {voxels:,} voxels (shape {shape}), more than the limit of {MAX_VOXELS:,} (the per-item "
            "memory budget): the header is corrupt or the volume is too large (decompression "
            "bomb guard). Crop or downsample it first, or raise hulumed.processing.volume.MAX_VOXELS."
        )
    if axis in (0, 1, 2) and len(shape) >= 3:
        plane = int(np.prod([n for i, n in enumerate(shape[:3]) if i != axis], dtype=np.float64))
        if plane > MAX_PLANE_PIXELS:
            raise MediaError(
                f"{path} declares slices of {plane:,} pixels along axis {axis} (shape {shape}), more than the limit "
                f"of {MAX_PLANE_PIXELS:,} (decompression bomb guard). Downsample the volume first."
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


def read_volume(path: PathLike, time_index: Optional[int] = None, series_uid: Optional[str] = None,
                axis: Optional[int] = None) -> Volume:
    """Any supported volume: a DICOM folder / zip / file (by content, or `.dcm`), else NIfTI via nibabel."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"Volume {path} does not exist. Pass a .nii/.nii.gz file or a DICOM file, folder or zip.")
    from hulumed.processing import dicom, dicom_series

    if path.is_dir() or dicom.sniff_zip(path) or dicom.sniff_dicom(path):
        if time_index is not None:
            raise MediaError(f"time_index applies to 4-D NIfTI volumes; {path} is DICOM. Drop time_index.")
        return dicom_series.read_series(path, series_uid=series_uid)
    if series_uid is not None:
        raise MediaError(f"series_uid applies to DICOM input only; {path} is not DICOM.")
    return read_nifti(path, time_index=time_index, axis=axis)


# ----------------------------------------------------------------------------------------- geometry


def reorient(volume: Volume, orientation: str) -> Volume:
    """Volume in "raw" order, or permuted/flipped to the closest canonical RAS+ order (also for "radiological")."""
    if orientation == "raw":
        return volume
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ornt = io_orientation(volume.affine)  # rows: (output axis, +1 / -1) per input axis
    if not np.all(np.isfinite(ornt)):
        raise MediaError(
            f"The affine of {volume.source} is degenerate, so it has no RAS orientation. Use orientation='raw'."
        )
    data = apply_orientation(volume.data, ornt)  # (R, A, S)
    affine = volume.affine @ inv_ornt_aff(ornt, volume.data.shape)
    positions: list[np.ndarray] = [np.zeros(0)] * 3
    for axis, (target, flip) in enumerate(ornt):
        positions[int(target)] = volume.positions[axis][::-1] if flip < 0 else volume.positions[axis]
    return replace(volume, data=data, affine=affine, positions=tuple(positions))  # type: ignore[arg-type]


def select_slices(
    positions: np.ndarray, num_slices: Optional[int] = None, slice_spacing: Optional[float] = None
) -> np.ndarray:
    """Indices of the slices to keep: upstream's linspace rule, optionally after spacing-aware picking."""
    total = len(positions)
    indices = np.arange(total)
    if slice_spacing is not None:
        distance = np.abs(np.asarray(positions, dtype=np.float64) - positions[0])  # mm from the first slice
        count = int(np.floor(distance.max() / slice_spacing + 1e-6)) + 1 if total else 0
        if count < total:
            targets = np.arange(count) * slice_spacing
            nearest = np.abs(distance[None, :] - targets[:, None]).argmin(axis=1)  # (count,)
            indices = np.array(list(dict.fromkeys(nearest.tolist())), dtype=int)
    if num_slices is not None and num_slices < len(indices):
        indices = indices[np.linspace(0, len(indices) - 1, num_slices, dtype=int)]
    return indices


# ----------------------------------------------------------------------------------------- intensities


def _to_uint8(slice_2d: np.ndarray) -> np.ndarray:
    """Per-slice min-max to [0, 255], truncated to uint8; zeros for a constant slice (upstream)."""
    low, high = slice_2d.min(), slice_2d.max()
    if high > low:
        return ((slice_2d - low) / (high - low) * 255).astype(np.uint8)
    return np.zeros(slice_2d.shape, dtype=np.uint8)


def _check_options(
    num_slices: Optional[int],
    axis: int,
    window_center: Optional[float],
    window_width: Optional[float],
    window: Optional[WindowSpec],
    normalize: str,
    orientation: str,
    slice_spacing: Optional[float],
) -> None:
    if axis not in (0, 1, 2) or isinstance(axis, bool):
        raise MediaError(f"nii_axis must be 0, 1 or 2 (sagittal, coronal, axial in upstream's naming); got {axis!r}.")
    if num_slices is not None and (
        not isinstance(num_slices, (int, np.integer)) or isinstance(num_slices, bool) or num_slices < 1
    ):
        raise MediaError(f"nii_num_slices must be a positive integer or None; got {num_slices!r}.")
    if orientation not in ORIENTATIONS:
        raise MediaError(f"orientation must be one of {list(ORIENTATIONS)}; got {orientation!r}.")
    if normalize not in NORMALIZATIONS:
        raise MediaError(f"normalize must be one of {list(NORMALIZATIONS)}; got {normalize!r}.")
    if window is not None and (window_center is not None or window_width is not None):
        raise MediaError(
            "Pass either window (a preset or (center, width), mapped to [0, 255]) or window_center/window_width "
            "(upstream's clip before min-max), not both."
        )
    if slice_spacing is not None and not (
        isinstance(slice_spacing, (int, float, np.integer, np.floating)) and np.isfinite(slice_spacing)
        and slice_spacing > 0
    ):
        raise MediaError(f"slice_spacing must be a positive number of millimetres; got {slice_spacing!r}.")


def slice_volume(
    volume: Volume,
    num_slices: Optional[int] = None,
    axis: int = 2,
    window_center: Optional[float] = None,
    window_width: Optional[float] = None,
    window: Optional[WindowSpec] = None,
    normalize: str = "slice",
    orientation: str = "raw",
    slice_spacing: Optional[float] = None,
) -> list[np.ndarray]:
    """Slices of `volume` as `(3, X, Y)` uint8 arrays (module docstring: defaults are upstream's rules)."""
    orientation = orientation.lower() if isinstance(orientation, str) else orientation
    _check_options(num_slices, axis, window_center, window_width, window, normalize, orientation, slice_spacing)
    windows = resolve_window(window) if window is not None else None
    finite = np.isfinite(volume.data)
    if not finite.all():
        bad = int(volume.data.size - finite.sum())
        raise MediaError(
            f"{volume.source} has {bad:,} NaN or infinite voxels. Replace them (e.g. numpy.nan_to_num) and save "
            "the volume again."
        )
    volume = reorient(volume, orientation)
    data = volume.data
    total = data.shape[axis]
    if total == 0:
        raise MediaError(f"{volume.source} has no slices along axis {axis} (shape {data.shape}).")
    if slice_spacing is not None and not np.any(np.abs(volume.positions[axis] - volume.positions[axis][0]) > 0):
        if total > 1:
            raise MediaError(f"{volume.source} has no slice spacing along axis {axis}; drop slice_spacing.")
    indices = select_slices(volume.positions[axis], num_slices, slice_spacing)

    if window_center is not None and window_width is not None:
        low, high = window_center - window_width / 2, window_center + window_width / 2
        data = np.clip(data, low, high)
    volume_range = (float(data.min()), float(data.max())) if normalize == "volume" and windows is None else None

    slices = []
    for index in indices:
        plane = np.take(data, int(index), axis=axis).astype(np.float64, copy=False)  # (X, Y): remaining axes
        if orientation == "radiological":
            plane = plane.T[::-1, ::-1]  # RAS (X, Y) -> viewer rows / columns (module docstring)
        if windows is not None:
            slices.append(np.ascontiguousarray(windowed_rgb(plane, windows)))  # (3, X, Y)
            continue
        if volume_range is not None:
            low, high = volume_range
            grey = (
                np.rint((plane - low) / (high - low) * 255).astype(np.uint8)
                if high > low
                else np.zeros(plane.shape, dtype=np.uint8)
            )
        else:
            grey = _to_uint8(plane)
        slices.append(np.stack([grey, grey, grey], axis=0))  # (3, X, Y)
    return slices


# ----------------------------------------------------------------------------------------- entry points


def _sliced(read: Callable[[], Volume], path: PathLike, num_slices: Optional[int], axis: int,
            window_center: Optional[float], window_width: Optional[float], window: Optional[WindowSpec],
            normalize: str, orientation: str, slice_spacing: Optional[float]) -> list[np.ndarray]:
    """Check the options, read the volume with `read` and slice it; every failure comes out as a MediaError."""
    orientation = orientation.lower() if isinstance(orientation, str) else orientation
    _check_options(num_slices, axis, window_center, window_width, window, normalize, orientation, slice_spacing)
    return _typed(lambda: slice_volume(
        read(), num_slices, axis, window_center, window_width, window, normalize, orientation, slice_spacing,
    ), path)


def _typed(load: Callable[[], list[np.ndarray]], path: PathLike) -> list[np.ndarray]:
    """Run `load`; a failure that was not turned into a MediaError where it happened still comes out typed."""
    try:
        return load()
    except MediaError:
        raise
    except Exception as err:  # MemoryError on absurd sizes, library bugs on corrupt input, ...
        raise MediaError(
            f"Cannot load volume {path}: {type(err).__name__}. The file may be corrupt or too large."
        ) from err


def load_nifti(
    path: PathLike,
    num_slices: Optional[int] = None,
    axis: int = 2,
    window_center: Optional[float] = None,
    window_width: Optional[float] = None,
    window: Optional[WindowSpec] = None,
    normalize: str = "slice",
    orientation: str = "raw",
    slice_spacing: Optional[float] = None,
    time_index: Optional[int] = None,
) -> list[np.ndarray]:
    """Load a NIfTI volume as a list of `(3, X, Y)` uint8 slices (see the module docstring for the rules)."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"NIfTI file {path} does not exist. Check the path.")
    return _sliced(lambda: read_nifti(path, time_index=time_index, axis=axis), path, num_slices, axis, window_center,
                   window_width, window, normalize, orientation, slice_spacing)


def load_volume(
    path: PathLike,
    num_slices: Optional[int] = None,
    axis: int = 2,
    window_center: Optional[float] = None,
    window_width: Optional[float] = None,
    window: Optional[WindowSpec] = None,
    normalize: str = "slice",
    orientation: str = "raw",
    slice_spacing: Optional[float] = None,
    time_index: Optional[int] = None,
    series_uid: Optional[str] = None,
) -> list[np.ndarray]:
    """Like `load_nifti`, for NIfTI and DICOM (file, series folder or zip; detected by content).

    A DICOM series is read as `(rows, columns, slices)` HU voxels sorted along the slice normal, so the default
    `axis=2` gives the images as stored; `series_uid` picks one series of a folder that holds several.
    """
    return _sliced(lambda: read_volume(path, time_index=time_index, series_uid=series_uid, axis=axis), path,
                   num_slices, axis,
                   window_center, window_width, window, normalize, orientation, slice_spacing)

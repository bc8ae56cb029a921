"""NIfTI volume loading, exactly as upstream's HF-Version `load_nii`.

In:  a `.nii` / `.nii.gz` path and the conversation's `3d` options (`nii_num_slices`, `nii_axis`,
     `window_center`, `window_width`).
Out: a list of k slices, each a `(3, X, Y)` uint8 array (grey replicated to 3 channels, channels first), where
     (X, Y) are the two remaining voxel axes in raw array order. The processor feeds them as a "video" item
     (merge 2, no timestamps).

Rules (UPSTREAM.md §5.8):
- `nibabel.load(path).get_fdata()` (float64), raw voxel-array axis order: no reorientation, flip or rotation.
- `axis` 0, 1 or 2 (default 2, "axial" in upstream's README): slice i is `volume[i]`, `volume[:, i]` or
  `volume[:, :, i]`.
- `num_slices` < number of slices: keep `np.linspace(0, n - 1, num_slices, dtype=int)`; otherwise keep all
  (never up-sampled).
- optional window: if both `window_center` and `window_width` are given, clip to
  [center - width / 2, center + width / 2].
- per-slice min-max to [0, 255] (`(x - min) / (max - min) * 255`), then `astype(uint8)` (truncation, not
  rounding); a constant slice becomes zeros.

Every failure (missing file, not a NIfTI, wrong dimensionality, bad options) is a `MediaError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from hulumed.errors import MediaError


def _read_volume(path: Path) -> np.ndarray:
    """The voxel array of a NIfTI file as float64 `(D0, D1, D2)`."""
    try:
        import nibabel
    except ImportError as err:  # pragma: no cover - nibabel is a core dependency
        raise MediaError("Reading NIfTI volumes needs nibabel: pip install nibabel.") from err
    try:
        image = nibabel.load(str(path))
        volume = np.asarray(image.get_fdata(), dtype=np.float64)
    except Exception as err:  # ImageFileError, EOFError, zlib errors, ...
        raise MediaError(
            f"Cannot read {path} as a NIfTI volume: {err}. Pass a valid .nii or .nii.gz file "
            "(DICOM series and image folders are not volumes)."
        ) from err
    if volume.ndim == 4 and volume.shape[3] == 1:
        volume = volume[..., 0]  # (D0, D1, D2, 1) -> (D0, D1, D2)
    if volume.ndim != 3:
        raise MediaError(f"{path} holds a {volume.ndim}-D array of shape {volume.shape}; a 3-D volume is needed.")
    return volume


def _to_uint8(slice_2d: np.ndarray) -> np.ndarray:
    """Per-slice min-max to [0, 255], truncated to uint8; zeros for a constant slice."""
    low, high = slice_2d.min(), slice_2d.max()
    if high > low:
        return ((slice_2d - low) / (high - low) * 255).astype(np.uint8)
    return np.zeros(slice_2d.shape, dtype=np.uint8)


def load_nifti(
    path: Union[str, os.PathLike],
    num_slices: Optional[int] = None,
    axis: int = 2,
    window_center: Optional[float] = None,
    window_width: Optional[float] = None,
) -> list[np.ndarray]:
    """Load a NIfTI volume as a list of `(3, X, Y)` uint8 slices (see the module docstring for the rules)."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"NIfTI file {path} does not exist. Check the path.")
    if not path.is_file():
        raise MediaError(f"{path} is not a file. A 3d item needs the path of a .nii or .nii.gz file.")
    if axis not in (0, 1, 2):
        raise MediaError(f"nii_axis must be 0, 1 or 2 (sagittal, coronal, axial in upstream's naming); got {axis!r}.")
    if num_slices is not None and (not isinstance(num_slices, (int, np.integer)) or num_slices < 1):
        raise MediaError(f"nii_num_slices must be a positive integer or None; got {num_slices!r}.")

    volume = _read_volume(path)  # (D0, D1, D2) float64
    total = volume.shape[axis]
    if total == 0:
        raise MediaError(f"{path} has no slices along axis {axis} (shape {volume.shape}).")
    if num_slices is not None and num_slices < total:
        indices = np.linspace(0, total - 1, num_slices, dtype=int)
    else:
        indices = np.arange(total)

    if window_center is not None and window_width is not None:
        low, high = window_center - window_width / 2, window_center + window_width / 2
        volume = np.clip(volume, low, high)

    slices = []
    for index in indices:
        plane = np.take(volume, int(index), axis=axis)  # (X, Y): the two remaining axes in order
        grey = _to_uint8(plane)
        slices.append(np.stack([grey, grey, grey], axis=0))  # (3, X, Y)
    return slices

"""A `Volume` -> slices as `(3, X, Y)` uint8 arrays, upstream-exact by default (upstream's `load_nii`).

Default rules = upstream HF-Version `load_nii`:
- raw voxel-array axis order: no reorientation, flip or rotation.
- slice i along `axis` 0, 1 or 2 (default 2, "axial" in upstream's README) is `volume[i]`, `volume[:, i]` or
  `volume[:, :, i]`; (X, Y) are the two remaining axes in order.
- `num_slices` < number of slices: keep `np.linspace(0, n - 1, num_slices, dtype=int)`; otherwise keep all.
- optional clip to [window_center - window_width / 2, window_center + window_width / 2] (both given).
- per-slice min-max to [0, 255] (`(x - min) / (max - min) * 255`), then `astype(uint8)` (truncation); a constant
  slice becomes zeros; grey replicated to 3 channels.
The other `VolumeOptions` (orientation, fixed windows, volume-wide normalisation, slice spacing) are extensions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

import numpy as np

from hulumed.errors import MediaError
from hulumed.processing.volume.geometry import Volume, Voxels, reorient
from hulumed.processing.volume.options import VolumeOptions
from hulumed.processing.windowing import resolve_window, windowed_rgb


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


def _to_uint8(slice_2d: np.ndarray) -> np.ndarray:
    """Per-slice min-max to [0, 255], truncated to uint8; zeros for a constant slice (upstream)."""
    low, high = slice_2d.min(), slice_2d.max()
    if high > low:
        return ((slice_2d - low) / (high - low) * 255).astype(np.uint8)
    return np.zeros(slice_2d.shape, dtype=np.uint8)


def _check_finite(plane: np.ndarray, source: str) -> None:
    if not np.isfinite(plane).all():
        bad = int(plane.size - np.isfinite(plane).sum())
        raise MediaError(
            f"{source} has {bad:,} NaN or infinite voxels in a slice the model receives. Replace them (e.g. "
            "numpy.nan_to_num) and save the volume again."
        )


def _volume_range(voxels: Voxels, axis: int, clip: Optional[tuple[float, float]], source: str) -> tuple[float, float]:
    """(min, max) of the whole (clipped) volume, one plane at a time (normalize="volume")."""
    low, high = np.inf, -np.inf
    for start in range(0, voxels.shape[axis], 16):
        for plane in voxels.planes(axis, range(start, min(start + 16, voxels.shape[axis]))):
            _check_finite(plane, source)
            if clip is not None:
                plane = np.clip(plane, *clip)
            low, high = min(low, float(plane.min())), max(high, float(plane.max()))
    return low, high


def slice_volume(volume: Volume, options: Optional[VolumeOptions] = None, **fields: Any) -> list[np.ndarray]:
    """Slices of `volume` as `(3, X, Y)` uint8 arrays; `fields` replace those of `options` (module docstring).

    Only the planes the model receives are read from `volume.voxels` (all of them for `normalize="volume"`, whose
    range spans the volume); each is converted to float64, checked for NaN / Inf, clipped and normalised on its own.
    """
    options = replace(options if options is not None else VolumeOptions(), **fields)
    axis = options.axis
    windows = resolve_window(options.window) if options.window is not None else None
    volume = reorient(volume, options.orientation)
    total = volume.shape[axis]
    if total == 0:
        raise MediaError(f"{volume.source} has no slices along axis {axis} (shape {volume.shape}).")
    spacing = options.slice_spacing
    if spacing is not None and not np.any(np.abs(volume.positions[axis] - volume.positions[axis][0]) > 0):
        if total > 1:
            raise MediaError(f"{volume.source} has no slice spacing along axis {axis}; drop slice_spacing.")
    indices = select_slices(volume.positions[axis], options.num_slices, spacing)

    clip = None
    if options.window_center is not None and options.window_width is not None:
        half = options.window_width / 2
        clip = (options.window_center - half, options.window_center + half)
    volume_range = None
    if options.normalize == "volume" and windows is None:
        volume_range = _volume_range(volume.voxels, axis, clip, volume.source)

    slices = []
    for plane in volume.voxels.planes(axis, indices):
        _check_finite(plane, volume.source)
        if clip is not None:
            plane = np.clip(plane, *clip)  # in the voxels' own dtype, as the whole-volume clip was
        plane = plane.astype(np.float64, copy=False)  # (X, Y): remaining axes
        if options.orientation == "radiological":
            plane = plane.T[::-1, ::-1]  # RAS (X, Y) -> viewer rows / columns (VolumeOptions)
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

"""`Volume`: voxels with their geometry, before slicing; and reorientation to RAS+.

Every reader (NIfTI, DICOM series) returns a `Volume`; `slicing.py` turns one into slices. `reorient` gives the
closest canonical RAS+ axis order (nibabel's `as_closest_canonical`), carrying the per-axis slice positions along.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hulumed.errors import MediaError


@dataclass
class Volume:
    """Voxels with their geometry, before slicing."""

    data: np.ndarray  # (D0, D1, D2) float voxels: raw NIfTI values, HU for CT DICOM
    affine: np.ndarray  # (4, 4) voxel index -> RAS+ millimetres
    positions: tuple[np.ndarray, np.ndarray, np.ndarray]  # mm of each index along axis 0, 1, 2
    source: str  # what was read, for messages (never patient data)


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

"""`Volume`: voxels with their geometry, before slicing; voxels read plane by plane; reorientation to RAS+.

Every reader (NIfTI, DICOM series) returns a `Volume` whose `voxels` are read on demand: a clinical CT is
512 x 512 x 300, and the model receives a few dozen of its slices, so a reader reads the planes it is asked for
(`Voxels.planes`) and nothing else where the file allows it (an uncompressed NIfTI through a memory map, a gzip
NIfTI in one forward pass, a DICOM series one file per slice). `ArrayVoxels` wraps an array already in memory.
`reorient` gives the closest canonical RAS+ axis order (nibabel's `as_closest_canonical`) as a view: a plane of
the reoriented volume is one plane of the raw one, transposed and flipped, so it reads no more than that plane.

Glossary: D0, D1, D2 the voxel axes as stored; a plane along `axis` is `(X, Y)`, the two other axes in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hulumed.errors import MediaError


class Voxels:
    """Voxel values of one volume, read a plane at a time (`planes`); `array()` reads them all."""

    shape: tuple[int, int, int]  # (D0, D1, D2)
    dtype: np.dtype  # of the values `planes` returns (float64 NIfTI values as get_fdata; float32 HU for DICOM)
    planes_read: int = 0  # how many planes have been read from the source (tests count full-volume passes)

    def _read(self, axis: int, indices: Sequence[int]) -> list[np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def planes(self, axis: int, indices: Sequence[int]) -> list[np.ndarray]:
        """Planes `(X, Y)` at `indices` along `axis`, in the order asked; each distinct plane is read once, in
        ascending order (one forward pass through a compressed file)."""
        indices = [int(i) for i in indices]
        for index in indices:
            if not 0 <= index < self.shape[axis]:
                raise IndexError(f"plane {index} along axis {axis} of a volume of shape {self.shape}")
        wanted = sorted(set(indices))
        read = dict(zip(wanted, self._read(axis, wanted)))
        self.planes_read += len(wanted)
        return [read[index] for index in indices]

    def array(self) -> np.ndarray:  # (D0, D1, D2)
        """Every voxel in memory, as `planes` gives them."""
        return np.stack(self.planes(2, range(self.shape[2])), axis=2)  # (D0, D1, D2)


def plane_index(axis: int, index: int) -> tuple[Any, ...]:
    """The basic-indexing key of plane `index` along `axis` (a view, never a copy of the volume)."""
    return (slice(None),) * axis + (index,)


class ArrayVoxels(Voxels):
    """Voxels already in memory."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data  # (D0, D1, D2)
        self.shape = tuple(int(n) for n in data.shape)  # type: ignore[assignment]
        self.dtype = data.dtype

    def _read(self, axis: int, indices: Sequence[int]) -> list[np.ndarray]:
        return [self.data[plane_index(axis, i)] for i in indices]  # (X, Y) views

    def array(self) -> np.ndarray:
        return self.data


class OrientedVoxels(Voxels):
    """`inner` seen in another axis order with flips (a nibabel orientation array), one raw plane per plane."""

    def __init__(self, inner: Voxels, ornt: np.ndarray) -> None:
        self.inner, self.ornt = inner, ornt
        shape = [0, 0, 0]
        for axis, (target, _) in enumerate(ornt):
            shape[int(target)] = inner.shape[axis]
        self.shape = tuple(shape)  # type: ignore[assignment]
        self.dtype = inner.dtype

    def _read(self, axis: int, indices: Sequence[int]) -> list[np.ndarray]:
        from nibabel.orientations import apply_orientation

        source = next(a for a, (target, _) in enumerate(self.ornt) if int(target) == axis)
        flipped = self.ornt[source][1] < 0
        count = self.inner.shape[source]
        raw = self.inner.planes(source, [count - 1 - i if flipped else i for i in indices])
        # a raw plane with its axis kept (length 1) goes through the whole-volume transform: flips and the
        # transpose act on it exactly as on the full array, and the flip of a length-1 axis is a no-op
        return [np.take(apply_orientation(np.expand_dims(p, source), self.ornt), 0, axis=axis) for p in raw]

    def array(self) -> np.ndarray:
        from nibabel.orientations import apply_orientation

        return apply_orientation(self.inner.array(), self.ornt)  # (R, A, S)


@dataclass
class Volume:
    """Voxels with their geometry, before slicing."""

    voxels: Voxels  # (D0, D1, D2): raw NIfTI values, HU for CT DICOM; an ndarray is wrapped in ArrayVoxels
    affine: np.ndarray  # (4, 4) voxel index -> RAS+ millimetres
    positions: tuple[np.ndarray, np.ndarray, np.ndarray]  # mm of each index along axis 0, 1, 2
    source: str  # what was read, for messages (never patient data)

    def __post_init__(self) -> None:
        if isinstance(self.voxels, np.ndarray):
            self.voxels = ArrayVoxels(self.voxels)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.voxels.shape

    @property
    def data(self) -> np.ndarray:  # (D0, D1, D2)
        """Every voxel in memory (reads the whole volume: slicing never needs this)."""
        return self.voxels.array()


def reorient(volume: Volume, orientation: str) -> Volume:
    """Volume in "raw" order, or permuted/flipped to the closest canonical RAS+ order (also for "radiological");
    no voxel is read here."""
    if orientation == "raw":
        return volume
    from nibabel.orientations import inv_ornt_aff, io_orientation

    ornt = io_orientation(volume.affine)  # rows: (output axis, +1 / -1) per input axis
    if not np.all(np.isfinite(ornt)):
        raise MediaError(
            f"The affine of {volume.source} is degenerate, so it has no RAS orientation. Use orientation='raw'."
        )
    affine = volume.affine @ inv_ornt_aff(ornt, volume.shape)
    positions: list[np.ndarray] = [np.zeros(0)] * 3
    for axis, (target, flip) in enumerate(ornt):
        positions[int(target)] = volume.positions[axis][::-1] if flip < 0 else volume.positions[axis]
    return replace(volume, voxels=OrientedVoxels(volume.voxels, ornt), affine=affine,
                   positions=tuple(positions))  # type: ignore[arg-type]

"""Reading a volume from a path and slicing it: `read_volume`, `load_volume`, `load_nifti`.

`read_volume` tells the formats apart by content: a folder, a zip or a DICOM file (`.dcm` or the `DICM` magic) is
a DICOM series (`dicom_series.py`), anything else NIfTI via nibabel (`nifti.py`). `load_volume` / `load_nifti`
check the `VolumeOptions` first, read, and slice (`slicing.py`); any failure not typed where it happened still
comes out as a `MediaError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from hulumed.errors import MediaError
from hulumed.processing import dicom
from hulumed.processing.volume import dicom_series
from hulumed.processing.volume.geometry import Volume
from hulumed.processing.volume.nifti import read_nifti
from hulumed.processing.volume.options import VolumeOptions
from hulumed.processing.volume.slicing import slice_volume

PathLike = Union[str, os.PathLike]
SliceKey = tuple[str, int, int, str]
_REMEMBERED: ContextVar[Optional[MutableMapping[SliceKey, list[np.ndarray]]]] = ContextVar(
    "hulumed_remembered_slices", default=None)


@contextmanager
def remembered_slices(store: MutableMapping[SliceKey, list[np.ndarray]]) -> Iterator[None]:
    """Within this block (this thread / task), ``load_volume`` of a (file, options) it already loaded into
    ``store`` returns those slices (read-only arrays) instead of decoding the file again; the key includes the
    file's modification time and size. Nothing is remembered outside such a block: the demo scopes it to one
    session's bounded cache (``demo/viewer.py``)."""
    token = _REMEMBERED.set(store)
    try:
        yield
    finally:
        _REMEMBERED.reset(token)


def _slice_key(path: PathLike, options: VolumeOptions) -> SliceKey | None:
    try:
        info = os.stat(path)
    except OSError:
        return None  # missing: load_volume's own error
    return (str(Path(path).resolve()), info.st_mtime_ns, info.st_size, repr(options))


def read_volume(path: PathLike, time_index: Optional[int] = None, series_uid: Optional[str] = None,
                axis: Optional[int] = None) -> Volume:
    """Any supported volume: a DICOM folder / zip / file (by content, or `.dcm`), else NIfTI via nibabel; with
    `axis`, a NIfTI volume whose slices along it would be over the plane limit is refused before reading."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"Volume {path} does not exist. Pass a .nii/.nii.gz file or a DICOM file, folder or zip.")
    if path.is_dir() or dicom.sniff_zip(path) or dicom.sniff_dicom(path):
        if time_index is not None:
            raise MediaError(f"time_index applies to 4-D NIfTI volumes; {path} is DICOM. Drop time_index.")
        return dicom_series.read_series(path, series_uid=series_uid)
    if series_uid is not None:
        raise MediaError(f"series_uid applies to DICOM input only; {path} is not DICOM.")
    return read_nifti(path, time_index=time_index, axis=axis)


def _sliced(read: Callable[[], Volume], path: PathLike, options: VolumeOptions) -> list[np.ndarray]:
    """Read the volume with `read` and slice it; every failure comes out as a MediaError."""
    try:
        return slice_volume(read(), options)
    except MediaError:
        raise
    except Exception as err:  # MemoryError on absurd sizes, library bugs on corrupt input, ...
        raise MediaError(
            f"Cannot load volume {path}: {type(err).__name__}. The file may be corrupt or too large."
        ) from err


def load_volume(path: PathLike, options: Optional[VolumeOptions] = None, **fields: Any) -> list[np.ndarray]:
    """A NIfTI or DICOM volume (file, series folder or zip; detected by content) as `(3, X, Y)` uint8 slices.

    `fields` replace those of `options` (`VolumeOptions`; the defaults are upstream's `load_nii`). A DICOM series
    is read as `(rows, columns, slices)` HU voxels sorted along the slice normal, so the default `axis=2` gives
    the images as stored; `series_uid` picks one series of a folder that holds several.
    """
    options = replace(options if options is not None else VolumeOptions(), **fields)
    store = _REMEMBERED.get()
    key = _slice_key(path, options) if store is not None else None
    if store is not None and key is not None and key in store:
        return list(store[key])
    slices = _sliced(
        lambda: read_volume(path, time_index=options.time_index, series_uid=options.series_uid, axis=options.axis),
        path, options,
    )
    if store is not None and key is not None:
        for plane in slices:
            plane.flags.writeable = False  # shared by every later reader of this block
        store[key] = slices
    return list(slices)


def load_nifti(path: PathLike, options: Optional[VolumeOptions] = None, **fields: Any) -> list[np.ndarray]:
    """Like `load_volume`, for NIfTI (or other nibabel) files only."""
    options = replace(options if options is not None else VolumeOptions(), **fields)
    path = Path(path)
    if not path.exists():
        raise MediaError(f"NIfTI file {path} does not exist. Check the path.")
    if options.series_uid is not None:
        raise MediaError(f"series_uid applies to DICOM input only; {path} is read as NIfTI.")
    return _sliced(lambda: read_nifti(path, time_index=options.time_index, axis=options.axis), path, options)

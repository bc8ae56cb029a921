"""3-D volumes (NIfTI, DICOM series) -> slices the model reads as a "video" item (merge 2, no timestamps).

* `geometry.py`: the `Volume` type (voxels, affine, per-axis positions) and reorientation to RAS+.
* `options.py`: `VolumeOptions`, how a volume becomes slices (defaults = upstream's `load_nii`), and the keys
  of the processor's `3d` item.
* `nifti.py`, `dicom_series.py`: the readers, each returning a `Volume` (2-D DICOM reading is `processing/dicom.py`).
* `slicing.py`: `Volume` + `VolumeOptions` -> `(3, X, Y)` uint8 slices.
* `reader.py`: `read_volume` (format by content), `load_volume` / `load_nifti` (read + slice).

Every failure (missing file, not a volume, truncated data, NaN/Inf voxels, too many voxels, wrong
dimensionality, bad options) is a `MediaError` whose message says what to do.
"""

from hulumed.processing.volume.dicom_series import read_series
from hulumed.processing.volume.geometry import Volume, reorient
from hulumed.processing.volume.nifti import read_nifti, sniff_nifti
from hulumed.processing.volume.options import NORMALIZATIONS, ORIENTATIONS, VOLUME_ITEM_KEYS, VolumeOptions
from hulumed.processing.volume.reader import load_nifti, load_volume, read_volume
from hulumed.processing.volume.slicing import select_slices, slice_volume

__all__ = [
    "NORMALIZATIONS",
    "ORIENTATIONS",
    "VOLUME_ITEM_KEYS",
    "Volume",
    "VolumeOptions",
    "load_nifti",
    "load_volume",
    "read_nifti",
    "read_series",
    "read_volume",
    "reorient",
    "select_slices",
    "slice_volume",
    "sniff_nifti",
]

"""`VolumeOptions`: how a volume becomes slices, checked once; and the `3d` item keys that map onto it.

Defaults are upstream's `load_nii`: axis 2, every slice (or `num_slices` by linspace),
optional clip to `window_center ± window_width / 2`, per-slice min-max. None of the other options is upstream;
each changes the pixels the model sees (docs/media.md):

- `orientation`: "raw" (default) | "ras" (nibabel's closest canonical RAS+ axis order) | "radiological" (RAS,
  then every slice shown as a viewer does: axial/coronal with the patient's right on the image left, anterior /
  superior at the top; sagittal with anterior on the left, superior at the top).
- `window`: a preset of `WINDOW_PRESETS`, "ct_rgb" (three windows as R, G, B), or `(center, width)`: fixed window
  -> [0, 255], rounded; no min-max. Exclusive with `window_center` / `window_width`.
- `normalize`: "slice" (default, upstream) | "volume" (one min-max over the whole clipped volume, rounded).
- `slice_spacing` (mm): keep the slices nearest to positions `0, s, 2s, ...` mm from the first slice (DICOM series
  use their real, possibly uneven, positions); `num_slices` then caps the count with the same linspace rule.
- `time_index`: which volume of a 4-D NIfTI series to use (required when there is more than one).
- `series_uid`: which series of a DICOM folder or zip (default: the one with the most slices).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from hulumed.errors import MediaError
from hulumed.options import option
from hulumed.processing.windowing import WindowSpec

ORIENTATIONS = ("raw", "ras", "radiological")
NORMALIZATIONS = ("slice", "volume")

# keys of the processor's `3d` item -> VolumeOptions field (upstream's three, then this package's options)
_ITEM_FIELDS = {
    "nii_num_slices": "num_slices",
    "nii_axis": "axis",
    "window_center": "window_center",
    "window_width": "window_width",
    "window": "window",
    "orientation": "orientation",
    "normalize": "normalize",
    "slice_spacing": "slice_spacing",
    "time_index": "time_index",
    "series_uid": "series_uid",
}
VOLUME_ITEM_KEYS = ("image_path", *_ITEM_FIELDS)
# The OpenAI-style ``volume_url`` part (server requests, eval's endpoint client, vLLM's media kwargs) names the
# options as the item does, and upstream's two as the CLI does: ``slices`` / ``axis``. One codec both ways.
PART_SHORT_NAMES = {"slices": "nii_num_slices", "axis": "nii_axis"}
VOLUME_PART_KEYS = {**{k: k for k in VOLUME_ITEM_KEYS if k != "image_path"}, **PART_SHORT_NAMES}


def item_from_part(options: dict) -> dict:
    """A ``volume_url`` part's options -> the ``3d`` item's keys (unknown keys left out: the caller refuses them)."""
    return {VOLUME_PART_KEYS[k]: v for k, v in options.items() if k in VOLUME_PART_KEYS and v is not None}


def part_from_item(item: dict) -> dict:
    """A ``3d`` item's options (without ``image_path``) -> a ``volume_url`` part's, with the short names."""
    short = {v: k for k, v in PART_SHORT_NAMES.items()}
    return {short.get(k, k): v for k, v in item.items() if k != "image_path"}


@dataclass(frozen=True)
class VolumeOptions:
    """How one volume is sliced; invalid values raise `MediaError` when the options are made."""

    num_slices: Optional[int] = option(None, "slices taken from a volume, evenly spaced (default: all)")
    axis: int = option(2, "slicing axis: 0 sagittal, 1 coronal, 2 axial (upstream's nii_axis)", choices=(0, 1, 2))
    window_center: Optional[float] = option(None, "with --window-width: upstream's clip before the per-slice min-max")
    window_width: Optional[float] = option(None, "with --window-center: upstream's clip width")
    window: Optional[WindowSpec] = option(
        None, "CT window for a volume: a preset name (lung, bone, ...), ct_rgb, or CENTER,WIDTH (--window=-600,1500); "
        "mapped to 0-255, no min-max (default: upstream's per-slice min-max)")
    normalize: str = option("slice", "intensity scaling: slice (upstream) or volume (one min-max)",
                             choices=NORMALIZATIONS)
    orientation: str = option("raw", "volume axes: raw (upstream), ras or radiological", choices=ORIENTATIONS)
    slice_spacing: Optional[float] = option(None, "millimetres between kept slices (DICOM: real positions)")
    time_index: Optional[int] = option(None, "the time point of a 4-D volume")
    series_uid: Optional[str] = option(None, "the DICOM series to use when a folder or zip holds several")

    def __post_init__(self) -> None:
        if isinstance(self.orientation, str):
            object.__setattr__(self, "orientation", self.orientation.lower())
        axis, num_slices, spacing = self.axis, self.num_slices, self.slice_spacing
        if axis not in (0, 1, 2) or isinstance(axis, bool):
            raise MediaError(
                f"nii_axis must be 0, 1 or 2 (sagittal, coronal, axial in upstream's naming); got {axis!r}."
            )
        if num_slices is not None and (
            not isinstance(num_slices, (int, np.integer)) or isinstance(num_slices, bool) or num_slices < 1
        ):
            raise MediaError(f"nii_num_slices must be a positive integer or None; got {num_slices!r}.")
        if self.orientation not in ORIENTATIONS:
            raise MediaError(f"orientation must be one of {list(ORIENTATIONS)}; got {self.orientation!r}.")
        if self.normalize not in NORMALIZATIONS:
            raise MediaError(f"normalize must be one of {list(NORMALIZATIONS)}; got {self.normalize!r}.")
        if self.window is not None and (self.window_center is not None or self.window_width is not None):
            raise MediaError(
                "Pass either window (a preset or (center, width), mapped to [0, 255]) or window_center/window_width "
                "(upstream's clip before min-max), not both."
            )
        if spacing is not None and not (
            isinstance(spacing, (int, float, np.integer, np.floating)) and np.isfinite(spacing) and spacing > 0
        ):
            raise MediaError(f"slice_spacing must be a positive number of millimetres; got {spacing!r}.")

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> "VolumeOptions":
        """The options of a processor `3d` item (`image_path` aside); unknown keys raise `MediaError`."""
        unknown = set(item) - set(VOLUME_ITEM_KEYS)
        if unknown:
            raise MediaError(f"Unsupported 3d option(s) {sorted(unknown)}; supported: {list(VOLUME_ITEM_KEYS)}.")
        values = {name: item[key] for key, name in _ITEM_FIELDS.items() if item.get(key) is not None}
        if not values.get("normalize"):
            values.pop("normalize", None)
        if not values.get("orientation"):
            values.pop("orientation", None)
        return cls(**values)

    def item(self, path: str) -> dict[str, Any]:
        """The processor's `3d` item for `path` with these options (`from_item`'s inverse): the axis always,
        the other options when they differ from the defaults; a window pair as a JSON-ready list."""
        item: dict[str, Any] = {"image_path": path, "nii_axis": self.axis}
        defaults = VolumeOptions()
        for key, name in _ITEM_FIELDS.items():
            value = getattr(self, name)
            if name != "axis" and value != getattr(defaults, name):
                item[key] = list(value) if isinstance(value, tuple) else value
        return item

"""Intensity windows: CT window presets and the window -> uint8 mapping used by the volume and DICOM loaders.

In:  voxel values in their physical unit (Hounsfield units for CT after rescale slope/intercept) and a window
     spec: a preset name from `WINDOW_PRESETS`, the three-window RGB mode `"ct_rgb"` (`RGB_WINDOWS`), or an
     explicit `(center, width)` pair.
Out: uint8 arrays. One window maps `[center - width / 2, center + width / 2]` linearly onto [0, 255], clips
     values outside, and rounds to the nearest integer. `"ct_rgb"` stacks three such windows as the R, G and B
     channels, as MedGemma's CT notebook does (wide -1024..1024, soft tissue -135..215, brain 0..80 HU).

None of this is upstream behaviour: upstream Hulu-Med only clips to an optional window and then min-max
normalises every slice (`volume/slicing.py` keeps that as the default). A window is one option away (`window=` of the
`3d` item, of `load_volume` and of `load_dicom_image`). Values are the usual radiology teaching values
(e.g. Radiopaedia "Windowing (CT)"); a site's protocol may differ, which is why `(center, width)` is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

from hulumed.errors import MediaError


@dataclass(frozen=True)
class Window:
    """A linear intensity window, in the unit of the data (HU for CT)."""

    center: float
    width: float

    @property
    def low(self) -> float:
        return self.center - self.width / 2

    @property
    def high(self) -> float:
        return self.center + self.width / 2


# name -> window (center, width) in HU
WINDOW_PRESETS: dict[str, Window] = {
    "lung": Window(-600.0, 1500.0),
    "mediastinum": Window(50.0, 350.0),
    "soft_tissue": Window(50.0, 400.0),
    "abdomen": Window(60.0, 400.0),
    "liver": Window(30.0, 150.0),
    "bone": Window(400.0, 1800.0),
    "brain": Window(40.0, 80.0),
    "subdural": Window(75.0, 215.0),
    "stroke": Window(32.0, 8.0),
}

# the three-window RGB mode: R, G, B windows (MedGemma's CT preprocessing)
RGB_MODE = "ct_rgb"
RGB_WINDOWS: tuple[Window, Window, Window] = (
    Window(0.0, 2048.0),  # wide: -1024 .. 1024 HU
    Window(40.0, 350.0),  # soft tissue / mediastinum: -135 .. 215 HU
    Window(40.0, 80.0),  # brain: 0 .. 80 HU
)

WindowSpec = Union[str, Window, Sequence[float]]


def window_names() -> list[str]:
    """Every name `resolve_window` accepts (presets and the RGB mode), for CLI choices and error messages."""
    return sorted(WINDOW_PRESETS) + [RGB_MODE]


def resolve_window(spec: WindowSpec) -> tuple[Window, ...]:
    """A window spec as a tuple of 1 (grey) or 3 (RGB) windows; bad specs raise `MediaError`."""
    if isinstance(spec, Window):
        windows: tuple[Window, ...] = (spec,)
    elif isinstance(spec, str):
        name = spec.strip().lower().replace("-", "_").replace(" ", "_")
        if name == RGB_MODE:
            windows = RGB_WINDOWS
        elif name in WINDOW_PRESETS:
            windows = (WINDOW_PRESETS[name],)
        else:
            raise MediaError(f"Unknown window {spec!r}. Use one of {window_names()} or a (center, width) pair.")
    elif isinstance(spec, dict) and set(spec) == {"center", "width"}:
        windows = (Window(float(spec["center"]), float(spec["width"])),)
    elif isinstance(spec, (list, tuple)) and len(spec) == 2 and all(_is_number(v) for v in spec):
        windows = (Window(float(spec[0]), float(spec[1])),)
    else:
        raise MediaError(
            f"A window must be a preset name ({', '.join(window_names())}), a (center, width) pair or "
            f"{{'center': c, 'width': w}}; got {spec!r}."
        )
    for window in windows:
        if not (np.isfinite(window.center) and np.isfinite(window.width) and window.width > 0):
            raise MediaError(f"A window needs a finite center and a positive width; got {window}.")
    return windows


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Map `window` onto [0, 255] (clip outside, round to nearest) -> uint8 array of the same shape."""
    scaled = (np.asarray(values, dtype=np.float64) - window.low) / window.width * 255.0
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def windowed_rgb(plane: np.ndarray, windows: tuple[Window, ...]) -> np.ndarray:
    """One 2-D plane `(X, Y)` through 1 or 3 windows -> `(3, X, Y)` uint8 (grey replicated for one window)."""
    if len(windows) == 1:
        grey = apply_window(plane, windows[0])
        return np.stack([grey, grey, grey], axis=0)  # (3, X, Y)
    return np.stack([apply_window(plane, w) for w in windows], axis=0)  # (3, X, Y)

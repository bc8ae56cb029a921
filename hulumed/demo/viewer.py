"""What the model will see: volume slices, the slice under the viewer's slider, sampled video frames.

Nothing here re-implements loading: the model's slices and frames come from the processor's own
``load_conversation_media`` (the path ``engine.prepare`` takes), the slice indices from
``processing.volume.select_slices`` (the rule ``slice_volume`` applies), and the viewer's slice from
``slice_volume`` itself on a one-slice view of the cached volume, so a viewer slice that the model receives
is pixel-identical to its strip image (tests/unit/test_demo_logic.py checks it).

In:  an ``Attachment`` (its path and options) and the processor. Out: ``(H, W, 3)`` uint8 images (Gradio's
layout) with captions.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from nibabel.orientations import io_orientation

from ..errors import MediaError
from ..processing.volume import Volume, read_volume, select_slices, slice_volume
from .attachments import Attachment

Captioned = tuple[np.ndarray, str]  # (H, W, 3) uint8 image, caption
STRIP_LIMIT = 32  # thumbnails the page's strip shows at most (a 300-slice CT would otherwise send 300 PNGs)


def _hwc(frame: np.ndarray) -> np.ndarray:
    """A loader's ``(3, H, W)`` uint8 frame as ``(H, W, 3)`` for display."""
    return np.ascontiguousarray(np.transpose(frame, (1, 2, 0)))  # (H, W, 3)


def _loaded_part(processor: Any, attachment: Attachment) -> dict[str, Any]:
    """The attachment's part after the processor loaded it (``video`` frames, ``timestamps`` for videos)."""
    loaded = processor.load_conversation_media([{"role": "user", "content": [attachment.part()]}])
    return loaded[0]["content"][0]


class VolumeCache:
    """Volumes opened once (``read_volume``: header and geometry) for the viewer, a few at a time, most recently
    used kept; a slice is read when it is shown."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._items: OrderedDict[str, Volume] = OrderedDict()
        self.views: dict[tuple[str, str], VolumeView] = {}  # (path, repr(options)) -> view, insertion-ordered
        self._lock = threading.Lock()  # sessions call from several worker threads

    def get(self, path: str) -> Volume:
        with self._lock:
            if path in self._items:
                self._items.move_to_end(path)
                return self._items[path]
        volume = read_volume(path)  # header and geometry only: planes are read when shown
        with self._lock:
            self._items[path] = volume
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return volume


@dataclass
class VolumeView:
    """Everything the slice viewer shows for one volume attachment."""

    shape: tuple[int, int, int]  # voxels (D0, D1, D2)
    total: int  # slices along the chosen axis
    indices: list[int]  # slices the model receives, in order
    strip: list[Captioned]  # exactly those slices, as the model receives them


def volume_view(processor: Any, cache: VolumeCache, attachment: Attachment) -> VolumeView:
    """Slice count, model slice indices and the model's slices for a volume attachment (remembered per path and
    options: attaching, re-rendering and sliding reuse one processor run)."""
    key = (attachment.path, repr(attachment.volume))
    with cache._lock:
        if key in cache.views:
            return cache.views[key]
    view = _volume_view(processor, cache, attachment)
    with cache._lock:
        cache.views[key] = view
        while len(cache.views) > cache.size:
            cache.views.pop(next(iter(cache.views)))
    return view


def _volume_view(processor: Any, cache: VolumeCache, attachment: Attachment) -> VolumeView:
    volume = cache.get(attachment.path)
    options = attachment.volume
    total = int(volume.shape[options.axis])
    indices = [int(i) for i in select_slices(volume.positions[options.axis], options.num_slices)]
    frames = _loaded_part(processor, attachment)["video"]  # the processor's own load_volume result
    if len(frames) != len(indices):  # pragma: no cover - one rule, two readers; keep the guarantee loud
        raise MediaError(f"{attachment.name}: the viewer expected {len(indices)} slices, the processor gave "
                         f"{len(frames)}")
    strip = [(_hwc(f), f"slice {i}") for f, i in zip(frames, indices)]
    return VolumeView(tuple(int(s) for s in volume.shape), total, indices, strip)  # type: ignore[arg-type]


def viewer_slice(cache: VolumeCache, attachment: Attachment, index: int, radiological: bool = False) -> np.ndarray:
    """Slice ``index`` along the attachment's axis with its window, as ``(H, W, 3)`` uint8.

    ``slice_volume`` runs on a one-slice view of the volume, so intensities follow the same per-slice rules
    as the model's slices (identical pixels for an index the model receives). ``radiological`` shows that slice
    as a radiologist reads it (patient's right on the image's left, anterior / superior up; from the affine):
    the display only, the model's slices keep the attachment's options.
    """
    volume = cache.get(attachment.path)
    axis = attachment.volume.axis
    total = volume.shape[axis]
    index = int(min(max(index, 0), total - 1))
    [plane] = volume.voxels.planes(axis, [index])
    data = np.expand_dims(plane, axis)  # one slice kept along `axis`
    positions = list(volume.positions)
    positions[axis] = volume.positions[axis][[index]]
    one = replace(volume, voxels=data, positions=tuple(positions))
    window = attachment.volume.window
    options: dict[str, Any] = {"axis": axis, "window": list(window) if isinstance(window, tuple) else window}
    if radiological:
        ornt = io_orientation(volume.affine)  # the raw axis lands on RAS axis ornt[axis, 0]
        if np.all(np.isfinite(ornt)):
            options.update(axis=int(ornt[axis][0]), orientation="radiological")
    [plane] = slice_volume(one, **options)
    return _hwc(plane)


def shown_strip(view: VolumeView, limit: int = STRIP_LIMIT) -> tuple[list[Captioned], str]:
    """At most ``limit`` of the model's slices, evenly spread (first and last included), for the page's strip,
    and a caption saying how many of how many are shown; every slice stays reachable with the slider."""
    count = len(view.strip)
    if count <= limit:
        return view.strip, f"What the model receives: all {count} slices"
    chosen = np.linspace(0, count - 1, limit).round().astype(int)
    return ([view.strip[i] for i in chosen],
            f"What the model receives: {count} slices ({limit} shown here, evenly spread; the slider shows any)")


def video_frames(processor: Any, attachment: Attachment) -> list[Captioned]:
    """The sampled frames the model receives, captioned with their timestamps (as the chat template says)."""
    part = _loaded_part(processor, attachment)
    frames = part["video"]
    if not frames:
        raise MediaError(f"{attachment.name}: no frames could be sampled from this video.")
    stamps = part.get("timestamps") or [None] * len(frames)
    return [(_hwc(f), f"{t:.1f}s" if t is not None else f"frame {k}") for k, (f, t) in enumerate(zip(frames, stamps))]


def image_preview(processor: Any, attachment: Attachment) -> Captioned:
    """The image as the processor loads it (DICOM through its modality / VOI path)."""
    from ..processing.image import to_rgb_array

    value = _loaded_part(processor, attachment)["image"][0]
    return to_rgb_array(value), attachment.name  # (H, W, 3) uint8

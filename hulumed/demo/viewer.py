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
from collections.abc import Callable, Iterator, MutableMapping
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
    """The attachment's part after the processor loaded it (``video`` frames, ``timestamps`` for videos): the first
    generation's ``load_conversation_media``, or the second generation's front end (its own frame choice)."""
    from ..processing.qwen3_vl_inputs import is_stock_processor, loaded_part

    if is_stock_processor(processor):
        return loaded_part(processor, attachment.part())
    loaded = processor.load_conversation_media([{"role": "user", "content": [attachment.part()]}])
    return loaded[0]["content"][0]


#: What one demo session may keep decoded (volumes' in-memory voxels, the model's slices): a 512x512x300 CT in
#: float64 is 600 MiB, its 64 slices as RGB 50 MiB (the entry just made is always kept).
SESSION_BUDGET_BYTES = 1024 * 2**20
#: What all sessions of one demo may keep decoded together (least recently used sessions are dropped first).
TOTAL_BUDGET_BYTES = 1536 * 2**20


def _volume_bytes(volume: Volume) -> int:
    """Bytes a cached volume holds in memory (voxels read whole; a memory-mapped or lazily read file counts 0)."""
    held, voxels = 0, volume.voxels
    while voxels is not None:
        for name in ("_whole", "data"):  # NiftiVoxels read whole / ArrayVoxels (multi-frame DICOM, numpy)
            array = getattr(voxels, name, None)
            if isinstance(array, np.ndarray) and not isinstance(array, np.memmap):
                held += array.nbytes
        voxels = getattr(voxels, "inner", None)  # OrientedVoxels wraps another
    return held


class VolumeCache:
    """One session's volumes opened once (``read_volume``: header and geometry) and the model's slices of each
    (path, options), most recently used kept: at most ``size`` of each and ``budget_bytes`` in all (the least
    recently used entry is dropped first; the entry just made is always kept). A slice is read when shown."""

    def __init__(self, size: int = 4, budget_bytes: int = SESSION_BUDGET_BYTES,
                 on_grow: Callable[[], None] | None = None) -> None:
        self.size = size
        self.budget_bytes = budget_bytes
        self.on_grow = on_grow  # told after an entry is added (the demo's budget over all sessions)
        self._items: OrderedDict[str, Volume] = OrderedDict()
        self.views: OrderedDict[tuple[str, str], VolumeView] = OrderedDict()  # (path, repr(options)) -> view
        # the model's slices of each (file, options) as load_volume returned them: the engine's prepare and the
        # viewer read them from here inside ``remembering()``, so an attached volume is decoded once
        self.slices: _SliceStore = _SliceStore(self)
        self._lock = threading.Lock()  # a session's events may run in several worker threads

    def get(self, path: str) -> Volume:
        with self._lock:
            if path in self._items:
                self._items.move_to_end(path)
                return self._items[path]
        volume = read_volume(path)  # header and geometry only: planes are read when shown
        with self._lock:
            self._items[path] = volume
            self._shrink(keep=path)
        if self.on_grow is not None:
            self.on_grow()
        return volume

    def view(self, key: tuple[str, str]) -> VolumeView | None:
        with self._lock:
            if key in self.views:
                self.views.move_to_end(key)
                return self.views[key]
        return None

    def keep_view(self, key: tuple[str, str], view: VolumeView) -> None:
        with self._lock:
            self.views[key] = view
            self._shrink(keep=key)
        if self.on_grow is not None:
            self.on_grow()

    def remembering(self) -> Any:
        """A block in which ``load_volume`` of a (file, options) this session already decoded reuses its slices."""
        from ..processing.volume.reader import remembered_slices

        return remembered_slices(self.slices)

    @property
    def held_bytes(self) -> int:
        """Bytes this cache holds: the model's slices of every view and of ``slices``, plus volumes read whole."""
        return (sum(view.nbytes for view in self.views.values())
                + sum(plane.nbytes for planes in self.slices.entries.values() for plane in planes)
                + sum(_volume_bytes(volume) for volume in self._items.values()))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.views.clear()
            self.slices.entries.clear()

    def _shrink(self, keep: Any) -> None:
        while len(self.views) > self.size:
            self.views.popitem(last=False)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        while len(self.slices.entries) > self.size:
            self.slices.entries.popitem(last=False)
        while self.held_bytes > self.budget_bytes:
            view = next((k for k in self.views if k != keep), None)
            planes = next((k for k in self.slices.entries if k != keep), None)
            volume = next((k for k in self._items if k != keep and (view is None or k != view[0])), None)
            if planes is not None:
                self.slices.entries.pop(planes)
            elif view is not None:
                self.views.pop(view)
            elif volume is not None:
                self._items.pop(volume)
            else:
                return  # only the newest entry is left: kept, it is what the page shows


class _SliceStore(MutableMapping):
    """``load_volume``'s slices per (file, mtime, size, options), counted in the owning cache's budget."""

    def __init__(self, owner: VolumeCache) -> None:
        self.owner = owner
        self.entries: OrderedDict[Any, list[np.ndarray]] = OrderedDict()

    def __getitem__(self, key: Any) -> list[np.ndarray]:
        with self.owner._lock:
            self.entries.move_to_end(key)
            return self.entries[key]

    def __setitem__(self, key: Any, value: list[np.ndarray]) -> None:
        with self.owner._lock:
            self.entries[key] = value
            self.owner._shrink(keep=key)
        if self.owner.on_grow is not None:
            self.owner.on_grow()

    def __delitem__(self, key: Any) -> None:
        with self.owner._lock:
            del self.entries[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries


@dataclass
class VolumeView:
    """Everything the slice viewer shows for one volume attachment."""

    shape: tuple[int, int, int]  # voxels (D0, D1, D2)
    total: int  # slices along the chosen axis
    indices: list[int]  # slices the model receives, in order
    strip: list[Captioned]  # exactly those slices, as the model receives them

    @property
    def nbytes(self) -> int:
        return sum(image.nbytes for image, _ in self.strip)


def volume_view(processor: Any, cache: VolumeCache, attachment: Attachment) -> VolumeView:
    """Slice count, model slice indices and the model's slices for a volume attachment (remembered per path and
    options: attaching, re-rendering and sliding reuse one processor run)."""
    key = (attachment.path, repr(attachment.volume))
    view = cache.view(key)
    if view is None:
        view = _volume_view(processor, cache, attachment)
        cache.keep_view(key, view)
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

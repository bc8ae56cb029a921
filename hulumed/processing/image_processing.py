"""`HulumedImageProcessor`: images and videos -> flattened 14x14 patches, exactly as upstream.

In:  a list of visual items; an item is one image (PIL or numpy) or one video/volume (a list of frames or a
     4-D array). A merge size per item (1 for images, 2 for video/3-D in Hulu-Med).
Out: `pixel_values` float32 `(P, C*14*14)` = `(P, 588)`, `grid_sizes` int64 `(n, 3)` rows `(t, gh, gw)` in
     patches before merging, `merge_sizes` int64 `(n,)`; P = sum over items of t*gh*gw.

Dimension names: t frames of an item, C = 3 channels, (H', W') target size in pixels, p = patch size (14),
m = merge size, f = p*m the resize factor, gh = H'/p, gw = W'/p.

Target size (upstream's `image_processing_hulumed.py`), from each item's first frame only:
- all merge sizes equal -> `simple_batched_resize` (per-request budget `max_pixels // num_frames_in_request`,
  per-item minimum `min_tokens` merged tokens);
- otherwise -> `batched_resize` (one global scale over all items, no minimum).
A PIL probe's `.size` is read as (height, width) by upstream -- the width/height swap. It is reproduced
by default (`swap_pil_size=True`) and can be switched off; numpy probes are never swapped.

Pixels: PIL bicubic resize of the uint8 frame (`reducing_gap=None`), rescale
`float32(float64(x) * rescale_factor)`, normalise `(x - mean) / std` in float32, channels first, then patch
flattening `(t, C, gh/m, m, p, gw/m, m, p) -> (0, 2, 5, 3, 6, 1, 4, 7) -> (t*gh*gw, C*p*p)`, i.e. rows in
merge-block order (frame, merged row, merged col, in-block row, in-block col), vectors in (channel, y, x) order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.image_utils import ChannelDimension, infer_channel_dimension_format
from transformers.processing_utils import ImagesKwargs

from hulumed.errors import MediaError

Frame = Union[Image.Image, np.ndarray]
Item = Union[Frame, Sequence[Frame]]

_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # upstream class defaults (the checkpoint overrides them)
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class HulumedImagesKwargs(ImagesKwargs, total=False):
    """Call-time options of `HulumedImageProcessor` beyond transformers' `ImagesKwargs`."""

    min_tokens: int
    max_tokens: int
    patch_size: int
    merge_size: Union[int, list[int], None]
    swap_pil_size: bool


def _as_numpy(frame: Any) -> Any:
    """torch tensors -> numpy; PIL and numpy unchanged."""
    if isinstance(frame, (Image.Image, np.ndarray)):
        return frame
    if hasattr(frame, "detach"):  # torch.Tensor
        return frame.detach().cpu().numpy()
    raise MediaError(f"Unsupported frame type {type(frame).__name__}; pass PIL images or numpy arrays.")


def is_video(item: Any) -> bool:
    """Upstream's `is_valid_video`: a list/tuple of frames, or a 4-D array."""
    if isinstance(item, (list, tuple)):
        return all(isinstance(_as_numpy(frame), (Image.Image, np.ndarray)) for frame in item)
    return getattr(item, "ndim", None) == 4 and not isinstance(item, Image.Image)


def frames_of(item: Item) -> list[Frame]:
    """The frames of an item: `[image]` for an image, the frame list for a video / 4-D array."""
    if is_video(item):
        return [_as_numpy(frame) for frame in item]
    return [_as_numpy(item)]


def _channel_format(array: np.ndarray) -> ChannelDimension:
    try:
        return infer_channel_dimension_format(array)
    except ValueError as err:
        raise MediaError(f"Cannot tell the channel axis of an image array of shape {array.shape}: {err}") from err


def probe_size(item: Item, swap_pil_size: bool = True) -> tuple[int, int]:
    """(height, width) of the item's first frame as upstream reads it (swapped for PIL when `swap_pil_size`)."""
    frame = frames_of(item)[0]
    if isinstance(frame, Image.Image):
        width, height = frame.size
        return (width, height) if swap_pil_size else (height, width)
    if frame.ndim == 2:
        return int(frame.shape[0]), int(frame.shape[1])
    if _channel_format(frame) == ChannelDimension.FIRST:
        return int(frame.shape[1]), int(frame.shape[2])
    return int(frame.shape[0]), int(frame.shape[1])


def simple_batched_resize(
    items: Sequence[Item], factor: int, min_tokens: int = 16, max_tokens: int = 16384, swap_pil_size: bool = True
) -> list[tuple[int, int]]:
    """Target (height, width) per item when every item has the same merge size (upstream)."""
    min_pixels = min_tokens * factor * factor
    max_pixels = max_tokens * factor * factor
    num_images = sum(len(item) if is_video(item) else 1 for item in items)
    budget = max_pixels // num_images
    sizes = []
    for item in items:
        height, width = probe_size(item, swap_pil_size)
        h_bar = round(height / factor) * factor
        w_bar = round(width / factor) * factor
        if h_bar * w_bar > budget:
            beta = math.sqrt((height * width) / budget)
            h_bar = math.floor(height / beta / factor) * factor
            w_bar = math.floor(width / beta / factor) * factor
        if h_bar * w_bar < min_pixels:
            beta = math.sqrt(min_pixels / (height * width))
            h_bar = math.ceil(height * beta / factor) * factor
            w_bar = math.ceil(width * beta / factor) * factor
        sizes.append((h_bar, w_bar))
    return sizes


def batched_resize(
    items: Sequence[Item], factors: Sequence[int], max_tokens: int = 16384, swap_pil_size: bool = True
) -> list[tuple[int, int]]:
    """Target (height, width) per item when merge sizes differ (upstream; no minimum is enforced)."""
    probes = [(len(frames_of(item)), *probe_size(item, swap_pil_size)) for item in items]
    total_tokens = sum(t * math.ceil(h / f) * math.ceil(w / f) for (t, h, w), f in zip(probes, factors))
    if total_tokens > max_tokens:
        beta = math.sqrt(total_tokens / max_tokens)
        return [
            (math.floor(h / beta / f) * f, math.floor(w / beta / f) * f) for (_, h, w), f in zip(probes, factors)
        ]
    return [(round(h / f) * f, round(w / f) * f) for (_, h, w), f in zip(probes, factors)]


#: Bounds of ``preprocessor_config.json`` (released: 14, 16..16384 tokens): a file outside them would make a tiny
#: image resize to billions of pixels or divide by zero, so it is refused when the processor is built.
MAX_PATCH_SIZE = 64
MAX_TOKENS_BOUND = 131_072
MAX_MERGE_SIZE = 8


#: The Pillow major version whose resizing the golden upstream outputs were checked with (tests/parity).
GOLDEN_PILLOW_MAJOR = 13
_PILLOW_WARNED = False


def warn_if_pillow_differs(version: str | None = None) -> bool:
    """Warn once per process when the installed Pillow resizes differently from the one the upstream goldens
    were checked with: Pillow 12's bicubic resize gives pixel values up to 0.0235 apart, so outputs would not be
    upstream's. (gradio 6, the demo extra, pins pillow<13; reinstall ``pillow>=13`` after it.) True if it warned."""
    global _PILLOW_WARNED
    import PIL

    version = version or PIL.__version__
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return False
    if major >= GOLDEN_PILLOW_MAJOR or _PILLOW_WARNED:
        return False
    _PILLOW_WARNED = True
    import warnings

    warnings.warn(
        f"Pillow {version} resizes images differently from Pillow >= {GOLDEN_PILLOW_MAJOR}, which upstream Hulu-Med's "
        "outputs were verified with (pixel values differ by up to 0.0235, so answers can differ). Install "
        "'pillow>=13' (the demo extra's gradio pins pillow<13: run `pip install \"pillow>=13\"` after it).",
        UserWarning, stacklevel=3,
    )
    return True


def _check_settings(processor: Any) -> None:
    """``CheckpointError`` naming ``preprocessor_config.json`` and the field when a setting is out of bounds."""
    from hulumed.errors import CheckpointError

    def whole(name: str, low: int, high: int, optional: bool = False) -> None:
        value = getattr(processor, name)
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise CheckpointError(f"preprocessor_config.json: {name} = {str(value)[:40]} must be a whole number in "
                                  f"{low}..{high:,}")

    whole("patch_size", 1, MAX_PATCH_SIZE)
    whole("max_tokens", 1, MAX_TOKENS_BOUND)
    whole("min_tokens", 1, processor.max_tokens)
    whole("merge_size", 1, MAX_MERGE_SIZE, optional=True)
    for name in ("image_mean", "image_std"):
        values = getattr(processor, name)
        if len(values) != 3 or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in values) or (
                name == "image_std" and min(values) <= 0):
            raise CheckpointError(f"preprocessor_config.json: {name} must be 3 finite numbers"
                                  + (" above 0" if name == "image_std" else ""))
    factor = processor.rescale_factor
    if not isinstance(factor, (int, float)) or not np.isfinite(factor) or factor <= 0:
        raise CheckpointError(f"preprocessor_config.json: rescale_factor {str(factor)[:40]} must be a number above 0")
    if processor.resample not in {int(r) for r in Image.Resampling}:
        raise CheckpointError(f"preprocessor_config.json: resample {processor.resample} is not a PIL filter")


class HulumedImageProcessor(BaseImageProcessor):
    """Hulu-Med's image processor (dynamic resolution, merge-block patch order). See the module docstring.

    Loads from an official `preprocessor_config.json` with `HulumedImageProcessor.from_pretrained(folder)`;
    keys it does not know are kept as attributes.
    """

    model_input_names = ["pixel_values", "grid_sizes", "merge_sizes"]
    valid_kwargs = HulumedImagesKwargs

    def __init__(
        self,
        do_resize: bool = True,
        resample: int = Image.Resampling.BICUBIC,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Optional[Union[float, list[float]]] = None,
        image_std: Optional[Union[float, list[float]]] = None,
        do_convert_rgb: bool = True,
        min_tokens: int = 16,
        max_tokens: int = 16384,
        patch_size: int = 14,
        merge_size: Optional[int] = None,
        swap_pil_size: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.do_resize = do_resize
        self.resample = int(resample)
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean) if image_mean is not None else list(_CLIP_MEAN)
        self.image_std = list(image_std) if image_std is not None else list(_CLIP_STD)
        self.do_convert_rgb = do_convert_rgb
        self.min_tokens = min_tokens
        self.max_tokens = max_tokens
        self.patch_size = patch_size
        self.merge_size = merge_size
        self.swap_pil_size = swap_pil_size
        _check_settings(self)

    def target_sizes(
        self, items: Sequence[Item], merge_sizes: Sequence[int], swap_pil_size: Optional[bool] = None
    ) -> list[tuple[int, int]]:
        """Target (height, width) in pixels for each item."""
        swap = self.swap_pil_size if swap_pil_size is None else swap_pil_size
        if all(m == merge_sizes[0] for m in merge_sizes):
            return simple_batched_resize(
                items, self.patch_size * merge_sizes[0], self.min_tokens, self.max_tokens, swap
            )
        return batched_resize(items, [self.patch_size * m for m in merge_sizes], self.max_tokens, swap)

    def _frame_to_hwc(self, frame: Frame, channel_format: Optional[ChannelDimension]) -> np.ndarray:
        """One frame as `(H, W, 3)` uint8 (PIL converted to RGB; channels-first arrays transposed)."""
        if isinstance(frame, Image.Image):
            return np.asarray(frame.convert("RGB") if self.do_convert_rgb else frame)
        array = frame
        if array.ndim == 2:
            array = array[:, :, None]  # (H, W, 1)
        elif channel_format == ChannelDimension.FIRST:
            array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
        if array.ndim != 3 or array.shape[-1] not in (1, 3):
            raise MediaError(f"Frames must have 1 or 3 channels; got an array of shape {frame.shape}.")
        if array.shape[-1] == 1:
            array = np.repeat(array, 3, axis=-1)  # grey -> (H, W, 3)
        if array.dtype != np.uint8:
            if array.size and (array.min() < 0 or array.max() > 255 or np.any(np.mod(array, 1) != 0)):
                raise MediaError(f"Frames must hold integer values in [0, 255]; got dtype {array.dtype}.")
            array = array.astype(np.uint8)
        return array

    def _patchify(
        self, item: Item, target_size: tuple[int, int], merge_size: int, **options: Any
    ) -> tuple[np.ndarray, tuple[int, int, int]]:
        """Resize, rescale, normalise and flatten one item -> ((t*gh*gw, C*p*p) float32, (t, gh, gw))."""
        frames = frames_of(item)
        first = frames[0]
        channel_format = None if isinstance(first, Image.Image) or first.ndim == 2 else _channel_format(first)
        resample = Image.Resampling(options["resample"])
        if options["do_resize"]:
            warn_if_pillow_differs()
        mean = np.asarray(options["image_mean"], dtype=np.float32)
        std = np.asarray(options["image_std"], dtype=np.float32)
        target_h, target_w = target_size
        processed = []
        for frame in frames:
            pixels = self._frame_to_hwc(frame, channel_format)  # (H, W, 3) uint8
            if options["do_resize"]:
                pixels = np.asarray(
                    Image.fromarray(pixels).resize((target_w, target_h), resample=resample, reducing_gap=None)
                )  # (H', W', 3) uint8
            if options["do_rescale"]:
                pixels = (pixels.astype(np.float64) * options["rescale_factor"]).astype(np.float32)
            else:
                pixels = pixels.astype(np.float32)
            if options["do_normalize"]:
                pixels = (pixels - mean) / std  # float32, per channel
            processed.append(pixels.transpose(2, 0, 1))  # (C, H', W')
        patches = np.stack(processed).astype(np.float32, copy=False)  # (t, C, H', W')
        t, channels, height, width = patches.shape
        p, m = self.patch_size, merge_size
        if height % (p * m) or width % (p * m):
            raise ValueError(f"Frame size {height}x{width} is not a multiple of patch*merge = {p * m}.")
        gh, gw = height // p, width // p
        patches = patches.reshape(t, channels, gh // m, m, p, gw // m, m, p)  # (t, C, gh/m, m, p, gw/m, m, p)
        patches = patches.transpose(0, 2, 5, 3, 6, 1, 4, 7)  # (t, gh/m, gw/m, m, m, C, p, p)
        flat = patches.reshape(t * gh * gw, channels * p * p)  # (t*gh*gw, C*p*p)
        return flat, (t, gh, gw)

    def preprocess(
        self,
        images: Union[Item, Sequence[Item]],
        merge_size: Union[int, Sequence[int], None] = None,
        swap_pil_size: Optional[bool] = None,
        return_tensors: Optional[str] = None,
        do_resize: Optional[bool] = None,
        resample: Optional[int] = None,
        do_rescale: Optional[bool] = None,
        rescale_factor: Optional[float] = None,
        do_normalize: Optional[bool] = None,
        image_mean: Optional[Union[float, list[float]]] = None,
        image_std: Optional[Union[float, list[float]]] = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Process a list of items (or one item) into `pixel_values`, `grid_sizes`, `merge_sizes`.

        Output is channels-first by construction; `data_format` / `input_data_format` are accepted and ignored
        (the channel axis of arrays is inferred per item from its first frame, as upstream does).
        """
        unknown = set(kwargs) - {"data_format", "input_data_format"}
        if unknown:
            raise TypeError(f"Unexpected argument(s) {sorted(unknown)} for HulumedImageProcessor.preprocess.")
        # upstream's make_batched_images: a list/tuple is a list of items, anything else is one item
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise ValueError("No images were given to the image processor.")
        for item in items:
            if is_video(item) and len(item) == 0:
                raise MediaError("A video item has no frames.")

        merge_size = merge_size if merge_size is not None else self.merge_size
        merge_size = 1 if merge_size is None else merge_size
        merge_sizes = list(merge_size) if isinstance(merge_size, (list, tuple)) else [merge_size] * len(items)
        if len(merge_sizes) != len(items):
            raise ValueError(f"Got {len(merge_sizes)} merge sizes for {len(items)} items.")

        options = {
            "do_resize": self.do_resize if do_resize is None else do_resize,
            "resample": self.resample if resample is None else resample,
            "do_rescale": self.do_rescale if do_rescale is None else do_rescale,
            "rescale_factor": self.rescale_factor if rescale_factor is None else rescale_factor,
            "do_normalize": self.do_normalize if do_normalize is None else do_normalize,
            "image_mean": self.image_mean if image_mean is None else image_mean,
            "image_std": self.image_std if image_std is None else image_std,
        }
        if options["do_resize"]:
            sizes = self.target_sizes(items, merge_sizes, swap_pil_size)
        else:
            sizes = [probe_size(item, swap_pil_size=False) for item in items]  # true (height, width)

        pixel_values, grid_sizes = [], []
        for item, m, size in zip(items, merge_sizes, sizes):
            flat, grid = self._patchify(item, size, m, **options)
            pixel_values.append(flat)
            grid_sizes.append(grid)
        data = {
            "pixel_values": np.concatenate(pixel_values, axis=0),  # (P, C*p*p)
            "grid_sizes": np.array(grid_sizes, dtype=np.int64),  # (n, 3)
            "merge_sizes": np.array(merge_sizes, dtype=np.int64),  # (n,)
        }
        return BatchFeature(data=data, tensor_type=return_tensors)

"""Hulu-Med input processing: media loaders, the image processor and the processor.

media (path | folder | PIL | numpy | NIfTI | DICOM | video)
  -> loaders: image.py + dicom.py (2-D), video/ (frames, GIF, containers), volume/ (NIfTI, DICOM series),
     windowing.py; conversation_media.py loads the media of a conversation's parts
  -> HulumedImageProcessor: resize -> rescale -> normalise -> patchify (pixel_values, grid_sizes, merge_sizes)
  -> HulumedProcessor: chat template -> image-token expansion -> token ids; decoding with think stripping.
  -> visual_tokens.py: each item's visual tokens after inter-frame reduction (engine, estimator, vLLM plugin).
limits.py and safe_files.py hold the size limits and the safe file access every loader uses.

Everything here reproduces the upstream HF-Version processor by default (its remote code
`processing_hulumed.py` / `image_processing_hulumed.py`); DICOM,
window presets, reorientation and seeking video decoding are extensions (docs/media.md).
"""

from hulumed.processing.conversation_media import gather_visual_items, load_conversation_media
from hulumed.processing.dicom import load_dicom_image, sniff_dicom
from hulumed.processing.image import list_folder, load_image, load_images, to_rgb_array
from hulumed.processing.image_processing import (
    HulumedImageProcessor,
    batched_resize,
    probe_size,
    simple_batched_resize,
)
from hulumed.processing.processor import HulumedProcessor, strip_think
from hulumed.processing.video import Clip, fps_filter_plan, load_video, load_video_from_ids, sample_frame_indices
from hulumed.processing.volume import (
    NORMALIZATIONS,
    ORIENTATIONS,
    VOLUME_ITEM_KEYS,
    Volume,
    VolumeOptions,
    load_nifti,
    load_volume,
    read_nifti,
    read_series,
    read_volume,
    slice_volume,
)
from hulumed.processing.windowing import (
    RGB_MODE,
    RGB_WINDOWS,
    WINDOW_PRESETS,
    Window,
    apply_window,
    resolve_window,
    window_names,
)

__all__ = [
    "Clip",
    "HulumedImageProcessor",
    "HulumedProcessor",
    "NORMALIZATIONS",
    "ORIENTATIONS",
    "RGB_MODE",
    "RGB_WINDOWS",
    "VOLUME_ITEM_KEYS",
    "Volume",
    "VolumeOptions",
    "WINDOW_PRESETS",
    "Window",
    "apply_window",
    "batched_resize",
    "fps_filter_plan",
    "gather_visual_items",
    "list_folder",
    "load_conversation_media",
    "load_dicom_image",
    "load_image",
    "load_images",
    "load_nifti",
    "load_video",
    "load_video_from_ids",
    "load_volume",
    "probe_size",
    "read_nifti",
    "read_series",
    "read_volume",
    "resolve_window",
    "sample_frame_indices",
    "simple_batched_resize",
    "sniff_dicom",
    "slice_volume",
    "strip_think",
    "to_rgb_array",
    "window_names",
]

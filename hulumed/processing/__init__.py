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

import importlib
from typing import Any

# Lazy (PEP 562): ``import hulumed.processing.limits`` (the server's settings, ``serve --help``) must not import
# torch and transformers; a public name is imported from its module on first use.
_HOMES = {
    "conversation_media": ("gather_visual_items", "load_conversation_media"),
    "dicom": ("load_dicom_image", "sniff_dicom"),
    "image": ("list_folder", "load_image", "load_images", "to_rgb_array"),
    "image_processing": ("HulumedImageProcessor", "batched_resize", "probe_size", "simple_batched_resize"),
    "processor": ("HulumedProcessor", "strip_think"),
    "video": ("Clip", "fps_filter_plan", "load_video", "load_video_from_ids", "sample_frame_indices"),
    "volume": ("NORMALIZATIONS", "ORIENTATIONS", "VOLUME_ITEM_KEYS", "Volume", "VolumeOptions", "load_nifti",
               "load_volume", "read_nifti", "read_series", "read_volume", "slice_volume"),
    "windowing": ("RGB_MODE", "RGB_WINDOWS", "WINDOW_PRESETS", "Window", "apply_window", "resolve_window",
                  "window_names"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'hulumed.processing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hulumed.processing.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME_OF])


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

"""Hulu-Med input processing: media loaders, the image processor and the processor.

media (path | folder | PIL | numpy | NIfTI | video)  -> loaders (image, video, volume)
  -> HulumedImageProcessor: resize -> rescale -> normalise -> patchify (pixel_values, grid_sizes, merge_sizes)
  -> HulumedProcessor: chat template -> image-token expansion -> token ids; decoding with think stripping.

Everything here reproduces the upstream HF-Version processor (see docs UPSTREAM.md §5, §7).
"""

from hulumed.processing.image import list_folder, load_image, load_images, to_rgb_array
from hulumed.processing.image_processing import (
    HulumedImageProcessor,
    batched_resize,
    probe_size,
    simple_batched_resize,
)
from hulumed.processing.processor import HulumedProcessor, strip_think
from hulumed.processing.video import Clip, load_video, load_video_from_ids, sample_frame_indices
from hulumed.processing.volume import load_nifti

__all__ = [
    "Clip",
    "HulumedImageProcessor",
    "HulumedProcessor",
    "batched_resize",
    "list_folder",
    "load_image",
    "load_images",
    "load_nifti",
    "load_video",
    "load_video_from_ids",
    "probe_size",
    "sample_frame_indices",
    "simple_batched_resize",
    "strip_think",
    "to_rgb_array",
]

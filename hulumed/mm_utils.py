"""Upstream's ``hulumed.mm_utils`` (its "Option 2" README imports these names), on our loaders.

Signatures and return values are upstream's original-method ones (its ``src/hulumed/mm_utils.py``):

* ``load_images(path, nii_slice_axis="axial", nii_num_slices=180)`` -> list of RGB PIL images: a file, a folder
  (sorted), a list of paths or PIL images, or a NIfTI volume cut into ``nii_num_slices`` slices
  (``slice_nifti_to_images``: indices ``linspace(0, n - 1, num_slices)`` as integers, so repeated when asked for more
  than there are; per-slice min-max to 0-255, truncated to uint8, as upstream). Unlike upstream, an unreadable file
  raises ``MediaError`` instead of being skipped with a print (upstream returned ``[]`` for a bad volume, which
  then failed later with an unrelated message).
* ``load_video(path, start_time=None, end_time=None, fps=None, max_frames=None, ...)`` -> ``(frames, timestamps)``:
  frames a (T, H, W, 3) uint8 array, timestamps in seconds. Decoded by our PyAV loader with upstream's original
  frame rule: every ``int(video_fps / fps)``-th frame, then ``linspace`` down to ``max_frames``.
* ``process_images`` / ``process_video``: upstream's versions always raised TypeError (they call
  ``processor.preprocess`` with arguments its image processor does not take). Here they do what they evidently
  meant: load the media and run the image processor, returning its output (and the timestamps for a video).
* ``tokenizer_multimodal_token``, ``get_model_name_from_path``, ``KeywordsStoppingCriteria``: as upstream.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from transformers import StoppingCriteria

from .errors import MediaError

DEFAULT_IMAGE_TOKEN = "<image>"
#: upstream's placeholder ids for ``tokenizer_multimodal_token`` (its ``constants.py``)
MODAL_INDEX_MAP = {"<image>": -200, "<video>": -201, "<audio>": -202}
NII_AXES = {"axial": 2, "coronal": 1, "sagittal": 0}


# ---------------------------------------------------------------------------------------------- images, volumes
def slice_nifti_to_images(nifti_path: Union[str, os.PathLike], num_slices: int = 180,
                          axis: str = "axial") -> list[Any]:
    """``num_slices`` RGB PIL slices of a NIfTI volume along ``axis`` (axial / coronal / sagittal), as upstream.
    Reads only the planes it returns (our plane reader), not the whole volume."""
    from PIL import Image

    from .processing.volume.reader import read_volume

    if axis not in NII_AXES:
        raise ValueError("axis must be one of 'axial', 'coronal', 'sagittal'")
    along = NII_AXES[axis]
    volume = read_volume(nifti_path)
    indices = np.linspace(0, volume.shape[along] - 1, num_slices, dtype=int)
    unique = sorted(set(indices.tolist()))
    planes = dict(zip(unique, volume.voxels.planes(along, unique)))
    images = []
    for index in indices.tolist():
        plane = planes[index]  # float64, as nibabel's get_fdata
        if plane.max() > plane.min():
            plane = (plane - plane.min()) / (plane.max() - plane.min()) * 255.0
        images.append(Image.fromarray(plane.astype(np.uint8)).convert("RGB"))
    return images


def load_images(image_path: Any, nii_slice_axis: str = "axial", nii_num_slices: int = 180) -> list[Any]:
    """RGB PIL images from a file, a folder (sorted), a NIfTI volume, a list of paths or PIL images."""
    from PIL import Image

    from .processing.image import load_image

    def is_nifti(path: Any) -> bool:
        return isinstance(path, (str, os.PathLike)) and str(path).endswith((".nii", ".nii.gz"))

    if isinstance(image_path, Image.Image):
        return [image_path.convert("RGB")]
    if isinstance(image_path, (list, tuple)) and image_path and isinstance(image_path[0], Image.Image):
        return [image.convert("RGB") for image in image_path]
    if isinstance(image_path, (list, tuple)) and image_path:
        images: list[Any] = []
        for path in image_path:
            images.extend(load_images(path, nii_slice_axis, nii_num_slices))
        return images
    if is_nifti(image_path):
        return slice_nifti_to_images(image_path, num_slices=nii_num_slices, axis=nii_slice_axis)
    if isinstance(image_path, (str, os.PathLike)) and Path(image_path).is_dir():
        files = sorted(p for p in Path(image_path).iterdir() if p.is_file())
        return [load_image(p).convert("RGB") for p in files]
    if isinstance(image_path, (str, os.PathLike)) and Path(image_path).is_file():
        return [load_image(image_path).convert("RGB")]
    if isinstance(image_path, (str, os.PathLike)):
        raise MediaError(f"Image file {image_path} does not exist")
    raise ValueError(f"Unsupported image path type: {type(image_path).__name__}")


def process_images(image_path: Any, processor: Any, aspect_ratio: str = "anyres", image_size: int = 384,
                   use_thumbnail: bool = True) -> Any:
    """The image processor's output for the images at ``image_path`` (each its own item, merge size 1).
    ``aspect_ratio`` / ``image_size`` / ``use_thumbnail`` selected LLaVA-style tilings in upstream's code that
    Hulu-Med's native-resolution processor never used (upstream raised TypeError here); they are ignored."""
    del aspect_ratio, image_size, use_thumbnail
    image_processor = getattr(processor, "image_processor", processor)
    return image_processor(images=load_images(image_path), merge_size=1, return_tensors="pt")


# ---------------------------------------------------------------------------------------------- video
def load_video(
    video_path: Union[str, os.PathLike, list], start_time: Optional[float] = None, end_time: Optional[float] = None,
    fps: Optional[float] = None, max_frames: Optional[int] = None, size: Optional[int] = None,
    size_divisible: int = 1, temporal_factor: int = 1,
) -> tuple[np.ndarray, list[float]]:
    """``(frames (T, H, W, 3) uint8, timestamps)`` with upstream's original frame choice (see module docstring).
    Folders of frames and GIFs go through our frame loader (as upstream's ``load_video_from_ids``)."""
    from PIL import Image

    from .processing.video import load_video as load_clip
    from .processing.video.container import frames_chosen

    if isinstance(video_path, list):
        video_path = video_path[0]
    path = Path(video_path)
    short = start_time is not None and end_time is not None and end_time - start_time < 1
    folder_like = path.is_dir() or path.suffix.lower() == ".gif" or short
    rates = [1.0]
    if folder_like:
        clip = load_clip(str(path), start_time, end_time, fps=fps or 1, max_frames=max_frames or 180)
        frames = np.stack([np.asarray(f).transpose(1, 2, 0) for f in clip.frames])  # (T, H, W, 3)
        timestamps = [float(t) for t in clip.timestamps]
    else:
        if not path.exists():
            raise FileNotFoundError(f"Video not exist: {video_path}")

        def choose(total: int, rate: float) -> list[int]:
            rates.append(rate)
            first = 0 if start_time is None else max(0, min(int(start_time * rate), total - 1))
            last = total if end_time is None else max(first, min(int(end_time * rate), total))
            indices = list(range(first, last))
            if fps is not None:
                indices = indices[:: max(1, int(rate / fps))]
            if max_frames is not None and len(indices) > max_frames:
                indices = np.linspace(first, last - 1, max_frames, dtype=int).tolist()
            return indices

        chosen, indices, rate = frames_chosen(path, choose)
        frames = np.stack([f.transpose(1, 2, 0) for f in chosen])  # (T, H, W, 3)
        timestamps = [i / rate for i in indices]
    if size is not None:
        height, width = frames.shape[1:3]
        scale = size / min(height, width)
        new_h = int(height * scale) // size_divisible * size_divisible
        new_w = int(width * scale) // size_divisible * size_divisible
        frames = np.stack([np.asarray(Image.fromarray(f).resize((new_w, new_h), Image.BILINEAR)) for f in frames])
    if temporal_factor > 1 and len(frames) % temporal_factor:
        pad = temporal_factor - len(frames) % temporal_factor
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        timestamps.extend([timestamps[-1] + 1 / rates[-1]] * pad)
    return frames, timestamps


def process_video(video_path: Any, processor: Any, s: Optional[float] = None, e: Optional[float] = None,
                  aspect_ratio: str = "avt", num_frames: Optional[int] = None) -> tuple[Any, list[float]]:
    """``(image processor output for the clip as one video item (merge size 2), timestamps)``: 1 fps unless
    ``num_frames`` is given, as upstream meant (its version raised TypeError)."""
    del aspect_ratio
    frames, timestamps = load_video(video_path, s, e, fps=1 if num_frames is None else None, max_frames=num_frames)
    image_processor = getattr(processor, "image_processor", processor)
    return image_processor(images=[list(frames)], merge_size=2, return_tensors="pt"), timestamps


# ---------------------------------------------------------------------------------------------- text
def tokenizer_multimodal_token(prompt: str, tokenizer: Any, multimodal_token: str = DEFAULT_IMAGE_TOKEN,
                               return_tensors: Optional[str] = None) -> Any:
    """Token ids of ``prompt`` with each ``multimodal_token`` replaced by its negative placeholder id (-200 for
    ``<image>``), as upstream; a token not in ``MODAL_INDEX_MAP`` is tokenised as text."""
    index = MODAL_INDEX_MAP.get(multimodal_token)
    if index is None:
        ids = tokenizer(prompt, add_special_tokens=False).input_ids
    else:
        ids = []
        for number, chunk in enumerate(prompt.split(multimodal_token)):
            if number:
                ids.append(index)
            ids.extend(tokenizer(chunk, add_special_tokens=False).input_ids)
    if return_tensors is None:
        return ids
    if return_tensors == "pt":
        return torch.tensor(ids, dtype=torch.long)
    raise ValueError(f"Unsupported tensor type: {return_tensors}")


def get_model_name_from_path(model_path: str) -> str:
    """The last path component; ``<run>_checkpoint-N`` for a trainer's checkpoint folder."""
    parts = str(model_path).strip("/").split("/")
    return f"{parts[-2]}_{parts[-1]}" if parts[-1].startswith("checkpoint-") and len(parts) > 1 else parts[-1]


class KeywordsStoppingCriteria(StoppingCriteria):
    """Stops a row when its ids end with a keyword's ids or its decoded tail contains a keyword (upstream's rule;
    upstream answered one flag for the whole batch, transformers now takes one per row)."""

    def __init__(self, keywords: list[str], tokenizer: Any, input_ids: torch.Tensor) -> None:
        self.keywords, self.tokenizer = list(keywords), tokenizer
        self.keyword_ids = []
        for keyword in self.keywords:
            ids = tokenizer(keyword).input_ids
            if len(ids) > 1 and ids[0] == tokenizer.bos_token_id:
                ids = ids[1:]
            self.keyword_ids.append(torch.tensor(ids))
        self.max_keyword_len = max((len(ids) for ids in self.keyword_ids), default=0)
        self.start_len = input_ids.shape[1]

    def _row(self, ids: torch.Tensor) -> bool:  # ids (L,)
        for keyword in self.keyword_ids:
            if len(ids) >= len(keyword) and torch.equal(ids[-len(keyword):], keyword.to(ids.device)):
                return True
        tail = self.tokenizer.decode(ids[-self.max_keyword_len:], skip_special_tokens=True) if len(ids) else ""
        return any(keyword in tail for keyword in self.keywords)

    def __call__(self, output_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        # output_ids (B, L): with a prompt given as embeddings (Hulu-Med) only the generated ids
        return torch.tensor([self._row(row) for row in output_ids], dtype=torch.bool, device=output_ids.device)

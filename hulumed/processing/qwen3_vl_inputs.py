"""Our media front end for the second generation (stock ``Qwen3VLProcessor`` checkpoints: ``model/family.py``).

In:  a conversation in our schema (``hulumed.conversation``: ``image`` / ``video`` / ``3d`` parts naming files).
Out: the stock processor's tensors (``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``pixel_values`` +
     ``image_grid_thw``, ``pixel_values_videos`` + ``video_grid_thw``), exactly what
     ``processor.apply_chat_template(messages, tokenize=True, return_dict=True)`` gives for the same media.

Media are read by our loaders, then handed to transformers' own processors:

* ``image``: ``processing.image.load_images`` (PIL formats and DICOM), EXIF orientation applied as transformers'
  ``load_image`` does, to the stock image processor.
* ``video`` (a container file): the frame indices are the stock video processor's own choice
  (``sample_frames`` on the stream's frame count and rate, ``fps`` from the part or the checkpoint), trimmed to
  ``start_time`` / ``end_time`` and thinned to ``max_frames``; only those frames are decoded (PyAV seeking,
  ``video.container.frames_chosen``) and handed over with their ``VideoMetadata``, so the prompt's timestamps
  are the frames' own. The stock video processor needs torchvision.
* ``3d`` (NIfTI, DICOM file / series / zip, every ``VolumeOptions``), and a ``video`` part given as a folder of
  frame images or a list of frames (how upstream and the 3-D benchmarks pass slice stacks; sampled by our loader
  with the part's ``fps`` / ``max_frames``): upstream documents no 3D convention for this generation; ours is
  ``volume_input``: ``"images"`` (default: every sampled slice one image, in slice
  order, so no two slices share a temporal patch and no timestamp is invented; works without torchvision) or
  ``"video"`` (slices as the frames of a video with ``fps=1``, so the prompt's "<t seconds>" marks are slice
  positions; half the tokens, adjacent slices merged in pairs by the temporal patch; needs torchvision).

The prompt is the checkpoint's chat template rendered bounded (``processing.chat_template``); ``think`` sets the
template's ``enable_thinking`` switch (the Qwen3 templates' reasoning mode).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hulumed.conversation import Conversation, validate
from hulumed.errors import CheckpointError, MediaError

VolumeInput = Literal["images", "video"]
VOLUME_INPUTS = ("images", "video")
_TORCHVISION_HINT = ("transformers' Qwen3-VL video processor, which needs torchvision: install the torchvision "
                     "build that matches your torch (pip install torchvision)")


def torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return bool(is_torchvision_available())


def load_qwen3_vl_processor(path: str | os.PathLike) -> Any:
    """The checkpoint's stock ``Qwen3VLProcessor``: ``AutoProcessor`` where torchvision is installed; otherwise
    the same class built from the checkpoint's tokenizer, image processor and chat template, without its video
    processor (images, text and volumes as images work; video parts get a clear error)."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, Qwen3VLProcessor

    if torchvision_available():
        return AutoProcessor.from_pretrained(path)

    class _WithoutVideo(Qwen3VLProcessor):
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument is None and argument_name == "video_processor":
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    tokenizer = AutoTokenizer.from_pretrained(path)
    template = _chat_template(Path(path)) or tokenizer.chat_template
    return _WithoutVideo(image_processor=AutoImageProcessor.from_pretrained(path), tokenizer=tokenizer,
                         video_processor=None, chat_template=template)


def _chat_template(folder: Path) -> str | None:
    import json

    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text()
    if (folder / "chat_template.json").is_file():
        try:
            return json.loads((folder / "chat_template.json").read_text())["chat_template"]
        except (ValueError, KeyError, TypeError):
            raise CheckpointError(f"{folder}/chat_template.json has no chat_template string") from None
    return None


def _pil(image: Any) -> Any:
    from PIL import Image, ImageOps

    if isinstance(image, np.ndarray):
        array = image if image.ndim == 2 or image.shape[-1] in (1, 3, 4) else np.moveaxis(image, 0, -1)
        return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")
    return ImageOps.exif_transpose(image).convert("RGB")


def _image(value: Any) -> Any:
    from hulumed.processing.image import load_images

    if isinstance(value, dict):
        if "image_path" not in value:
            raise MediaError(f"An image part needs {{'image_path': ...}}; got keys {sorted(value)}.")
        value = value["image_path"]
    return _pil(load_images(value)[0])


def _video(value: Any, video_processor: Any) -> tuple[np.ndarray, Any]:
    """(T, H, W, 3) uint8 frames at the stock processor's indices, and their ``VideoMetadata``."""
    from transformers.video_utils import VideoMetadata

    from hulumed.processing.video.container import frames_chosen

    if video_processor is None:
        raise MediaError(f"Video input to a second-generation Hulu-Med model goes through {_TORCHVISION_HINT}.")
    if not isinstance(value, dict) or value.get("video_path") is None:
        raise MediaError("A video part needs {'video_path': a video file}.")
    path = Path(value["video_path"])
    if not path.is_file():
        raise MediaError(f"Video {path} does not exist or is not a file.")
    fps, max_frames = value.get("fps"), value.get("max_frames")
    start, end = value.get("start_time"), value.get("end_time")

    def choose(count: int, rate: float) -> list[int]:
        first = 0 if start is None else min(count - 1, max(0, int(round(start * rate))))
        last = count - 1 if end is None else min(count - 1, max(first, int(round(end * rate))))
        window = last - first + 1
        metadata = VideoMetadata(total_num_frames=window, fps=rate)
        picked = [first + int(i) for i in video_processor.sample_frames(metadata, fps=fps)]
        if max_frames is not None and len(picked) > max_frames:
            picked = [picked[int(i)] for i in np.linspace(0, len(picked) - 1, int(max_frames)).round()]
        return picked

    frames, indices, rate = frames_chosen(path, choose)
    stacked = np.stack([np.moveaxis(f, 0, -1) for f in frames])  # (T, H, W, 3)
    height, width = stacked.shape[1:3]
    metadata = VideoMetadata(total_num_frames=len(indices), fps=rate, width=width, height=height,
                             frames_indices=list(indices), video_backend="pyav")
    return stacked, metadata


def _is_frame_sequence(value: Any) -> bool:
    """A video part given as a folder of frame images or a list of frames (not a container file)."""
    if not isinstance(value, dict):
        return True
    source = value.get("video_path")
    return isinstance(source, (list, tuple)) or (source is not None and Path(str(source)).is_dir())


def _frame_sequence(value: Any) -> list[np.ndarray]:
    """(3, H, W) uint8 frames of a frame folder / list, sampled by our loader (``fps``, ``max_frames``)."""
    from hulumed.processing.video import load_video

    if not isinstance(value, dict):
        value = {"video_path": list(value)}
    clip = load_video(value["video_path"], start_time=value.get("start_time"), end_time=value.get("end_time"),
                      fps=value.get("fps", 1), max_frames=value.get("max_frames", 128))
    return list(clip.frames)


def _slices(slices: list[np.ndarray], volume_input: VolumeInput, video_processor: Any) -> tuple[list[Any], Any]:
    """Slices ((3, H, W) uint8) as PIL images (``"images"``), or one (T, H, W, 3) video with ``fps=1`` metadata."""
    from transformers.video_utils import VideoMetadata

    if volume_input == "images":
        return [_pil(s) for s in slices], None
    if video_processor is None:
        raise MediaError(f"volume_input='video' goes through {_TORCHVISION_HINT}; or use volume_input='images'.")
    stacked = np.stack([np.moveaxis(s, 0, -1) for s in slices])
    metadata = VideoMetadata(total_num_frames=len(slices), fps=1.0, width=stacked.shape[2], height=stacked.shape[1],
                             frames_indices=list(range(len(slices))), video_backend="hulumed-volume")
    return [stacked], metadata


def _volume(value: Any, volume_input: VolumeInput, video_processor: Any) -> tuple[list[Any], Any]:
    """A volume's sampled slices under the ``volume_input`` convention (``_slices``)."""
    from hulumed.processing.volume import VolumeOptions, load_volume

    if not isinstance(value, dict) or value.get("image_path") is None:
        raise MediaError("A 3d part needs {'image_path': a .nii/.nii.gz file or a DICOM file, folder or zip, ...}.")
    if volume_input == "video" and video_processor is None:
        raise MediaError(f"volume_input='video' goes through {_TORCHVISION_HINT}; or use volume_input='images'.")
    slices = load_volume(value["image_path"], VolumeOptions.from_item(value))  # (3, X, Y) uint8 each
    return _slices(slices, volume_input, video_processor)


def is_stock_processor(processor: Any) -> bool:
    """Whether ``processor`` is a second-generation (stock ``Qwen3VLProcessor``) one."""
    from transformers import Qwen3VLProcessor

    return isinstance(processor, Qwen3VLProcessor)


def loaded_part(processor: Any, part: dict[str, Any], volume_input: VolumeInput = "images") -> dict[str, Any]:
    """One media part as this generation loads it, in the first generation's loaded-part shape (for the demo's
    viewer): ``{"image": [(3, H, W) uint8]}`` or ``{"video": [(3, H, W) uint8 ...], "timestamps": [...]}``
    (video: seconds of the chosen frames; volume and frame sequences: the slices, no timestamps)."""
    kind = part.get("type")
    video_processor = getattr(processor, "video_processor", None)
    if kind == "image":
        return {"type": "image", "image": [np.moveaxis(np.asarray(_image(part["image"])), -1, 0)]}
    if kind == "video" and not _is_frame_sequence(part["video"]):
        frames, metadata = _video(part["video"], video_processor)
        return {"type": "video", "video": [np.moveaxis(f, -1, 0) for f in frames],
                "timestamps": [i / metadata.fps for i in metadata.frames_indices]}
    if kind == "3d":
        from hulumed.processing.volume import VolumeOptions, load_volume

        value = part["3d"]
        if not isinstance(value, dict) or value.get("image_path") is None:
            raise MediaError("A 3d part needs {'image_path': a .nii/.nii.gz file or a DICOM file, folder or zip}.")
        return {"type": "video", "video": load_volume(value["image_path"], VolumeOptions.from_item(value))}
    if kind == "video":
        return {"type": "video", "video": _frame_sequence(part["video"])}
    raise MediaError(f"not a media part: {str(part)[:80]}")


def stock_messages(conversation: Conversation, processor: Any, volume_input: VolumeInput = "images"
                   ) -> tuple[list[dict[str, Any]], list[Any], list[np.ndarray], list[Any]]:
    """Our conversation as the stock template's messages (``{"type": "image"}`` / ``{"type": "video"}`` / text
    parts) and the loaded images, videos and video metadata, in conversation order."""
    if volume_input not in VOLUME_INPUTS:
        raise ValueError(f"volume_input must be one of {VOLUME_INPUTS}, not {volume_input!r}")
    validate(conversation, purpose="any")
    video_processor = getattr(processor, "video_processor", None)
    messages: list[dict[str, Any]] = []
    images: list[Any] = []
    videos: list[np.ndarray] = []
    metadata: list[Any] = []
    for message in conversation:
        content = message["content"]
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for part in content:
            kind = part.get("type")
            if kind == "text":
                parts.append({"type": "text", "text": part["text"]})
            elif kind == "image":
                images.append(_image(part["image"]))
                parts.append({"type": "image"})
            elif kind == "video" and not _is_frame_sequence(part["video"]):
                frames, meta = _video(part["video"], video_processor)
                videos.append(frames)
                metadata.append(meta)
                parts.append({"type": "video"})
            elif kind in ("video", "3d"):
                loaded, meta = (_volume(part["3d"], volume_input, video_processor) if kind == "3d"
                                else _slices(_frame_sequence(part["video"]), volume_input, video_processor))
                if meta is None:
                    images.extend(loaded)
                    parts.extend({"type": "image"} for _ in loaded)
                else:
                    videos.extend(loaded)
                    metadata.append(meta)
                    parts.append({"type": "video"})
        messages.append({"role": message["role"], "content": parts})
    return messages, images, videos, metadata


def render_chat_messages(processor: Any, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
                         think: bool = False) -> str:
    """The checkpoint's chat template over ``messages`` (``stock_messages``), rendered bounded."""
    from hulumed.processing.chat_template import render_chat

    if not processor.chat_template:
        raise CheckpointError("the checkpoint has no chat template (chat_template.jinja / chat_template.json)")
    variables: dict[str, Any] = {**processor.tokenizer.special_tokens_map,
                                 "add_generation_prompt": add_generation_prompt}
    if think:
        variables["enable_thinking"] = True
    return render_chat(processor.chat_template, messages, **variables)


def prepare_inputs(processor: Any, conversation: Conversation, *, volume_input: VolumeInput = "images",
                   think: bool = False) -> Any:
    """One conversation as the stock processor's ``BatchFeature`` (``return_tensors="pt"``)."""
    messages, images, videos, metadata = stock_messages(conversation, processor, volume_input)
    text = render_chat_messages(processor, messages, think=think)
    kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
    if images:
        kwargs["images"] = images
    if videos:
        kwargs.update(videos=videos, video_metadata=metadata, do_sample_frames=False)
    try:
        return processor(**kwargs)
    except MediaError:
        raise
    except ValueError as error:  # the stock processors' own refusals (aspect ratio, sizes)
        raise MediaError(f"the model's processor refused the media: {str(error).splitlines()[0][:300]}") from None

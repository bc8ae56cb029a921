"""`HulumedProcessor`: conversation (or plain text + images) -> model inputs, and decoding with think stripping.

In:  a conversation (list of `{"role", "content"}` messages whose content parts are `text`, `image`, `video`
     or `3d`), or a list of conversations, or plain `text=` with `images=`.
Out: a `BatchFeature` with `input_ids` / `attention_mask` `(B, N)` int64, and when there are visual items
     `pixel_values` float32 `(P, 588)`, `grid_sizes` int64 `(n, 3)`, `merge_sizes` int64 `(n,)` and `modals`
     (one "image" / "video" string per item; 3-D volumes are "video").

Steps for one conversation (upstream's HF-Version `processing_hulumed.py`):
1. load media (`conversation_media.py`): images as one-frame items, videos as frames with timestamps, 3-D
   volumes as a `video` part of slices without timestamps.
2. merge size: 2 (`video_merge_size`) for every item if the conversation has any video/3-D part, else 1.
3. `HulumedImageProcessor` on all items in conversation order.
4. render the checkpoint's chat template (transformers' renderer: trim_blocks / lstrip_blocks), passing
   `add_system_prompt`, `add_generation_prompt`, `image_token`.
5. expand the k-th image token into `(gh/m)*(gw/m)` copies per frame (one token string per frame in the
   prompt), then tokenise.
A list of conversations is processed one by one and left-padded into one batch (not upstream); visual
tensors and `modals` are concatenated in sample order.

Plain mode (`text=`, `images=`) uses a per-item merge size (1 image, 2 video), as upstream.
Decoding: `use_think=False` removes `<think>...</think>` spans and collapses blank-line runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from hulumed.conversation import Conversation
from hulumed.errors import CheckpointError
from hulumed.processing.conversation_media import gather_visual_items, load_conversation_media
from hulumed.processing.image_processing import HulumedImageProcessor, is_video
from hulumed.think import strip_think

DEFAULT_IMAGE_TOKEN = "<image>"
FALLBACK_PAD_TOKEN = "<|endoftext|>"
_IGNORED_CALL_KWARGS = {"padding", "padding_side", "truncation", "max_length"}

VISUAL_KEYS = ("pixel_values", "grid_sizes", "merge_sizes")  # (P, 588), (n, 3), (n,): concatenated along dim 0


def concat_visual(items: list[dict[str, Any]], cat: Any = np.concatenate) -> dict[str, Any]:
    """The visual inputs of several samples as one batch, in sample order: `VISUAL_KEYS` joined with `cat`
    (`np.concatenate` or `torch.cat`) and `modals` chained when the samples have them; empty if none has media."""
    visual = [item for item in items if item.get("pixel_values") is not None]
    if not visual:
        return {}
    out = {key: cat([item[key] for item in visual]) for key in VISUAL_KEYS}
    if all("modals" in item for item in visual):
        out["modals"] = [modal for item in visual for modal in item["modals"]]
    return out


@dataclass
class _Encoded:
    """One sample before collation."""

    input_ids: list[int]
    visual: Optional[dict[str, np.ndarray]]  # pixel_values, grid_sizes, merge_sizes
    modals: list[str]


def _classify(images: Any) -> tuple[list[str], list[Any]]:
    """Upstream `make_batched_images`: (modals, items) from named tuples or structurally typed inputs."""

    def named(entry: Any) -> bool:
        return (
            isinstance(entry, (list, tuple))
            and len(entry) == 2
            and isinstance(entry[0], str)
            and entry[0] in ("image", "video", "3d")
        )

    def modal_of(entry: Any) -> str:
        return "video" if is_video(entry) else "image"

    if named(images):
        return ["video" if images[0] == "3d" else images[0]], [images[1]]
    if isinstance(images, (list, tuple)):
        if images and all(named(entry) for entry in images):
            return ["video" if e[0] == "3d" else e[0] for e in images], [e[1] for e in images]
        return [modal_of(entry) for entry in images], list(images)
    return [modal_of(images)], [images]


def _check_processor_settings(processor: Any) -> None:
    """``processor_config.json`` values within bounds (``CheckpointError`` naming the field otherwise)."""
    for name, high in (("image_merge_size", 8), ("video_merge_size", 8), ("max_frames", 10_000)):
        value = getattr(processor, name)
        if name == "max_frames" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise CheckpointError(f"processor_config.json: {name} = {str(value)[:40]} must be a whole number in "
                                  f"1..{high:,}")
    fps = processor.fps
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 240):
        raise CheckpointError(f"processor_config.json: fps = {str(fps)[:40]} must be a number in (0, 240]")


class HulumedProcessor(ProcessorMixin):
    """Hulu-Med's processor: `HulumedImageProcessor` + the checkpoint's Qwen tokenizer and chat template."""

    def __init__(
        self,
        image_processor: Optional[HulumedImageProcessor] = None,
        tokenizer: Any = None,
        chat_template: Optional[Union[str, dict[str, str]]] = None,
        image_merge_size: int = 1,
        video_merge_size: int = 2,
        fps: Optional[float] = 1,
        max_frames: Optional[int] = 128,
    ) -> None:
        if image_processor is None or tokenizer is None:
            raise ValueError("HulumedProcessor needs both an image_processor and a tokenizer.")
        if chat_template is None:
            chat_template = tokenizer.chat_template
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self.image_merge_size = image_merge_size
        self.video_merge_size = video_merge_size
        self.fps = fps
        self.max_frames = max_frames
        _check_processor_settings(self)

        self.image_token = getattr(tokenizer, "image_token", None) or DEFAULT_IMAGE_TOKEN
        if self.image_token not in tokenizer.get_vocab():
            raise CheckpointError(
                f"The tokenizer has no {self.image_token!r} token; a Hulu-Med checkpoint adds it after the Qwen "
                "special tokens. Check that the tokenizer files come from a Hulu-Med checkpoint."
            )
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        pad_id = tokenizer.pad_token_id
        self.pad_token_id = pad_id if pad_id is not None else tokenizer.convert_tokens_to_ids(FALLBACK_PAD_TOKEN)

    # ------------------------------------------------------------------ loading from a checkpoint folder
    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """Load the two sub-processors directly, so no remote code and no Auto registration is needed."""
        hub_keys = ("cache_dir", "force_download", "local_files_only", "revision", "token", "subfolder")
        hub_kwargs = {k: kwargs[k] for k in hub_keys if kwargs.get(k) is not None}
        image_processor = HulumedImageProcessor.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        return [image_processor, cls._load_tokenizer(pretrained_model_name_or_path, hub_kwargs)]

    @staticmethod
    def _load_tokenizer(path: Union[str, os.PathLike], hub_kwargs: dict[str, Any]) -> Any:
        """The tokenizer class named in `tokenizer_config.json` (Qwen2Tokenizer), without reading `config.json`."""
        from transformers import AutoTokenizer
        from transformers.models.auto.tokenization_auto import tokenizer_class_from_name
        from transformers.utils import cached_file

        config_file = cached_file(
            path, "tokenizer_config.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs
        )
        class_name = None
        if config_file is not None:
            with open(config_file, encoding="utf-8") as reader:
                class_name = json.load(reader).get("tokenizer_class")
        tokenizer_class = tokenizer_class_from_name(class_name) if class_name else None
        if tokenizer_class is None:
            return AutoTokenizer.from_pretrained(path, trust_remote_code=False, **hub_kwargs)
        return tokenizer_class.from_pretrained(path, **hub_kwargs)

    @property
    def model_input_names(self) -> list[str]:
        names = list(self.tokenizer.model_input_names) + list(self.image_processor.model_input_names)
        return list(dict.fromkeys(names)) + ["modals"]

    # ------------------------------------------------------------------ media (conversation_media.py)
    def load_conversation_media(self, conversation: Conversation) -> Conversation:
        """A copy of `conversation` whose image / video / 3d parts carry loaded media (`conversation_media`),
        with this processor's `fps` / `max_frames` for video parts that set none."""
        return load_conversation_media(conversation, fps=self.fps, max_frames=self.max_frames)

    @staticmethod
    def gather_visual_items(conversation: Conversation) -> list[tuple[str, Any]]:
        """(modal, item) for every loaded image / video part, in conversation order; empty videos are skipped."""
        return gather_visual_items(conversation)

    # ------------------------------------------------------------------ text
    def apply_chat_template(
        self,
        conversation: Conversation,
        chat_template: Optional[str] = None,
        tokenize: bool = False,
        add_system_prompt: bool = False,
        add_generation_prompt: bool = False,
        image_token: Optional[str] = None,
        **kwargs: Any,
    ) -> str:
        """Render the checkpoint's chat template as transformers' renderer does (upstream's processor API), with
        time and memory bounded (``processing.chat_template``); ``tokenize=True`` gives the ids."""
        template = chat_template if chat_template is not None else self.chat_template
        if isinstance(template, dict):
            template = template.get("default")
        if template is None:
            raise CheckpointError(
                "No chat template: the checkpoint has neither chat_template.json nor a tokenizer chat_template."
            )
        unbounded = {"tools", "documents", "continue_final_message", "return_assistant_tokens_mask", "return_dict"}
        if unbounded & {k for k, v in kwargs.items() if v}:  # transformers' extra features: its own renderer
            return self.tokenizer.apply_chat_template(
                conversation, chat_template=template, tokenize=tokenize, add_system_prompt=add_system_prompt,
                add_generation_prompt=add_generation_prompt,
                image_token=image_token if image_token is not None else self.image_token, **kwargs,
            )
        from .chat_template import render_chat

        text = render_chat(
            template, conversation, **{**self.tokenizer.special_tokens_map, **kwargs},
            add_system_prompt=add_system_prompt, add_generation_prompt=add_generation_prompt,
            image_token=image_token if image_token is not None else self.image_token,
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenize else text

    def render_prompt(
        self, conversation: Conversation, add_system_prompt: bool = False, add_generation_prompt: bool = False
    ) -> str:
        """The prompt text of one conversation before image-token expansion (loads media for frame counts)."""
        loaded = self.load_conversation_media(conversation)
        return self.apply_chat_template(
            loaded, add_system_prompt=add_system_prompt, add_generation_prompt=add_generation_prompt
        )

    def expand_image_tokens(self, prompt: str, grid_sizes: np.ndarray, merge_sizes: np.ndarray) -> str:
        """Replace the k-th image token (one per frame) by `(gh/m)*(gw/m)` copies of it."""
        counts = []
        for (t, gh, gw), m in zip(np.asarray(grid_sizes).tolist(), np.asarray(merge_sizes).tolist()):
            counts.extend([int((gh / m) * (gw / m))] * int(t))
        chunks = prompt.split(self.image_token)
        if len(chunks) - 1 != len(counts):
            raise ValueError(
                f"The prompt has {len(chunks) - 1} {self.image_token!r} placeholders but the visual inputs have "
                f"{len(counts)} frames (one placeholder per image and per video frame is needed). Check that the "
                "text and the images/videos passed match."
            )
        pieces = [chunks[0]]
        for count, chunk in zip(counts, chunks[1:]):
            pieces.append(self.image_token * count)
            pieces.append(chunk)
        return "".join(pieces)

    def _encode_text(self, prompt: str, visual: Optional[dict[str, np.ndarray]]) -> list[int]:
        if visual is None:
            visual = {"grid_sizes": np.zeros((0, 3), np.int64), "merge_sizes": np.zeros((0,), np.int64)}
        prompt = self.expand_image_tokens(prompt, visual["grid_sizes"], visual["merge_sizes"])  # checks counts
        return list(self.tokenizer(prompt)["input_ids"])

    def _process_items(
        self, items: list[Any], merge_size: Any, swap_pil_size: Optional[bool]
    ) -> Optional[dict[str, np.ndarray]]:
        if not items:
            return None
        outputs = self.image_processor(items, merge_size=merge_size, swap_pil_size=swap_pil_size)
        return {key: outputs[key] for key in ("pixel_values", "grid_sizes", "merge_sizes")}

    def _encode_conversation(
        self,
        conversation: Conversation,
        images: Any,
        merge_size: Optional[int],
        add_system_prompt: bool,
        add_generation_prompt: bool,
        swap_pil_size: Optional[bool],
    ) -> _Encoded:
        if images is None:
            conversation = self.load_conversation_media(conversation)
            named = self.gather_visual_items(conversation)
            modals, items = [m for m, _ in named], [i for _, i in named]
        else:
            modals, items = _classify(images)
        if merge_size is None:
            merge_size = self.video_merge_size if "video" in modals else self.image_merge_size
        visual = self._process_items(items, merge_size, swap_pil_size)
        prompt = self.apply_chat_template(
            conversation, add_system_prompt=add_system_prompt, add_generation_prompt=add_generation_prompt
        )
        return _Encoded(self._encode_text(prompt, visual), visual, modals)

    def _encode_plain(self, text: str, images: Any, merge_size: Any, swap_pil_size: Optional[bool]) -> _Encoded:
        if not isinstance(text, str):
            raise TypeError("Plain mode takes one prompt string as `text`. Pass a conversation (a list of messages) "
                            "as `conversation=` (a list of conversations to batch), or render it first with "
                            "`processor.apply_chat_template`")
        visual, modals = None, []
        if images is not None:
            modals, items = _classify(images)
            if merge_size is None:
                merge_size = [self.image_merge_size if m == "image" else self.video_merge_size for m in modals]
            visual = self._process_items(items, merge_size, swap_pil_size)
        return _Encoded(self._encode_text(text, visual), visual, modals)

    # ------------------------------------------------------------------ call
    def __call__(
        self,
        text: Optional[str] = None,
        conversation: Optional[Union[Conversation, list[Conversation]]] = None,
        images: Any = None,
        merge_size: Optional[Union[int, list[int]]] = None,
        add_system_prompt: Union[bool, list[bool]] = False,
        add_generation_prompt: bool = False,
        return_tensors: Optional[str] = None,
        swap_pil_size: Optional[bool] = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Process one conversation, a list of conversations (left-padded batch), or plain `text` + `images`.

        `swap_pil_size` overrides the image processor's setting (True reproduces upstream's PIL size swap).
        For a batch, `add_system_prompt` may be a list with one flag per conversation.
        """
        unknown = set(kwargs) - _IGNORED_CALL_KWARGS
        if unknown:
            raise TypeError(f"Unexpected argument(s) {sorted(unknown)} for HulumedProcessor.__call__.")
        if return_tensors not in (None, "pt", "np"):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None; got {return_tensors!r}.")
        if conversation is not None:
            if text is not None:
                raise ValueError("Pass either `conversation` or `text`, not both.")
            batched = bool(conversation) and all(isinstance(c, (list, tuple)) for c in conversation)
            if batched:
                if images is not None:
                    raise ValueError("`images` cannot be combined with a batch of conversations.")
                flags = (add_system_prompt if isinstance(add_system_prompt, list)
                         else [add_system_prompt] * len(conversation))
                if len(flags) != len(conversation):
                    raise ValueError(f"got {len(flags)} add_system_prompt flags for {len(conversation)} conversations")
                samples = [
                    self._encode_conversation(c, None, merge_size, flag, add_generation_prompt, swap_pil_size)
                    for c, flag in zip(conversation, flags)
                ]
            else:
                samples = [
                    self._encode_conversation(
                        conversation, images, merge_size, add_system_prompt, add_generation_prompt, swap_pil_size
                    )
                ]
            return self._collate(samples, return_tensors, batched)
        if text is None:
            raise ValueError("Pass a `conversation` (list of messages) or a `text` prompt.")
        return self._collate([self._encode_plain(text, images, merge_size, swap_pil_size)], return_tensors, False)

    def _collate(self, samples: list[_Encoded], return_tensors: Optional[str], batched: bool) -> BatchFeature:
        """Left-pad the token ids; concatenate visual tensors and modals in sample order."""
        length = max(len(s.input_ids) for s in samples)
        input_ids = np.full((len(samples), length), self.pad_token_id, dtype=np.int64)  # (B, N)
        attention_mask = np.zeros((len(samples), length), dtype=np.int64)  # (B, N)
        for row, sample in enumerate(samples):
            n = len(sample.input_ids)
            input_ids[row, length - n:] = sample.input_ids
            attention_mask[row, length - n:] = 1
        data: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        visual = concat_visual([s.visual for s in samples if s.visual is not None])
        data.update(visual)
        if return_tensors == "pt":
            data = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()}
        elif return_tensors is None:
            data["input_ids"] = input_ids.tolist() if batched else input_ids[0].tolist()
            data["attention_mask"] = attention_mask.tolist() if batched else attention_mask[0].tolist()
        if visual:
            data["modals"] = [m for s in samples for m in s.modals]
        return BatchFeature(data=data)

    # ------------------------------------------------------------------ decoding
    def batch_decode(
        self, sequences: Any, skip_special_tokens: bool = True, use_think: bool = False, **kwargs: Any
    ) -> list[str]:
        """Decode rows of token ids; unless `use_think`, strip `<think>` spans as upstream does."""
        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens, **kwargs)
        return texts if use_think else [strip_think(t) for t in texts]

    def decode(self, token_ids: Any, skip_special_tokens: bool = True, use_think: bool = False, **kwargs: Any) -> str:
        """Decode one sequence (a 1-D sequence, or a 2-D one with a single row)."""
        if getattr(token_ids, "ndim", 1) == 2:
            if token_ids.shape[0] != 1:
                raise ValueError(f"decode takes one sequence; got {token_ids.shape[0]} rows, use batch_decode.")
            token_ids = token_ids[0]
        text = self.tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens, **kwargs)
        return text if use_think else strip_think(text)

"""vLLM multimodal processing for Hulu-Med: items -> fields, placeholders and a context-aware cache identity.

Two kinds of "image" items reach it:

* prepared payloads (``items.build_prompt_items``): the hulumed engine has run OUR processor on the whole
  conversation (media loading, merge sizes, pixel budget, timestamps, reduction keep-mask); here they are only
  unpacked. The prompt holds one ``<image>`` per item, replaced by the item's span (timestamps and separators
  included) whose ``<image>`` positions receive the item's kept visual features.
* raw images (PIL / arrays: vLLM's dummy inputs, ``image_url`` parts of its OpenAI server): processed with our
  ``HulumedImageProcessor``; merge size 1, or 2 when the request also has a video (the conversation-wide rule),
  and no reduction (images are never reduced).

Cache identity: vLLM caches processed items by a hash of the item and the request's processor kwargs. A raw item's
processing depends on the other items of the request (merge size 2 next to a video), so ``_get_mm_hashes`` adds
a digest of all the request's items to every hash (a request hits for all its items or for none) and
``_get_cache_missing_processor_kwargs`` hands the merge context to the processing of the items that missed.
A payload's hash is of already processed tensors, so it carries its context itself.

Fields (per item, ``flat_from_sizes`` over the concatenation): ``hulumed_pixel_values`` (P, 588),
``hulumed_grid_sizes`` (1, 3), ``hulumed_merge_sizes`` (1,), ``hulumed_keep`` (T,) bool, ``hulumed_span`` (len,),
``hulumed_span_lengths`` (1,).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import MultiModalDataItems, MultiModalDataParser
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
    PromptUpdateDetails,
)

from .items import PAYLOAD_KEYS, is_payload, stack_payloads

_CONTEXT_KEY = "hulumed_merge_context"
VIDEO_PLACEHOLDER = "<|video_pad|>"  # what chat_template.jinja renders for a video part (one per item)
VIDEO_PREFIX = "hulumed_video_"  # field names of raw video items (modality "video")


@functools.lru_cache(maxsize=4)
def _hulumed_processor(path: str) -> Any:
    from ..processing.processor import HulumedProcessor

    return HulumedProcessor.from_pretrained(path)


class HulumedProcessingInfo(BaseProcessingInfo):
    """What vLLM needs to know about Hulu-Med inputs."""

    def get_hf_processor(self, **kwargs: object) -> Any:
        return _hulumed_processor(self.ctx.model_config.model)

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"image": None, "video": None}

    def get_data_parser(self) -> MultiModalDataParser:
        return MultiModalDataParser(
            video_needs_metadata=True, expected_hidden_size=self._get_expected_hidden_size(),
            allow_missing_mm_embeddings=self.allow_missing_mm_embeddings,
        )

    def image_token_id(self) -> int:
        return int(self.get_hf_config().image_token_index)

    def video_token_id(self) -> int:
        return int(self.get_tokenizer().convert_tokens_to_ids(VIDEO_PLACEHOLDER))

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        max_tokens = int(getattr(self.get_hf_processor().image_processor, "max_tokens", 16384))
        return {"image": min(seq_len, max_tokens), "video": min(seq_len, max_tokens)}


class HulumedDummyInputsBuilder(BaseDummyInputsBuilder[HulumedProcessingInfo]):
    """Profiling inputs for every modality ``get_supported_mm_limits`` declares: plain images of 448 x 448 (1024
    visual tokens at merge size 1) and videos of ``DUMMY_FRAMES`` frames of 448 x 448 (256 tokens each at merge
    size 2), with the metadata our loader gives."""

    DUMMY_FRAMES = 16

    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return "<image>" * mm_counts.get("image", 0) + VIDEO_PLACEHOLDER * mm_counts.get("video", 0)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options: Any = None) -> Any:
        options = mm_options if isinstance(mm_options, Mapping) else {}
        data: dict[str, Any] = {"image": self._get_dummy_images(
            width=448, height=448, num_images=mm_counts.get("image", 0), overrides=options.get("image"))}
        videos = mm_counts.get("video", 0)
        if videos:
            frames = self._get_dummy_videos(width=448, height=448, num_frames=self.DUMMY_FRAMES, num_videos=videos,
                                            overrides=options.get("video"))
            data["video"] = [(video, {"total_num_frames": len(video), "frames_indices": list(range(len(video))),
                                      "video_backend": "hulumed", "hulumed_kind": "video",
                                      "hulumed_timestamps": [float(i) for i in range(len(video))]})
                             for video in frames]
        return data


class HulumedMultiModalProcessor(BaseMultiModalProcessor[HulumedProcessingInfo]):
    """Unpacks payloads, processes raw images, and places every item's span in the prompt."""

    # ------------------------------------------------------------------ cache identity
    @staticmethod
    def _merge_context(mm_items: MultiModalDataItems) -> int:
        """Merge size of raw images in this request: 2 when any item is a video / prepared multi-frame item."""
        if "video" in mm_items and mm_items.get_count("video", strict=False):
            return 2
        return 1

    def _get_mm_hashes(self, inputs: Any) -> Any:
        """Each item's hash, suffixed with a digest of every item of the request.

        Hulu-Med processes a request's items together (merge size 2 for all of them next to a video, one pixel
        budget over all frames), so an item processed in another request is not reusable: with the request
        digest in every identity, a request hits the cache for all its items or for none.
        """
        hashes = super()._get_mm_hashes(inputs)
        every = [h for modality in sorted(hashes) for h in hashes[modality]]
        digest = hashlib.sha256("|".join(every).encode()).hexdigest()[:16]
        return {modality: [f"{h}-{digest}" for h in values] for modality, values in hashes.items()}

    def _get_cache_missing_processor_kwargs(self, inputs: Any, mm_is_cached: Any) -> Mapping[str, object]:
        return {**inputs.hf_processor_mm_kwargs, _CONTEXT_KEY: self._merge_context(inputs.mm_data_items)}

    # ------------------------------------------------------------------ processing
    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]) -> BatchFeature:
        images = list(hf_data.get("images") or [])
        videos = list(hf_data.get("videos") or [])
        merge = max(int(hf_kwargs.get(_CONTEXT_KEY, 1)), 2 if videos else 1)  # type: ignore[arg-type]
        raw_images = [image for image in images if not is_payload(image)]
        processed = iter(self._process_raw(raw_images, videos, merge)) if (raw_images or videos) else iter(())
        image_payloads = [image if is_payload(image) else next(processed) for image in images]
        video_payloads = list(processed)
        out: dict[str, torch.Tensor] = {}
        if image_payloads:
            out.update(stack_payloads(image_payloads))
        if video_payloads:
            out.update({VIDEO_PREFIX + k[len("hulumed_"):]: v for k, v in stack_payloads(video_payloads).items()})
        return BatchFeature(out)

    def _process_raw(self, images: list[Any], videos: list[Any], merge_size: int) -> list[dict[str, torch.Tensor]]:
        """Raw images then raw videos of one request, processed together as our processor does (one call: the
        conversation-wide merge size and pixel budget), with keep-masks and spans."""
        from ..processing.visual_tokens import visual_tokens

        processor = self.info.get_hf_processor()
        tokenizer = processor.tokenizer
        image_id = self.info.image_token_id()
        frames_of = [v[0] if isinstance(v, tuple) else v for v in videos]
        metadata = [v[1] if isinstance(v, tuple) else {} for v in videos]
        items = [[i.numpy() if isinstance(i, torch.Tensor) else i] for i in images]
        items += [[np.asarray(f) for f in frames] for frames in frames_of]
        modals = ["image"] * len(images) + ["video"] * len(videos)
        out = processor.image_processor(items, merge_size=merge_size)
        pixel_values = torch.as_tensor(np.asarray(out["pixel_values"]), dtype=torch.float32)  # (P, 588)
        grid_sizes = torch.as_tensor(np.asarray(out["grid_sizes"]), dtype=torch.int64)  # (items, 3)
        merge_sizes = torch.as_tensor(np.asarray(out["merge_sizes"]), dtype=torch.int64)  # (items,)
        config = self.info.get_hf_config()
        counted = visual_tokens(pixel_values, grid_sizes, merge_sizes, modals, self.info.ctx.model_config.dtype,
                                checkpoint_default=bool(config.use_token_compression))
        payloads, row = [], 0
        for index, (item, modal) in enumerate(zip(counted, modals)):
            patches = int(grid_sizes[index].prod())
            if modal == "image":
                span = [image_id] * item.tokens
            else:
                times = metadata[index - len(images)].get("hulumed_timestamps")
                span = []
                for frame, kept in enumerate(item.frame_tokens):
                    text = ("," if frame else "") + (f"Time {round(float(times[frame]), 1)}s:" if times else "")
                    span += tokenizer.encode(text, add_special_tokens=False) if text else []
                    span += [image_id] * kept
            payloads.append({
                "hulumed_pixel_values": pixel_values[row : row + patches],
                "hulumed_grid_sizes": grid_sizes[index : index + 1],
                "hulumed_merge_sizes": merge_sizes[index : index + 1],
                "hulumed_keep": item.keep,
                "hulumed_span": torch.tensor(span, dtype=torch.int64),
            })
            row += patches
        return payloads

    def _get_mm_fields_config(
        self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]
    ) -> Mapping[str, MultiModalFieldConfig]:
        fields: dict[str, MultiModalFieldConfig] = {}
        for modality, prefix in (("image", "hulumed_"), ("video", VIDEO_PREFIX)):
            if prefix + "grid_sizes" not in hf_inputs:
                continue
            grid, merge = hf_inputs[prefix + "grid_sizes"], hf_inputs[prefix + "merge_sizes"]
            patches = grid.prod(-1)
            fields.update({
                prefix + "pixel_values": MultiModalFieldConfig.flat_from_sizes(modality, patches),
                prefix + "grid_sizes": MultiModalFieldConfig.batched(modality),
                prefix + "merge_sizes": MultiModalFieldConfig.batched(modality),
                prefix + "keep": MultiModalFieldConfig.flat_from_sizes(modality, patches // merge**2),
                prefix + "span": MultiModalFieldConfig.flat_from_sizes(modality, hf_inputs[prefix + "span_lengths"]),
                prefix + "span_lengths": MultiModalFieldConfig.batched(modality),
            })
        return fields

    def _get_prompt_updates(
        self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        image_token_id = self.info.image_token_id()

        def replacement(modality: str, key: str) -> Any:
            def build(item_idx: int) -> PromptUpdateDetails:
                span = out_mm_kwargs[modality][item_idx][key].data.tolist()
                return PromptUpdateDetails.select_token_id(span, image_token_id)

            return build

        return [
            PromptReplacement(modality="image", target=[image_token_id],
                              replacement=replacement("image", "hulumed_span")),
            PromptReplacement(modality="video", target=[self.info.video_token_id()],
                              replacement=replacement("video", VIDEO_PREFIX + "span")),
        ]


__all__ = [
    "PAYLOAD_KEYS",
    "HulumedDummyInputsBuilder",
    "HulumedMultiModalProcessor",
    "HulumedProcessingInfo",
]

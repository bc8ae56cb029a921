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
from vllm.multimodal.parse import MultiModalDataItems
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


@functools.lru_cache(maxsize=4)
def _hulumed_processor(path: str) -> Any:
    from ..processing.processor import HulumedProcessor

    return HulumedProcessor.from_pretrained(path)


class HulumedProcessingInfo(BaseProcessingInfo):
    """What vLLM needs to know about Hulu-Med inputs."""

    def get_hf_processor(self, **kwargs: object) -> Any:
        return _hulumed_processor(self.ctx.model_config.model)

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"image": None}

    def image_token_id(self) -> int:
        return int(self.get_hf_config().image_token_index)

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        max_tokens = int(getattr(self.get_hf_processor().image_processor, "max_tokens", 16384))
        return {"image": min(seq_len, max_tokens)}


class HulumedDummyInputsBuilder(BaseDummyInputsBuilder[HulumedProcessingInfo]):
    """Profiling inputs: plain white images of 448 x 448 (1024 visual tokens at merge size 1)."""

    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return "<image>" * mm_counts.get("image", 0)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options: Any = None) -> Any:
        overrides = (mm_options or {}).get("image") if isinstance(mm_options, Mapping) else None
        return {"image": self._get_dummy_images(width=448, height=448, num_images=mm_counts.get("image", 0),
                                                overrides=overrides)}


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
        payloads = []
        raw_merge = int(hf_kwargs.get(_CONTEXT_KEY, 1))  # type: ignore[arg-type]
        for image in images:
            payloads.append(image if is_payload(image) else self._process_raw(image, raw_merge))
        if not payloads:
            return BatchFeature({})
        return BatchFeature(stack_payloads(payloads))

    def _process_raw(self, image: Any, merge_size: int) -> dict[str, torch.Tensor]:
        processor = self.info.get_hf_processor()
        if isinstance(image, torch.Tensor):
            image = image.numpy()
        out = processor.image_processor([[image]], merge_size=merge_size)
        grid = torch.as_tensor(np.asarray(out["grid_sizes"]), dtype=torch.int64)  # (1, 3)
        tokens = int(grid.prod()) // merge_size**2
        return {
            "hulumed_pixel_values": torch.as_tensor(np.asarray(out["pixel_values"]), dtype=torch.float32),
            "hulumed_grid_sizes": grid,
            "hulumed_merge_sizes": torch.tensor([merge_size], dtype=torch.int64),
            "hulumed_keep": torch.ones(tokens, dtype=torch.bool),
            "hulumed_span": torch.full((tokens,), self.info.image_token_id(), dtype=torch.int64),
        }

    def _get_mm_fields_config(
        self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]
    ) -> Mapping[str, MultiModalFieldConfig]:
        grid = hf_inputs.get("hulumed_grid_sizes", torch.empty((0, 3), dtype=torch.int64))
        merge = hf_inputs.get("hulumed_merge_sizes", torch.empty((0,), dtype=torch.int64))
        patches = grid.prod(-1)
        tokens = patches // merge**2
        spans = hf_inputs.get("hulumed_span_lengths", torch.empty((0,), dtype=torch.int64))
        return {
            "hulumed_pixel_values": MultiModalFieldConfig.flat_from_sizes("image", patches),
            "hulumed_grid_sizes": MultiModalFieldConfig.batched("image"),
            "hulumed_merge_sizes": MultiModalFieldConfig.batched("image"),
            "hulumed_keep": MultiModalFieldConfig.flat_from_sizes("image", tokens),
            "hulumed_span": MultiModalFieldConfig.flat_from_sizes("image", spans),
            "hulumed_span_lengths": MultiModalFieldConfig.batched("image"),
        }

    def _get_prompt_updates(
        self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        image_token_id = self.info.image_token_id()

        def replacement(item_idx: int) -> PromptUpdateDetails:
            span = out_mm_kwargs["image"][item_idx]["hulumed_span"].data.tolist()
            return PromptUpdateDetails.select_token_id(span, image_token_id)

        return [PromptReplacement(modality="image", target=[image_token_id], replacement=replacement)]


__all__ = [
    "PAYLOAD_KEYS",
    "HulumedDummyInputsBuilder",
    "HulumedMultiModalProcessor",
    "HulumedProcessingInfo",
]

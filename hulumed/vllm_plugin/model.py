"""vLLM model classes for Hulu-Med: vLLM's own Qwen2 / Qwen3 decoder + our vision encoder and projector.

``HulumedQwen2ForCausalLM`` (Hulu-Med-7B/32B) and ``HulumedQwen3ForCausalLM`` (4B/14B) are the names in the
official ``architectures``, so ``vllm serve ZJU-AI4H/Hulu-Med-7B`` / ``vllm.LLM(model=...)`` pick them once the
plugin is installed. The decoder comes from ``init_vllm_registered_model`` (paged attention, tensor / pipeline
parallelism, CUDA graphs: all vLLM's); the vision side is ``hulumed.model``'s ``HulumedVisionEncoder`` and
``HulumedProjector`` (replicated on every rank: it is small next to the decoder).

Module tree -> checkpoint names (``hf_to_vllm_mapper``): ``vision_encoder.*`` <- ``model.vision_encoder.*`` (HF-Version)
or ``model.vision_encoder.vision_encoder.*`` (original layout), ``mm_projector.*`` <- ``model.mm_projector.*``,
``language_model.model.*`` <- ``model.*``, ``language_model.lm_head.*`` <- ``lm_head.*``.

Data flow per batch (``embed_multimodal``): the fields of ``processing.py`` -> vision encoder over all items
(P, 588) -> (tokens, C) -> projector (tokens, H) -> per item, the features its keep-mask keeps (K, H), in prompt
order; vLLM scatters them onto the items' ``<image>`` positions.

Glossary: P patches, C encoder width, H decoder width, K kept tokens of an item.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.model_executor.models.interfaces import MultiModalEmbeddings, SupportsMultiModal, SupportsPP
from vllm.model_executor.models.utils import (
    AutoWeightsLoader,
    WeightsMapper,
    init_vllm_registered_model,
    maybe_prefix,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from ..model.projector import HulumedProjector
from ..model.vision_encoder import HulumedVisionEncoder
from .processing import HulumedDummyInputsBuilder, HulumedMultiModalProcessor, HulumedProcessingInfo


def _as_tensor(value: Any) -> torch.Tensor:
    """vLLM hands a field over as one tensor or as a list of per-item tensors."""
    if isinstance(value, torch.Tensor):
        return value
    return torch.cat([torch.as_tensor(v).reshape(-1, *torch.as_tensor(v).shape[1:]) for v in value])


class _HulumedForCausalLM(nn.Module, SupportsMultiModal, SupportsPP):
    """Shared by both families; subclasses name the vLLM decoder architecture."""

    decoder_architecture = "Qwen2ForCausalLM"
    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={
            "model.vision_encoder.vision_encoder.": "vision_encoder.",  # original (pre-HF) layout
            "model.vision_encoder.": "vision_encoder.",
            "model.mm_projector.": "mm_projector.",
            "lm_head.": "language_model.lm_head.",
            "model.": "language_model.model.",
        }
    )

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("image"):
            return "<image>"
        if modality.startswith("video"):
            return "<|video_pad|>"
        raise ValueError(f"Hulu-Med's vLLM plugin takes image and video items; got {modality!r}")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.config = config
        self.frame_chunk_size = 32
        vision_config = config.vision_config()
        vision_config._attn_implementation = "sdpa"
        with self._mark_tower_model(vllm_config, {"image", "video"}):
            self.vision_encoder = HulumedVisionEncoder(vision_config)
            self.mm_projector = HulumedProjector(
                config.mm_projector_type, vision_config.hidden_size, config.hidden_size
            )
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(
                vllm_config=vllm_config,
                hf_config=config,
                prefix=maybe_prefix(prefix, "language_model"),
                architectures=[self.decoder_architecture],
            )
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    # ------------------------------------------------------------------ vision
    def embed_multimodal(self, **kwargs: object) -> MultiModalEmbeddings:
        prefixes: list[str] = []  # "hulumed_" (image items) / "hulumed_video_" (raw videos), in kwargs order
        for key in kwargs:
            prefix = "hulumed_video_" if key.startswith("hulumed_video_") else "hulumed_"
            present = kwargs.get(prefix + "pixel_values") is not None
            if key.startswith("hulumed_") and prefix not in prefixes and present:
                prefixes.append(prefix)
        embeddings: list[torch.Tensor] = []
        for prefix in prefixes:
            embeddings.extend(self._embed_items(*(kwargs[prefix + k] for k in (
                "pixel_values", "grid_sizes", "merge_sizes", "keep"))))
        return tuple(embeddings)

    def _embed_items(self, pixel_values: Any, grid_sizes: Any, merge_sizes: Any, keep: Any) -> list[torch.Tensor]:
        encoder = self.vision_encoder
        device, dtype = next(encoder.parameters()).device, next(encoder.parameters()).dtype
        pixel_values = _as_tensor(pixel_values).to(device=device, dtype=dtype)  # (P, 588)
        grid_sizes = _as_tensor(grid_sizes).reshape(-1, 3).to(device=device, dtype=torch.int64)  # (items, 3)
        merge_sizes = _as_tensor(merge_sizes).reshape(-1).to(device=device, dtype=torch.int64)  # (items,)
        keep = _as_tensor(keep).reshape(-1).to(device=device, dtype=torch.bool)  # (tokens,)
        features = encoder(pixel_values, grid_sizes, merge_sizes, frame_chunk_size=self.frame_chunk_size)
        features = self.mm_projector(features)  # (tokens, H)
        counts = (grid_sizes.prod(dim=1) // merge_sizes**2).tolist()
        return [f[k] for f, k in zip(features.split(counts), keep.split(counts))]  # (K_i, H) per item

    # ------------------------------------------------------------------ decoder
    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: object,
    ) -> Any:
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)


_register = MULTIMODAL_REGISTRY.register_processor(
    HulumedMultiModalProcessor, info=HulumedProcessingInfo, dummy_inputs=HulumedDummyInputsBuilder
)


@_register
class HulumedQwen2ForCausalLM(_HulumedForCausalLM):
    """Hulu-Med-7B / -32B on vLLM's Qwen2 decoder."""

    decoder_architecture = "Qwen2ForCausalLM"


@_register
class HulumedQwen3ForCausalLM(_HulumedForCausalLM):
    """Hulu-Med-4B / -14B on vLLM's Qwen3 decoder."""

    decoder_architecture = "Qwen3ForCausalLM"

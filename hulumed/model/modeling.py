"""Hulu-Med = vision encoder -> projector -> token reduction -> splice into a transformers Qwen2/Qwen3 decoder.

The decoder, KV cache, ``generate``, loss and attention backends are transformers' own ``Qwen2ForCausalLM`` /
``Qwen3ForCausalLM``; this file only adds the multimodal glue, once, in ``HulumedForCausalLMMixin``, and
declares the two checkpoint families with it.

Module tree = checkpoint names: ``model.embed_tokens``, ``model.layers.N``, ``model.norm``, ``lm_head``,
``model.vision_encoder.{embeddings,encoder,post_layernorm}``, ``model.mm_projector.readout.{0,2}``.

Data flow (as upstream's remote code):
    pixel_values (P, 588) --vision_encoder--> (tokens, C) --mm_projector--> (tokens, H)
    drop items whose modal is "text"; optional inter-frame reduction (keep-mask per token)
    embed_tokens(input_ids) (B, N, H); the `<image>` positions (row-major) receive the features in order
    -> Qwen decoder with inputs_embeds.
With reduction on, the dropped `<image>` positions are removed from each row and rows are re-padded (on the
left for generation), so batches work and each row equals running it alone.

``generate`` follows upstream: it embeds the prompt itself and calls transformers' ``generate`` with
``inputs_embeds``, so it returns only the new tokens.

Glossary: B batch, N prompt length, N' length after reduction, H decoder hidden size, C encoder hidden size.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import Qwen2ForCausalLM, Qwen2Model, Qwen3ForCausalLM, Qwen3Model
from transformers.generation import LogitsProcessorList, RepetitionPenaltyLogitsProcessor
from transformers.models.qwen2.modeling_qwen2 import Qwen2PreTrainedModel
from transformers.models.qwen3.modeling_qwen3 import Qwen3PreTrainedModel

from ..interface import ReductionOptions
from ..processing.visual_tokens import ProcessingTimeReduction, item_modals, keep_mask, visual_tokens
from .checkpoint import load_checkpoint
from .configuration import HulumedQwen2Config, HulumedQwen3Config
from .projector import HulumedProjector
from .vision_encoder import HulumedVisionEncoder


def _add_vision_modules(model: nn.Module, config: HulumedQwen2Config | HulumedQwen3Config) -> None:
    """Attach ``vision_encoder`` and ``mm_projector`` to an inner Qwen model (names as in the checkpoint)."""
    vision_config = config.vision_config()
    requested = config._attn_implementation
    if requested is not None:
        vision_config._attn_implementation = requested
    model.vision_encoder = HulumedVisionEncoder(vision_config)
    model.mm_projector = HulumedProjector(config.mm_projector_type, vision_config.hidden_size, config.hidden_size)


class _FlashAttentionFallback:
    """``attn_implementation="flash_attention_2"`` without the flash-attn package: sdpa, with one warning.

    Upstream's README passes flash_attention_2; transformers would raise ``ImportError`` (or fetch a hub kernel)
    when flash-attn is missing. The hook is transformers' own attention selection, called by ``__init__`` and
    ``from_pretrained``; with flash-attn installed nothing changes (its varlen kernels run).
    """

    def _check_and_adjust_attn_implementation(
        self, attn_implementation: str | None, is_init_check: bool = False, **kwargs: Any
    ) -> str:
        from transformers.utils import is_flash_attn_2_available

        if attn_implementation == "flash_attention_2" and not is_flash_attn_2_available():
            warnings.warn(
                "attn_implementation='flash_attention_2' requested but flash-attn is not installed (or has no "
                "GPU here): using 'sdpa' instead, which gives the same results",
                UserWarning,
                stacklevel=2,
            )
            attn_implementation = "sdpa"
        return super()._check_and_adjust_attn_implementation(  # type: ignore[misc]
            attn_implementation, is_init_check, **kwargs
        )


class _WithVisionModules:
    """A family's decoder stack (the next base) plus ``vision_encoder`` and ``mm_projector``."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)  # type: ignore[call-arg]
        _add_vision_modules(self, config)
        self.post_init()  # type: ignore[attr-defined]


class HulumedQwen2Model(_FlashAttentionFallback, _WithVisionModules, Qwen2Model):
    """Qwen2 decoder stack plus ``vision_encoder`` and ``mm_projector``."""

    config_class = HulumedQwen2Config


class HulumedQwen3Model(_FlashAttentionFallback, _WithVisionModules, Qwen3Model):
    """Qwen3 decoder stack plus ``vision_encoder`` and ``mm_projector``."""

    config_class = HulumedQwen3Config


class HulumedForCausalLMMixin:
    """Multimodal glue shared by both families; placed before the transformers ``*ForCausalLM`` base."""

    model: HulumedQwen2Model | HulumedQwen3Model
    config: HulumedQwen2Config | HulumedQwen3Config
    _pretrained_base: type  # the family's transformers PreTrainedModel (its __init__, not the *ForCausalLM one)
    _decoder_class: type  # the family's Hulumed*Model

    def __init__(self, config: HulumedQwen2Config | HulumedQwen3Config) -> None:
        self._pretrained_base.__init__(self, config)
        self.model = self._decoder_class(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    # ---------------------------------------------------------------- vision
    def encode_images(
        self,
        pixel_values: torch.Tensor,  # (P, 588)
        grid_sizes: torch.Tensor,  # (items, 3)
        merge_sizes: torch.Tensor,  # (items,)
        modals: Sequence[str] | None = None,
        reduction: ReductionOptions | None = None,
        frame_chunk_size: int | None = None,
        keep: torch.Tensor | None = None,  # (tokens,) bool: the keep-mask decided at processing time
    ) -> tuple[torch.Tensor, torch.Tensor]:  # features (tokens, H), keep-mask (tokens,) bool
        """Encoder + projector features of every non-text item, and the reduction keep-mask over them.

        ``reduction`` (None: upstream's rule, on/off as the checkpoint's ``use_token_compression``) and
        ``frame_chunk_size`` (frames per encoder pass, None = all; identical results) are runtime options;
        ``keep``, when given, is the mask the engine computed while processing (not computed again).
        """
        encoder = self.model.vision_encoder
        pixel_values = pixel_values.to(device=encoder.device, dtype=encoder.dtype)
        grid_sizes = grid_sizes.to(encoder.device)
        merge_sizes = merge_sizes.to(encoder.device)
        features = encoder(pixel_values, grid_sizes, merge_sizes, frame_chunk_size=frame_chunk_size)
        features = self.model.mm_projector(features)  # (tokens of all items, H)
        modal_list = item_modals(grid_sizes, modals)
        if "text" in modal_list:
            counts = (grid_sizes.prod(dim=1) // merge_sizes**2).tolist()
            parts = features.split(counts, dim=0)
            features = torch.cat([p for p, modal in zip(parts, modal_list) if modal != "text"], dim=0)
        if keep is not None:
            return features, keep.to(device=features.device, dtype=torch.bool)
        items = visual_tokens(
            pixel_values, grid_sizes, merge_sizes, modal_list, encoder.dtype, reduction,
            checkpoint_default=bool(self.config.use_token_compression),
        )
        return features, keep_mask(items, features.device)

    def processing_time_reduction(self, reduction: ReductionOptions | None = None) -> ProcessingTimeReduction:
        """How this model's rows are reduced while processing (the engine's and training's form): ``reduction``
        over the checkpoint's ``use_token_compression``, the mask computed in the vision encoder's dtype."""
        return ProcessingTimeReduction(reduction, bool(self.config.use_token_compression),
                                       self.model.vision_encoder.dtype, self.config.image_token_index)

    def blank_vision_term(self) -> torch.Tensor:  # () exactly 0.0, differentiable in every vision weight
        """``0 * (encoder + projector features of a blank 2 x 2-patch image).sum()``."""
        encoder = self.model.vision_encoder
        patch = encoder.config.patch_size
        pixel_values = torch.zeros((4, 3 * patch * patch), device=encoder.device, dtype=encoder.dtype)  # (4, 588)
        grid_sizes = torch.tensor([[1, 2, 2]], device=encoder.device)
        merge_sizes = torch.tensor([1], device=encoder.device)
        features = self.model.mm_projector(encoder(pixel_values, grid_sizes, merge_sizes))  # (4, H)
        return features.sum() * 0.0

    # ---------------------------------------------------------------- splice
    def prepare_multimodal_inputs(
        self,
        input_ids: torch.Tensor,  # (B, N)
        attention_mask: torch.Tensor | None = None,  # (B, N)
        labels: torch.Tensor | None = None,  # (B, N)
        position_ids: torch.Tensor | None = None,  # (B, N)
        pixel_values: torch.Tensor | None = None,
        grid_sizes: torch.Tensor | None = None,
        merge_sizes: torch.Tensor | None = None,
        modals: Sequence[str] | None = None,
        reduction: ReductionOptions | None = None,
        frame_chunk_size: int | None = None,
        visual_keep: torch.Tensor | None = None,  # (visual tokens before reduction,) bool
    ) -> dict[str, torch.Tensor | None]:
        """Token ids + media -> ``inputs_embeds`` (B, N', H) and the matching mask / labels / positions.

        Two forms of the same result: ``input_ids`` with every visual token (the processor's, upstream's
        contract: reduced positions are dropped here and rows re-padded), or ids already holding only the kept
        tokens plus their ``visual_keep`` mask (decided at processing time by the engine: features are indexed
        with it, nothing is dropped or re-padded here).
        """
        embed = self.model.embed_tokens
        input_ids = input_ids.to(_device_of(embed))
        if pixel_values is None or input_ids.shape[1] == 1:
            return {
                "inputs_embeds": embed(input_ids),
                "attention_mask": attention_mask,
                "labels": labels,
                "position_ids": position_ids,
            }
        if grid_sizes is None or merge_sizes is None:
            raise ValueError("pixel_values need grid_sizes and merge_sizes (pass the processor's outputs unchanged)")
        features, keep = self.encode_images(
            pixel_values, grid_sizes, merge_sizes, modals, reduction=reduction, frame_chunk_size=frame_chunk_size,
            keep=visual_keep,
        )
        image_positions = input_ids == self.config.image_token_index  # (B, N)
        n_slots = int(image_positions.sum())
        if visual_keep is not None:  # ids reduced at processing time: only the kept features are spliced
            if keep.shape[0] != features.shape[0] or int(keep.sum()) != n_slots:
                raise ValueError(
                    f"visual_keep covers {keep.shape[0]} tokens with {int(keep.sum())} kept, but the media give "
                    f"{features.shape[0]} and the prompt has {n_slots} image tokens; pass the engine's inputs "
                    "unchanged"
                )
            inputs_embeds = embed(input_ids)  # (B, N, H)
            features = features[keep].to(inputs_embeds.dtype)
            inputs_embeds = inputs_embeds.masked_scatter(image_positions.unsqueeze(-1), features)
            return {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask, "labels": labels,
                    "position_ids": position_ids}
        if n_slots != features.shape[0]:
            raise ValueError(
                f"the prompt has {n_slots} image tokens (id {self.config.image_token_index}) but the media give "
                f"{features.shape[0]} visual tokens; build input_ids and pixel_values with the same processor call"
            )
        if not bool(keep.all()):
            input_ids, attention_mask, labels, position_ids = _drop_positions(
                input_ids, image_positions, keep, attention_mask, labels, position_ids
            )
            features = features[keep]
            image_positions = input_ids == self.config.image_token_index
        inputs_embeds = embed(input_ids)  # (B, N', H)
        features = features.to(inputs_embeds.dtype)
        inputs_embeds = inputs_embeds.masked_scatter(image_positions.unsqueeze(-1), features)
        return {
            "inputs_embeds": inputs_embeds,
            "attention_mask": attention_mask,
            "labels": labels,
            "position_ids": position_ids,
        }

    # ---------------------------------------------------------------- forward / generate
    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        grid_sizes: torch.Tensor | None = None,
        merge_sizes: torch.Tensor | None = None,
        modals: Sequence[str] | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        reduction: ReductionOptions | None = None,
        frame_chunk_size: int | None = None,
        visual_keep: torch.Tensor | None = None,  # (visual tokens before reduction,) bool: ids already reduced
        **kwargs: Any,
    ) -> Any:
        # ``logits_to_keep`` is named here so that ``generate`` sees it and computes prompt logits for the last
        # position only (else the prefill projects every prompt position onto the whole vocabulary).
        if inputs_embeds is None and input_ids is not None and pixel_values is not None:
            prepared = self.prepare_multimodal_inputs(
                input_ids, attention_mask, labels, position_ids, pixel_values, grid_sizes, merge_sizes, modals,
                reduction=reduction, frame_chunk_size=frame_chunk_size, visual_keep=visual_keep,
            )
            input_ids = None
            inputs_embeds = prepared["inputs_embeds"]
            attention_mask = prepared["attention_mask"]
            labels = prepared["labels"]
            position_ids = prepared["position_ids"]
        elif self.training and inputs_embeds is None and input_ids is not None and pixel_values is None:
            # a text-only training batch runs the vision encoder and projector too, before the LLM, on a blank
            # input whose contribution is exactly zero: every rank then runs the same modules in the same order
            # each step (DDP with or without find_unused_parameters, peft, ZeRO-2/3 and FSDP gather and reduce
            # the same tensors); the loss and every gradient are unchanged
            blank = self.blank_vision_term()
            inputs_embeds = self.model.embed_tokens(input_ids.to(_device_of(self.model.embed_tokens)))
            inputs_embeds = inputs_embeds + blank.to(inputs_embeds.dtype)  # (B, N, H) + 0
            input_ids = None
        return super().forward(  # type: ignore[misc]
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            labels=labels,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    @torch.no_grad()
    def generate(  # type: ignore[override]
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        grid_sizes: torch.Tensor | None = None,
        merge_sizes: torch.Tensor | None = None,
        modals: Sequence[str] | None = None,
        reduction: ReductionOptions | None = None,
        frame_chunk_size: int | None = None,
        visual_keep: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Upstream semantics: embeds the prompt (media included) and returns only the new tokens.

        As upstream, no prompt ids reach transformers, so a ``repetition_penalty`` applies to new tokens only.
        ``reduction`` / ``frame_chunk_size``: runtime options, as in ``encode_images``.
        """
        if "inputs_embeds" in kwargs:
            raise ValueError("pass input_ids (and media), not inputs_embeds: the prompt is embedded here")
        if input_ids is None:
            raise ValueError("generate needs input_ids (the processor's output)")
        attention_mask = kwargs.pop("attention_mask", None)
        position_ids = kwargs.pop("position_ids", None)
        prepared = self.prepare_multimodal_inputs(
            input_ids, attention_mask, None, position_ids, pixel_values, grid_sizes, merge_sizes, modals,
            reduction=reduction, frame_chunk_size=frame_chunk_size, visual_keep=visual_keep,
        )
        if prepared["attention_mask"] is not None:
            kwargs["attention_mask"] = prepared["attention_mask"].to(prepared["inputs_embeds"].device)
        if prepared["position_ids"] is not None:
            kwargs["position_ids"] = prepared["position_ids"]
        penalty = kwargs.get("repetition_penalty")
        if penalty is None:
            penalty = (kwargs.get("generation_config") or self.generation_config).repetition_penalty
        if penalty is not None and penalty != 1.0:
            # transformers 5 treats the first `padding length` ids of each left-padded row as prompt and exempts
            # them from the penalty; with inputs_embeds those ids are *generated* tokens. Our processor (same
            # class, so it takes the built-in one's place in the chain) penalises every generated token of
            # every row, which is upstream's behaviour and makes a batched row equal to the row alone.
            kwargs["logits_processor"] = LogitsProcessorList(
                [*(kwargs.get("logits_processor") or []), RepetitionPenaltyLogitsProcessor(float(penalty))]
            )
        generation_logger = logging.getLogger("transformers.generation.utils")
        level = generation_logger.level
        with warnings.catch_warnings():
            # Upstream semantics, documented above: a repetition penalty sees only the new tokens.
            warnings.filterwarnings("ignore", message="Passing `repetition_penalty` with `inputs_embeds`")
            generation_logger.setLevel(max(level, logging.ERROR))  # silence "custom processor takes precedence"
            try:
                return super().generate(inputs_embeds=prepared["inputs_embeds"], **kwargs)  # type: ignore[misc]
            finally:
                generation_logger.setLevel(level)

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        """transformers' loader, made strict: a missing or unexpected tensor raises ``CheckpointError``.

        Folders in the original (pre-HF) layout — doubled ``model.vision_encoder.vision_encoder.`` prefix,
        ``pytorch_model.bin`` — are detected and remapped (see ``checkpoint.py``).

        transformers' Hub kernels (on by default since 5.25) are off unless ``use_kernels=True`` is passed: they
        fetch code from the Hub while loading (an offline hospital machine has none, and code from a network is
        not what a clinical site runs unreviewed), fail on the meta device, and swap layers for kernels whose
        numerics differ from upstream's.
        """
        kwargs.setdefault("use_kernels", False)
        return load_checkpoint(cls, pretrained_model_name_or_path, *args, families=FAMILIES, **kwargs)

    @classmethod
    def _hf_from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        return super().from_pretrained(*args, **kwargs)  # type: ignore[misc]


def _device_of(module: nn.Module) -> torch.device:
    """Where a module's weights live, without indexing ``module.weight``: under DeepSpeed ZeRO-3 that access, outside
    the module's own forward, gathers the weight then and there, on the ranks that make it, so ranks whose batches
    take different paths would issue different collectives."""
    return next(module.parameters()).device


def _drop_positions(
    input_ids: torch.Tensor,  # (B, N)
    image_positions: torch.Tensor,  # (B, N) bool
    keep: torch.Tensor,  # (image tokens,) bool, row-major over image_positions
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor | None,
    position_ids: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Remove reduced-away `<image>` positions (and old padding) from every row; re-pad rows to one length.

    Rows are padded on the left when the batch is left-padded or unpadded (generation) and on the right
    otherwise (training batches). ``position_ids`` (packed training) are renumbered per row.
    """
    valid = torch.ones_like(image_positions)
    valid[image_positions] = keep  # (B, N)
    if attention_mask is not None:
        valid &= attention_mask.bool()
    batch, _ = input_ids.shape
    lengths = valid.sum(dim=1)  # (B,)
    width = int(lengths.max())
    left = attention_mask is None or bool(attention_mask[:, -1].all())

    def repack(values: torch.Tensor, fill: int) -> torch.Tensor:
        out = values.new_full((batch, width), fill)
        for b in range(batch):
            row = values[b][valid[b]]
            if left:
                out[b, width - row.shape[0] :] = row
            else:
                out[b, : row.shape[0]] = row
        return out

    new_ids = repack(input_ids, int(input_ids[0, 0]))  # pad id is irrelevant: masked out
    new_mask = repack(torch.ones_like(input_ids), 0)
    if attention_mask is None and int(lengths.min()) == width:
        new_mask = None
    new_labels = repack(labels, -100) if labels is not None else None
    new_positions = None
    if position_ids is not None:
        base = new_mask if new_mask is not None else torch.ones_like(new_ids)
        new_positions = (base.long().cumsum(dim=1) - 1).clamp(min=0)
    return new_ids, new_mask, new_labels, new_positions


class HulumedQwen2ForCausalLM(_FlashAttentionFallback, HulumedForCausalLMMixin, Qwen2ForCausalLM):
    """Hulu-Med-7B / -32B (``HulumedQwen2ForCausalLM`` in the official ``architectures``)."""

    config_class = HulumedQwen2Config
    _no_split_modules = ["Qwen2DecoderLayer", "VideoLlama3VisionEncoderLayer"]
    _pretrained_base = Qwen2PreTrainedModel
    _decoder_class = HulumedQwen2Model


class HulumedQwen3ForCausalLM(_FlashAttentionFallback, HulumedForCausalLMMixin, Qwen3ForCausalLM):
    """Hulu-Med-4B / -14B (``HulumedQwen3ForCausalLM`` in the official ``architectures``)."""

    config_class = HulumedQwen3Config
    _no_split_modules = ["Qwen3DecoderLayer", "VideoLlama3VisionEncoderLayer"]
    _pretrained_base = Qwen3PreTrainedModel
    _decoder_class = HulumedQwen3Model


@dataclass(frozen=True)
class ModelFamily:
    """One decoder family of Hulu-Med: its config / model classes and how to recognise its checkpoints."""

    name: str  # "qwen2" | "qwen3"
    decoder: str  # the decoder's name in model cards
    config_class: type
    model_class: type
    causal_lm_class: type
    marker_tensor: str | None  # a tensor-name suffix only this family's checkpoints have (None: the fallback)


FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily("qwen3", "Qwen3", HulumedQwen3Config, HulumedQwen3Model, HulumedQwen3ForCausalLM,
                "self_attn.q_norm.weight"),
    ModelFamily("qwen2", "Qwen2.5", HulumedQwen2Config, HulumedQwen2Model, HulumedQwen2ForCausalLM, None),
)


def family_of(config_or_model_type: Any) -> ModelFamily:
    """The family of a config (or a ``model_type`` string); unknown types raise ``ValueError``."""
    model_type = getattr(config_or_model_type, "model_type", config_or_model_type)
    for family in FAMILIES:
        if family.config_class.model_type == model_type:
            return family
    known = ", ".join(f.config_class.model_type for f in FAMILIES)
    raise ValueError(f"{model_type!r} is not a Hulu-Med model type ({known})")

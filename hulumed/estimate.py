"""Before running: how many tokens a request makes and roughly how much memory it needs; model facts.

``estimate_request`` runs only the processor (media are read, no weights are touched) and returns

* ``prompt_tokens`` and ``visual_tokens`` after inter-frame reduction (exact: the same function the model
  uses, ``processing.visual_tokens``), ``visual_tokens_before_reduction``, ``frames`` and ``patches``;
* ``weights_bytes``: parameter count (from a meta-device instance of the model, exact) x dtype size;
* ``kv_cache_bytes`` = 2 x layers x kv_heads x head_dim x (prompt + max_new_tokens) x dtype size;
* ``vision_peak_bytes`` ~ patches of the largest encoder pass x (6 x C + I) x dtype size: the residual stream,
  q/k/v/out and the MLP hidden of one layer (attention runs per frame through fused SDPA, so no L x L term on
  GPU; on CPU add frames x heads x L^2 x 4 bytes per pass);
* ``prefill_peak_bytes`` ~ prompt x (4 x H + 2 x intermediate) x dtype size, plus vocab x 4 bytes for the
  last-position logits;
* ``total_bytes``: the sum — a planning figure, not a guarantee (allocator overheads come on top).
``describe_model`` gives what ``hulumed info`` prints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from .conversation import Conversation, validate
from .generation import GenerationParams
from .interface import ReductionOptions
from .processing.visual_tokens import visual_tokens
from .think import with_think_instruction


def parameter_count(config: Any) -> dict[str, int]:
    """Exact parameter counts per part, from a model instantiated on the meta device (no memory)."""
    cls = _family(config).causal_lm_class
    with torch.device("meta"):
        model = cls(config)
    counts = {"vision_encoder": 0, "mm_projector": 0, "language_model": 0}
    seen: set[int] = set()
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in seen:
            continue  # a tied lm_head is the embedding
        seen.add(id(parameter))
        part = (
            "vision_encoder" if ".vision_encoder." in name
            else "mm_projector" if ".mm_projector." in name else "language_model"
        )
        counts[part] += parameter.numel()
    counts["total"] = sum(counts.values())
    return counts


def count_parameters(model: Any) -> dict[str, int]:
    """Parameter counts per part of a loaded model (a 4-bit weight counts its unpacked size)."""
    counts = {"vision_encoder": 0, "mm_projector": 0, "language_model": 0}
    for name, parameter in model.named_parameters():
        state = getattr(parameter, "quant_state", None)
        numel = int(torch.Size(state.shape).numel()) if state is not None else parameter.numel()
        part = (
            "vision_encoder" if ".vision_encoder." in name
            else "mm_projector" if ".mm_projector." in name else "language_model"
        )
        counts[part] += numel
    counts["total"] = sum(counts.values())
    return counts


def _family(config: Any) -> Any:
    from .model.modeling import family_of

    return family_of(config)


def _dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def estimate_request(
    config: Any,
    processor: Any,
    conversation: Conversation,
    params: GenerationParams,
    *,
    dtype: torch.dtype = torch.bfloat16,
    add_system_prompt: bool = True,
    frame_chunk_size: int | None = None,
    reduction: ReductionOptions | None = None,
    vision_dtype: torch.dtype | None = None,
    parameters: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Token counts and a memory plan for one conversation; ``vision_dtype`` (default ``dtype``) is the dtype the
    vision encoder runs in, in which the reduction's keep-mask is computed."""
    conversation = validate(conversation)
    if params.think:
        conversation = with_think_instruction(conversation)
    batch = processor(
        conversation=conversation, add_system_prompt=add_system_prompt, add_generation_prompt=True, return_tensors="pt"
    )
    return estimate_inputs(config, batch, params, dtype=dtype, frame_chunk_size=frame_chunk_size, reduction=reduction,
                           vision_dtype=vision_dtype, parameters=parameters)


def estimate_inputs(
    config: Any,
    batch: Any,
    params: GenerationParams,
    *,
    dtype: torch.dtype = torch.bfloat16,
    frame_chunk_size: int | None = None,
    reduction: ReductionOptions | None = None,
    vision_dtype: torch.dtype | None = None,
    parameters: dict[str, int] | None = None,
) -> dict[str, Any]:
    """``estimate_request`` for one conversation already processed (the processor's outputs: ``input_ids``,
    ``pixel_values``, ``grid_sizes``, ``merge_sizes``, ``modals``; or an engine row whose ids were reduced at
    processing time, with its ``visual_keep``), so a prepared request is not decoded again."""
    size = _dtype_bytes(dtype)
    grid = batch.get("grid_sizes")
    keep = batch.get("visual_keep")
    if keep is not None:  # an engine row: ids already reduced at processing time, the mask says what was kept
        slots, visual = int(keep.numel()), int(keep.sum())
        prompt = int(batch["input_ids"].shape[1])
    else:
        slots = int((batch["input_ids"] == config.image_token_index).sum())
        visual = slots
        if grid is not None and len(grid):
            items = visual_tokens(
                batch["pixel_values"], grid, batch["merge_sizes"], batch.get("modals"), vision_dtype or dtype,
                reduction, checkpoint_default=bool(config.use_token_compression),
            )
            visual = sum(item.tokens for item in items)
        prompt = int(batch["input_ids"].shape[1]) - slots + visual
    frames = int(grid[:, 0].sum()) if grid is not None else 0
    patches = int(grid.prod(dim=1).sum()) if grid is not None else 0
    vision = config.vision_config()
    if grid is not None and len(grid):
        per_frame = grid[:, 1] * grid[:, 2]
        chunk = frame_chunk_size or frames
        largest_pass = max(int(min(t, chunk) * p) for t, p in zip(grid[:, 0].tolist(), per_frame.tolist()))
        largest_pass = max(largest_pass, int(per_frame.max()))
    else:
        largest_pass = 0
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    total_len = prompt + params.max_new_tokens
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * total_len * size
    vision_peak = largest_pass * (6 * vision.hidden_size + vision.intermediate_size) * size
    prefill = prompt * (4 * config.hidden_size + 2 * config.intermediate_size) * size + config.vocab_size * 4
    weights = (parameters or parameter_count(config))["total"] * size
    return {
        "prompt_tokens": prompt,
        "visual_tokens": visual,
        "visual_tokens_before_reduction": slots,
        "frames": frames,
        "patches": patches,
        "max_new_tokens": params.max_new_tokens,
        "dtype": str(dtype).replace("torch.", ""),
        "weights_bytes": weights,
        "kv_cache_bytes": kv,
        "vision_peak_bytes": vision_peak,
        "prefill_peak_bytes": prefill,
        "total_bytes": weights + kv + max(vision_peak, prefill),
    }


def describe_model(
    config: Any, path: Path | None = None, dtype: Any = None, device: Any = None,
    parameters: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Variant, sizes and flags of a checkpoint (from its config; parameters counted without weights unless a
    loaded model's ``parameters`` are given)."""
    vision = config.vision_config()
    counts = parameters or parameter_count(config)
    return {
        "path": str(path) if path is not None else None,
        "architecture": (config.architectures or ["?"])[0],
        "model_type": config.model_type,
        "decoder": _family(config).decoder,
        "parameters": counts["total"],
        "parameters_billions": round(counts["total"] / 1e9, 3),
        "parameters_by_part": {k: v for k, v in counts.items() if k != "total"},
        "dtype": str(dtype or getattr(config, "dtype", None) or "?").replace("torch.", ""),
        "device": str(device) if device is not None else None,
        "hidden_size": config.hidden_size,
        "layers": config.num_hidden_layers,
        "vocab_size": config.vocab_size,
        "vision": {
            "hidden_size": vision.hidden_size,
            "layers": vision.num_hidden_layers,
            "heads": vision.num_attention_heads,
            "patch_size": vision.patch_size,
        },
        "mm_projector_type": config.mm_projector_type,
        "image_token_index": config.image_token_index,
        "use_token_compression": bool(config.use_token_compression),
        "tie_word_embeddings": bool(config.tie_word_embeddings),
        "max_position_embeddings": config.max_position_embeddings,
    }


def describe_template(template: str | None) -> dict[str, Any]:
    """What the checkpoint's chat template does (its system prompt, if it has a built-in one)."""
    if not template:
        return {"present": False}
    match = re.search(r"<\|im_start\|>system\\n(.*?)<\|im_end\|>", template)
    return {
        "present": True,
        "characters": len(template),
        "system_prompt": match.group(1) if match else None,
        "add_system_prompt_switch": "add_system_prompt" in template,
        "timestamps": "timestamps" in template,
    }

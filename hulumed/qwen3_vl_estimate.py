"""Model facts and a memory plan for the second generation (mixture-of-experts decoders), as ``estimate.py``
gives them for the first.

* ``count_parameters``: per part (``vision_encoder``, ``language_model``, ``lm_head``) and ``active``: the
  parameters one token passes through — everything but the experts, plus ``num_experts_per_tok / num_experts``
  of the expert weights (every expert stays resident, so memory counts ``total``).
* ``estimate_inputs``: prompt / visual tokens of one processed conversation, ``weights_bytes`` (all experts),
  ``kv_cache_bytes`` = 2 x layers x kv_heads x head_dim x (prompt + max_new_tokens) x dtype size,
  ``vision_peak_bytes`` ~ patches x (6 x C + I) x dtype size (the largest image or video),
  ``prefill_peak_bytes`` ~ prompt x (4 x H + 2 x k x expert width) x dtype size + vocab x 4 bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .generation import GenerationParams
from .model.family import family_of


def _part(name: str) -> str:
    if ".visual." in name or name.startswith("visual.") or "model.visual" in name:
        return "vision_encoder"
    return "lm_head" if name.startswith("lm_head") else "language_model"


def count_parameters(model: Any | None, config: Any) -> dict[str, int]:
    """Parameter counts of a loaded model, or (``model=None``) of a meta-device instance of ``config``."""
    if model is None:
        from transformers import AutoModelForImageTextToText

        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(config)
    counts = {"vision_encoder": 0, "language_model": 0, "lm_head": 0}
    experts = 0
    seen: set[int] = set()
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in seen:
            continue  # a tied head is the embedding
        seen.add(id(parameter))
        state = getattr(parameter, "quant_state", None)
        numel = int(torch.Size(state.shape).numel()) if state is not None else parameter.numel()
        counts[_part(name)] += numel
        if ".experts." in name:
            experts += numel
    counts["total"] = sum(counts.values())
    text = config.get_text_config()
    total_experts = getattr(text, "num_experts", 0) or 0
    active_experts = getattr(text, "num_experts_per_tok", 0) or 0
    counts["active"] = counts["total"] - experts + (experts * active_experts // total_experts if total_experts
                                                    else experts)
    return counts


def describe_model(config: Any, path: Path | None = None, dtype: Any = None, device: Any = None,
                   parameters: dict[str, int] | None = None) -> dict[str, Any]:
    """What ``hulumed info`` prints for a second-generation checkpoint."""
    family = family_of(config.to_dict())
    text, vision = config.get_text_config(), config.vision_config
    counts = parameters or count_parameters(None, config)
    return {
        "path": str(path) if path is not None else None,
        "architecture": (config.architectures or ["?"])[0],
        "model_type": config.model_type,
        "generation": family.generation,
        "family": family.label,  # also the first generation's engine info (backends/hf.py)
        "decoder": text.model_type,
        "parameters": counts["total"],
        "parameters_billions": round(counts["total"] / 1e9, 3),
        "active_parameters": counts["active"],
        "active_parameters_billions": round(counts["active"] / 1e9, 3),
        "parameters_by_part": {k: v for k, v in counts.items() if k not in ("total", "active")},
        "experts": getattr(text, "num_experts", None),
        "experts_per_token": getattr(text, "num_experts_per_tok", None),
        "dtype": str(dtype or getattr(config, "dtype", None) or "?").replace("torch.", ""),
        "device": str(device) if device is not None else None,
        "hidden_size": text.hidden_size,
        "layers": text.num_hidden_layers,
        "vocab_size": text.vocab_size,
        "vision": {"hidden_size": vision.hidden_size, "layers": vision.depth, "heads": vision.num_heads,
                   "patch_size": vision.patch_size, "spatial_merge_size": vision.spatial_merge_size},
        "image_token_id": config.image_token_id,
        "video_token_id": config.video_token_id,
        "tie_word_embeddings": bool(getattr(text, "tie_word_embeddings", False)),
        "max_position_embeddings": text.max_position_embeddings,
    }


def estimate_inputs(config: Any, batch: Any, params: GenerationParams, *, dtype: torch.dtype = torch.bfloat16,
                    parameters: dict[str, int] | None = None) -> dict[str, Any]:
    """Tokens and a memory plan for one processed conversation (the stock processor's outputs)."""
    size = torch.empty(0, dtype=dtype).element_size()
    ids = batch["input_ids"]
    visual = int(torch.isin(ids, torch.tensor([config.image_token_id, config.video_token_id],
                                              device=ids.device)).sum())
    prompt = int(ids.shape[1])
    grids = [batch[k] for k in ("image_grid_thw", "video_grid_thw") if batch.get(k) is not None]
    patches = sum(int(g.prod(dim=1).sum()) for g in grids)
    largest = max((int(g.prod(dim=1).max()) for g in grids if len(g)), default=0)
    frames = int(batch["video_grid_thw"][:, 0].sum()) * config.vision_config.temporal_patch_size \
        if batch.get("video_grid_thw") is not None else 0
    text, vision = config.get_text_config(), config.vision_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    total_len = prompt + params.max_new_tokens
    kv = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * total_len * size
    vision_peak = largest * (6 * vision.hidden_size + vision.intermediate_size) * size
    width = (getattr(text, "moe_intermediate_size", 0) or 0) * (getattr(text, "num_experts_per_tok", 0) or 0) \
        or text.intermediate_size
    prefill = prompt * (4 * text.hidden_size + 2 * width) * size + text.vocab_size * 4
    counts = parameters or count_parameters(None, config)
    weights = counts["total"] * size
    return {
        "prompt_tokens": prompt,
        "visual_tokens": visual,
        "visual_tokens_before_reduction": visual,
        "frames": frames,
        "patches": patches,
        "max_new_tokens": params.max_new_tokens,
        "dtype": str(dtype).replace("torch.", ""),
        "weights_bytes": weights,
        "active_parameters": counts["active"],
        "kv_cache_bytes": kv,
        "vision_peak_bytes": vision_peak,
        "prefill_peak_bytes": prefill,
        "total_bytes": weights + kv + max(vision_peak, prefill),
    }

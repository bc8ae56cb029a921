"""Hulu-Med media items as vLLM receives them (vLLM-free, so it is tested without vLLM).

In:  one conversation processed by ``HulumedProcessor`` exactly as the transformers engine processes it (media
     loading, conversation-wide merge size, resize rules, chat template, one ``<image>`` run per frame), and the
     dtype the model runs in.
Out: ``PromptItems``: the prompt token ids with each media item collapsed to ONE ``<image>`` placeholder (what is
     sent to vLLM), and per item a payload dict (pixel values, grid, merge size, keep-mask, and the item's token
     span after reduction) that the plugin's multimodal processor turns into vLLM fields. vLLM's prompt update
     replaces the k-th placeholder by the k-th span, so the prompt vLLM runs equals the transformers engine's
     prompt after inter-frame reduction, token for token.

Why spans: a video item is not one run of ``<image>`` tokens — frames are separated by ``,Time 1.0s:`` text. The
span (first to last ``<image>`` of the item, separators included) is cut from the ids the processor tokenised
from the whole prompt, so its text tokens are exactly the transformers engine's.

The keep-mask comes from ``hulumed.processing.visual_tokens`` (computed in the model dtype), the function the
transformers model and engine count with; items are processed together with their whole conversation, so an
item's payload already carries the context-dependent merge size and pixel budget, and vLLM's content hash of the
payload is a cache identity that includes that context.

Glossary: P patches of an item, T its merged tokens (before reduction), K its kept tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..interface import ReductionOptions
from ..processing.visual_tokens import keep_mask, visual_tokens

#: Keys of one item payload (a plain dict of tensors, so vLLM can hash and pickle it).
PAYLOAD_KEYS = ("hulumed_pixel_values", "hulumed_grid_sizes", "hulumed_merge_sizes", "hulumed_keep", "hulumed_span")


@dataclass
class PromptItems:
    """One conversation ready for vLLM."""

    prompt_ids: list[int]  # one image token per media item
    items: list[dict[str, torch.Tensor]] = field(default_factory=list)  # payloads, in prompt order
    full_prompt_ids: list[int] = field(default_factory=list)  # after reduction: what the decoder sees
    visual_tokens: int = 0  # after reduction
    visual_tokens_before_reduction: int = 0
    engine_prompt_ids: list[int] | None = None  # the prompt vLLM ran (after its prompt updates), once run


def build_prompt_items(
    batch: Any,
    image_token_id: int,
    checkpoint_default: bool,
    dtype: torch.dtype = torch.float32,
    reduction: ReductionOptions | None = None,
) -> PromptItems:
    """Split one processed conversation (a ``HulumedProcessor`` output with one row) into vLLM inputs.

    ``checkpoint_default`` is the checkpoint's ``use_token_compression`` (used when ``reduction.enabled`` is None).
    """
    ids = [int(t) for t in torch.as_tensor(batch["input_ids"]).reshape(-1).tolist()]
    if "pixel_values" not in batch:
        return PromptItems(prompt_ids=ids, full_prompt_ids=list(ids))
    pixel_values = torch.as_tensor(batch["pixel_values"])  # (P, 588)
    grid_sizes = torch.as_tensor(batch["grid_sizes"]).to(torch.int64)  # (items, 3)
    merge_sizes = torch.as_tensor(batch["merge_sizes"]).to(torch.int64)  # (items,)
    patches = grid_sizes.prod(dim=1)  # (items,)
    tokens = patches // merge_sizes**2  # (items,)
    counted = visual_tokens(pixel_values, grid_sizes, merge_sizes, batch.get("modals"), dtype, reduction,
                            checkpoint_default=checkpoint_default)
    keep = keep_mask(counted)  # (tokens,) bool, computed in `dtype`
    positions = [i for i, token in enumerate(ids) if token == image_token_id]
    if len(positions) != int(tokens.sum()):
        raise ValueError(f"the prompt has {len(positions)} image tokens but the media make {int(tokens.sum())}")

    out = PromptItems(prompt_ids=[], visual_tokens_before_reduction=len(positions))
    cursor, token_start, patch_start = 0, 0, 0
    for index, (count, patch_count) in enumerate(zip(tokens.tolist(), patches.tolist())):
        first, last = positions[token_start], positions[token_start + count - 1]
        item_keep = keep[token_start : token_start + count]  # (T,)
        span, k = [], 0
        for token in ids[first : last + 1]:
            if token == image_token_id:
                if bool(item_keep[k]):
                    span.append(token)
                k += 1
            else:
                span.append(token)
        out.prompt_ids.extend(ids[cursor:first])
        out.prompt_ids.append(image_token_id)
        out.full_prompt_ids.extend(ids[cursor:first])
        out.full_prompt_ids.extend(span)
        out.visual_tokens += int(item_keep.sum())
        out.items.append(
            {
                "hulumed_pixel_values": pixel_values[patch_start : patch_start + patch_count],  # (P, 588)
                "hulumed_grid_sizes": grid_sizes[index : index + 1],  # (1, 3)
                "hulumed_merge_sizes": merge_sizes[index : index + 1],  # (1,)
                "hulumed_keep": item_keep.clone(),  # (T,) bool
                "hulumed_span": torch.tensor(span, dtype=torch.int64),  # (len,) the item's tokens after reduction
            }
        )
        cursor, token_start, patch_start = last + 1, token_start + count, patch_start + patch_count
    out.prompt_ids.extend(ids[cursor:])
    out.full_prompt_ids.extend(ids[cursor:])
    return out


def is_payload(item: Any) -> bool:
    """Whether a vLLM image item is a prepared Hulu-Med payload (vs. a raw image to process)."""
    return isinstance(item, dict) and all(key in item for key in PAYLOAD_KEYS)


def stack_payloads(payloads: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate payloads into the flat tensors of the vLLM fields (sizes per item are implied)."""
    stacked = {key: torch.cat([torch.as_tensor(p[key]) for p in payloads]) for key in PAYLOAD_KEYS}
    stacked["hulumed_span_lengths"] = torch.tensor([len(p["hulumed_span"]) for p in payloads], dtype=torch.int64)
    return stacked

"""Inter-frame token reduction over a whole processor batch, as the model applies it.

The rule and its per-item function live in ``hulumed.processing.visual_tokens`` (shared with the engine, the
estimator and the vLLM plugin); this is the batch-level keep-mask in the model's feature order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from ..interface import ReductionOptions
from ..processing.visual_tokens import keep_mask, visual_tokens


def compression_mask(
    pixel_values: torch.Tensor,  # (P, 588)
    grid_sizes: torch.Tensor,  # (items, 3)
    merge_sizes: torch.Tensor,  # (items,)
    modals: Sequence[str] | None = None,
    reduction: ReductionOptions | None = None,
) -> torch.Tensor:  # (tokens of non-text items,) bool
    """The keep-mask over all visual tokens with reduction on, computed in ``pixel_values.dtype``."""
    reduction = replace(reduction or ReductionOptions(), enabled=True)
    items = visual_tokens(pixel_values, grid_sizes, merge_sizes, modals, pixel_values.dtype, reduction)
    return keep_mask(items, pixel_values.device)

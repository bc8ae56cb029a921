"""Inter-frame token reduction: which visual tokens of a video / volume are kept.

Pure functions on the processor's ``pixel_values``: for every merged token of frame f >= 1 of a multi-frame
item, the mean absolute change of its pixels against frame f-1 decides whether it is kept. Upstream's rule
(UPSTREAM.md §6, reproduced bit-exactly by default):

    d[f, j] = mean(|x[f, j] - x[f-1, j]|) * 255          for f >= 1
    d[0, j] = threshold + 1                               (the first frame; *before* the division by 255)
    keep[f, j] = d[f, j] / 255 > threshold                (threshold 0.1, in the dtype of pixel_values)
    a frame keeping fewer than ``min_tokens`` tokens force-keeps its first ``min_tokens`` tokens

so the first frame keeps only its top-left token. ``keep_first_frame=True`` gives the corrected rule (the
first frame is kept whole). Images and single-frame videos keep everything; items whose modal is ``"text"``
(pseudo items) contribute no entries.

Glossary: t frames, n = (gh/m)*(gw/m) merged tokens per frame, D = m*m*588 pixel values per merged token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class TokenReductionSettings:
    """Runtime knobs of the reduction (used only when ``config.use_token_compression`` is true)."""

    threshold: float = 0.1  # in normalised pixel units ([-1, 1] range); 0.1 ~ 12.75 grey levels
    min_tokens: int = 1  # tokens force-kept per frame
    keep_first_frame: bool = False  # False = upstream rule (first frame keeps 1 token); True = keep it whole


def item_modals(grid_sizes: torch.Tensor, modals: Sequence[str] | None) -> list[str]:
    """The modal of each item; when not given, multi-frame items are videos and the rest images."""
    if modals is not None:
        if len(modals) != len(grid_sizes):
            raise ValueError(f"got {len(modals)} modals for {len(grid_sizes)} visual items; pass one per item")
        return list(modals)
    return ["video" if int(t) > 1 else "image" for t in grid_sizes[:, 0].tolist()]


def frame_keep_mask(
    frames: torch.Tensor,  # (t, n, D) pixel rows of one item, grouped per merged token
    settings: TokenReductionSettings,
) -> torch.Tensor:  # (t, n) bool
    """Keep-mask of one multi-frame item."""
    t, n, _ = frames.shape
    change = (frames[1:] - frames[:-1]).abs().mean(dim=-1) * 255  # (t-1, n), in the pixel dtype
    first = torch.full((1, n), settings.threshold + 1, dtype=change.dtype, device=change.device)
    distance = torch.cat([first, change], dim=0)  # (t, n)
    keep = distance / 255 > settings.threshold
    if settings.keep_first_frame:
        keep[0] = True
    starved = keep.sum(dim=1) < settings.min_tokens  # (t,)
    keep[starved, : settings.min_tokens] = True
    return keep


def compression_mask(
    pixel_values: torch.Tensor,  # (P, 588)
    grid_sizes: torch.Tensor,  # (items, 3)
    merge_sizes: torch.Tensor,  # (items,)
    modals: Sequence[str] | None = None,
    settings: TokenReductionSettings | None = None,
) -> torch.Tensor:  # (tokens of non-text items,) bool
    """The keep-mask over all visual tokens, in feature order (item, frame, merged row, merged column)."""
    settings = settings or TokenReductionSettings()
    masks: list[torch.Tensor] = []
    row = 0
    for (t, gh, gw), m, modal in zip(grid_sizes.tolist(), merge_sizes.tolist(), item_modals(grid_sizes, modals)):
        patches = t * gh * gw
        item = pixel_values[row : row + patches]  # (t*gh*gw, 588)
        row += patches
        if modal == "text":
            continue
        n = (gh // m) * (gw // m)
        if modal == "video" and t > 1:
            # Rows are in merge-block order, so m*m consecutive rows are one merged token.
            frames = item.reshape(t, n, m * m * item.shape[-1])  # (t, n, D)
            masks.append(frame_keep_mask(frames, settings).flatten())
        else:
            masks.append(torch.ones(t * n, dtype=torch.bool, device=pixel_values.device))
    if not masks:
        return torch.zeros(0, dtype=torch.bool, device=pixel_values.device)
    return torch.cat(masks)

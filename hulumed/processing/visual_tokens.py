"""Visual tokens of a media item after inter-frame reduction: the one function every backend counts with.

Input is what the processor produces for one item (its rows of ``pixel_values``, its grid size, merge size and
modal); output is the item's keep-mask over its merged tokens, the kept tokens per frame and their total. The
model's forward, the estimator, the HF engine's ``prepare`` and the vLLM plugin all call ``item_visual_tokens``
(or ``visual_tokens`` for a whole batch), so their counts agree by construction. Nothing here imports the model
or vLLM.

Upstream's rule (reproduced bit-exactly by default), for every merged token j of frame f of a
multi-frame *video* item, in the dtype the model runs in:

    d[f, j] = mean(|x[f, j] - x[f-1, j]|) * 255          for f >= 1
    d[0, j] = threshold + 1                               (the first frame; *before* the division by 255)
    keep[f, j] = d[f, j] / 255 > threshold                (threshold 0.1, in normalised units)
    a frame keeping fewer than ``min_tokens`` tokens force-keeps its first ``min_tokens`` tokens

so the first frame keeps only its top-left token. ``keep_first_frame=True`` gives the corrected rule (the first
frame is kept whole). Images and single-frame videos keep everything; items whose modal is ``"text"`` (pseudo
items) contribute no tokens. With reduction off every token is kept.

Glossary: t frames, gh/gw patch grid, m merge size, n = (gh/m)*(gw/m) merged tokens per frame,
D = m*m*588 pixel values per merged token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..interface import ReductionOptions


@dataclass(frozen=True)
class ItemTokens:
    """One media item's visual tokens after reduction."""

    modal: str
    keep: torch.Tensor  # (t*n,) bool, in feature order (frame, merged row, merged column); empty for "text"
    frame_tokens: list[int]  # kept tokens per frame; [] for "text"
    tokens: int  # sum(frame_tokens): the item's `<image>` positions the decoder sees

    @property
    def tokens_before_reduction(self) -> int:
        return int(self.keep.numel())


def reduction_enabled(reduction: ReductionOptions | None, checkpoint_default: bool) -> bool:
    """``reduction.enabled``, or the checkpoint's ``use_token_compression`` when it is None."""
    if reduction is None or reduction.enabled is None:
        return bool(checkpoint_default)
    return bool(reduction.enabled)


def item_modals(grid_sizes: torch.Tensor, modals: Sequence[str] | None) -> list[str]:
    """The modal of each item; when not given, multi-frame items are videos and the rest images."""
    if modals is not None:
        if len(modals) != len(grid_sizes):
            raise ValueError(f"got {len(modals)} modals for {len(grid_sizes)} visual items; pass one per item")
        return list(modals)
    return ["video" if int(t) > 1 else "image" for t in grid_sizes[:, 0].tolist()]


def frame_keep_mask(
    frames: torch.Tensor,  # (t, n, D) pixel rows of one item, grouped per merged token
    reduction: ReductionOptions,
) -> torch.Tensor:  # (t, n) bool
    """Keep-mask of one multi-frame item, computed in ``frames.dtype``."""
    _, n, _ = frames.shape
    change = (frames[1:] - frames[:-1]).abs().mean(dim=-1) * 255  # (t-1, n), in the pixel dtype
    first = torch.full((1, n), reduction.threshold + 1, dtype=change.dtype, device=change.device)
    distance = torch.cat([first, change], dim=0)  # (t, n)
    keep = distance / 255 > reduction.threshold
    if reduction.keep_first_frame:
        keep[0] = True
    starved = keep.sum(dim=1) < reduction.min_tokens  # (t,)
    keep[starved, : reduction.min_tokens] = True
    return keep


def item_visual_tokens(
    pixel_values: torch.Tensor,  # (t*gh*gw, 588) this item's rows, as the processor produces them
    grid_size: Sequence[int] | torch.Tensor,  # (t, gh, gw)
    merge_size: int,
    modal: str,
    dtype: torch.dtype,
    reduction: ReductionOptions | None = None,
    *,
    checkpoint_default: bool = True,
) -> ItemTokens:
    """Keep-mask, per-frame kept counts and token count of one item; the mask is computed in ``dtype``.

    ``reduction.enabled=None`` follows ``checkpoint_default`` (the checkpoint's ``use_token_compression``).
    """
    t, gh, gw = (int(v) for v in (grid_size.tolist() if isinstance(grid_size, torch.Tensor) else grid_size))
    m = int(merge_size)
    if pixel_values.shape[0] != t * gh * gw:
        raise ValueError(
            f"an item with grid ({t}, {gh}, {gw}) has {t * gh * gw} pixel rows, got {pixel_values.shape[0]}"
        )
    device = pixel_values.device
    if modal == "text":
        return ItemTokens(modal, torch.zeros(0, dtype=torch.bool, device=device), [], 0)
    n = (gh // m) * (gw // m)
    reduction = reduction or ReductionOptions()
    if modal == "video" and t > 1 and reduction_enabled(reduction, checkpoint_default):
        # Rows are in merge-block order, so m*m consecutive rows are one merged token.
        frames = pixel_values.to(dtype).reshape(t, n, m * m * pixel_values.shape[-1])  # (t, n, D)
        mask = frame_keep_mask(frames, reduction)  # (t, n)
    else:
        mask = torch.ones(t, n, dtype=torch.bool, device=device)
    frame_tokens = mask.sum(dim=1).tolist()
    return ItemTokens(modal, mask.flatten(), frame_tokens, int(sum(frame_tokens)))


def visual_tokens(
    pixel_values: torch.Tensor,  # (P, 588) all items, concatenated as the processor does
    grid_sizes: torch.Tensor,  # (items, 3)
    merge_sizes: torch.Tensor,  # (items,)
    modals: Sequence[str] | None,
    dtype: torch.dtype,
    reduction: ReductionOptions | None = None,
    *,
    checkpoint_default: bool = True,
) -> list[ItemTokens]:
    """``item_visual_tokens`` of every item of a processor batch, in order."""
    items: list[ItemTokens] = []
    row = 0
    for grid, m, modal in zip(grid_sizes.tolist(), merge_sizes.tolist(), item_modals(grid_sizes, modals)):
        patches = grid[0] * grid[1] * grid[2]
        items.append(
            item_visual_tokens(
                pixel_values[row : row + patches], grid, m, modal, dtype, reduction,
                checkpoint_default=checkpoint_default,
            )
        )
        row += patches
    if row != pixel_values.shape[0]:
        raise ValueError(f"grid_sizes describe {row} pixel rows but pixel_values has {pixel_values.shape[0]}")
    return items


def keep_mask(items: Sequence[ItemTokens], device: torch.device | None = None) -> torch.Tensor:  # (tokens,) bool
    """The keep-mask over all non-text items' tokens, in feature order (what the model splices with)."""
    masks = [item.keep for item in items if item.modal != "text"]
    if not masks:
        return torch.zeros(0, dtype=torch.bool, device=device)
    return torch.cat(masks)


@dataclass(frozen=True)
class ProcessingTimeReduction:
    """Token reduction decided while processing, the form the engine and training feed the model: the keep-mask
    of a row's media and the row with only its kept ``<image>`` tokens. The model then indexes its features
    with the mask (``prepare_multimodal_inputs(visual_keep=)``) and never drops positions; the processor's full
    ids (upstream's contract) stay for the model-side path, which equals this one (tested)."""

    reduction: ReductionOptions | None
    checkpoint_default: bool  # the checkpoint's use_token_compression
    dtype: torch.dtype  # the vision encoder's: the mask is computed in it, as the model's forward would
    image_token_id: int

    def keep(self, inputs: dict) -> torch.Tensor:  # (visual tokens before reduction,) bool, on the inputs' device
        """The keep-mask of one row's processor outputs (``pixel_values``, ``grid_sizes``, ``merge_sizes``,
        ``modals``)."""
        items = visual_tokens(inputs["pixel_values"], inputs["grid_sizes"], inputs["merge_sizes"],
                              inputs.get("modals"), self.dtype, self.reduction,
                              checkpoint_default=self.checkpoint_default)
        return keep_mask(items, inputs["pixel_values"].device)

    def stay(self, input_ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:  # (N,) bool
        """Which positions of one row's ids (N,) remain: every text token and the kept visual tokens."""
        return kept_positions(input_ids, self.image_token_id, keep)


def kept_positions(input_ids: torch.Tensor, image_token_id: int, keep: torch.Tensor) -> torch.Tensor:  # (N,) bool
    """Positions of one row's ids (N,) that remain after reduction: text tokens and kept visual tokens."""
    positions = (input_ids == image_token_id).nonzero().squeeze(1)  # (visual tokens,)
    if positions.shape[0] != keep.shape[0]:
        raise ValueError(f"the row has {positions.shape[0]} image tokens but its media give {keep.shape[0]} "
                         "visual tokens; build ids and pixel values with the same processor call")
    stay = torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    stay[positions[~keep.to(positions.device)]] = False
    return stay

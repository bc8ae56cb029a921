"""Batches for training: right-padded ids / mask / labels and the media tensors of all rows concatenated.

In:  items of ``dataset.ConversationDataset``.
Out: ``input_ids``, ``attention_mask``, ``position_ids``, ``labels`` (B, N) (``-100`` on padding), and when any
     row has media ``pixel_values`` (P, 588), ``grid_sizes`` (items, 3), ``merge_sizes`` (items,), ``modals``
     in row order, and ``visual_keep`` (visual tokens,) when the rows were reduced at processing time
     (``dataset.ConversationDataset``) — the arguments of ``HulumedQwen*ForCausalLM.forward``, which splices the
     kept features into the `<image>` positions row-major.

Training batches are right-padded; N is rounded up to ``pad_to_multiple_of`` when set (8 suits tensor cores).
``position_ids`` (B, N) are 0, 1, ... per row, as each row has alone. (Rows given with every visual token, the
processor's form, still work: the model then drops reduced-away positions and renumbers positions itself.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hulumed.processing.processor import concat_visual
from hulumed.train.labels import IGNORE_INDEX


@dataclass
class HulumedCollator:
    """Right-pads token rows and concatenates media; stateless, safe in data-loader workers."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        out = right_padded(items, {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX}, self.pad_to_multiple_of)
        out["position_ids"] = (out["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)  # (B, N) 0.. per row
        out.update(concat_visual(items, torch.cat))  # pixel_values (P, 588), grid_sizes (items, 3), ...
        keeps = [item["visual_keep"] for item in items if "visual_keep" in item]
        if keeps:
            out["visual_keep"] = torch.cat(keeps)  # (visual tokens of all rows,) in row order, as the features
        return out


def right_padded(items: list[dict[str, Any]], fills: dict[str, int], pad_to_multiple_of: int | None = None
                 ) -> dict[str, torch.Tensor]:
    """The (N,) rows of each key in ``fills`` right-padded to one (B, N) tensor with that key's fill value, plus
    ``attention_mask`` (B, N); N is the longest row, rounded up to ``pad_to_multiple_of`` when set."""
    length = max(int(item["input_ids"].shape[0]) for item in items)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    out = {key: torch.full((len(items), length), fill, dtype=torch.long) for key, fill in fills.items()}  # (B, N)
    out["attention_mask"] = torch.zeros((len(items), length), dtype=torch.long)  # (B, N)
    for row, item in enumerate(items):
        n = int(item["input_ids"].shape[0])
        out["attention_mask"][row, :n] = 1
        for key in fills:
            out[key][row, :n] = item[key]
    return out

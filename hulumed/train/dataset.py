"""A lazy torch ``Dataset`` of training conversations: media are read and encoded when an item is fetched.

In:  ``data.Example`` list (cheap to build: no media read) and a ``labels.LabelEncoder``.
Out: per item a dict of tensors — ``input_ids`` (N,), ``labels`` (N,), and for items with media
     ``pixel_values`` (P, 588), ``grid_sizes`` (items, 3), ``merge_sizes`` (items,), ``modals`` (list of str) —
     which ``collator.HulumedCollator`` batches. With a ``ProcessingTimeReduction`` (the trainer always gives
     the model's) inter-frame token reduction is decided here, as the engine decides it: the row keeps only its
     kept ``<image>`` tokens (ids and labels alike) plus ``visual_keep`` (visual tokens,), which the model
     indexes its features with; the model then drops no positions (its path for the processor's full ids stays
     upstream's contract and is tested equal).

Encoding runs in the data-loader workers (``dataloader_num_workers``), so a large dataset costs no start-up
time. ``estimated_lengths`` gives the length-grouped sampler a token estimate per example without reading
pixels (image headers only).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from hulumed.errors import HulumedError
from hulumed.processing.visual_tokens import ProcessingTimeReduction
from hulumed.train.data import DataError, Example
from hulumed.train.labels import LabelEncoder

# Rough token counts for the length-grouped sampler (exact counts need the media decoded).
_TEXT_CHARS_PER_TOKEN = 4
_TOKENS_PER_VIDEO = 1024
_PATCH = 14


class ConversationDataset(Dataset):
    """Examples encoded on access; an encoding failure names the record (``file:line``)."""

    def __init__(self, examples: list[Example], encoder: LabelEncoder,
                 reduction: ProcessingTimeReduction | None = None) -> None:
        self.examples = examples
        self.encoder = encoder
        self.reduction = reduction  # first generation: rows keep only their kept visual tokens (+ visual_keep)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = self.examples[index]
        try:
            encoded = self.encoder.encode(example.conversation)
        except (HulumedError, ValueError, OSError) as error:
            raise DataError(f"{example.where}: {error}") from error
        if hasattr(encoded, "to_item"):  # second generation: the stock forward's arguments (qwen3_vl_labels.py)
            return encoded.to_item()
        item: dict[str, Any] = {
            "input_ids": torch.tensor(encoded.input_ids, dtype=torch.long),  # (N,)
            "labels": torch.tensor(encoded.labels, dtype=torch.long),  # (N,)
        }
        if encoded.pixel_values is not None:
            item["pixel_values"] = torch.from_numpy(encoded.pixel_values)  # (P, 588)
            item["grid_sizes"] = torch.from_numpy(encoded.grid_sizes).long()  # (items, 3)
            item["merge_sizes"] = torch.from_numpy(encoded.merge_sizes).long()  # (items,)
            item["modals"] = list(encoded.modals)
            if self.reduction is not None:  # token reduction decided here, as the engine does: no positions dropped
                keep = self.reduction.keep(item)  # (visual tokens,) in the model
                stay = self.reduction.stay(item["input_ids"], keep)  # (N,)
                item.update(input_ids=item["input_ids"][stay], labels=item["labels"][stay], visual_keep=keep)
        return item

    def estimated_lengths(self) -> list[int]:
        """Approximate token count per example: text length, image sizes from headers, a constant per video."""
        max_tokens = int(getattr(self.encoder.processor.image_processor, "max_tokens", 16384) or 16384)
        return [_estimate(example, max_tokens) for example in self.examples]


def _estimate(example: Example, max_tokens: int) -> int:
    chars = 0
    for message in example.conversation:
        content = message["content"]
        parts = [content] if isinstance(content, str) else [p.get("text", "") for p in content]
        chars += sum(len(p) for p in parts if isinstance(p, str))
    tokens = chars // _TEXT_CHARS_PER_TOKEN
    for kind, path in example.media:
        if kind != "image":
            tokens += _TOKENS_PER_VIDEO
            continue
        try:
            from PIL import Image

            from hulumed.processing.safe_files import open_regular

            with open_regular(path) as handle, Image.open(handle) as image:  # the header only; never a FIFO
                width, height = image.size
            tokens += min(max_tokens, (width // _PATCH) * (height // _PATCH))
        except (OSError, HulumedError):
            tokens += _TOKENS_PER_VIDEO
    return max(tokens, 1)

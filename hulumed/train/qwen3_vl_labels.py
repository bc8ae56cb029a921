"""Assistant-only labels for the second generation (stock ``Qwen3VLProcessor`` checkpoints).

In:  a conversation in our schema and the checkpoint's stock processor.
Out: ``Qwen3VLExample``: ``input_ids`` exactly as inference produces them for the same conversation (our media
     front end, ``processing/qwen3_vl_inputs.py``), ``labels`` (``-100`` except the assistant answers), the
     visual tensors and ``mm_token_type_ids`` the stock model's forward takes.

The rule is the first generation's (``labels.py``), over the stock template: render the conversation and, per
assistant message i, messages ``[:i]`` with the generation prompt and ``[:i+1]``; the answer is the character
span between them (trailing whitespace excluded, so ``answer<|im_end|>`` is learned). The unexpanded prompt is
tokenized with offsets and labelled; then every ``<|image_pad|>`` is expanded to its image's token count (grid
t x h x w / merge^2, in order) and the result must equal the processor's ids (``DataError`` otherwise). Video
parts are not supported here yet (their placeholders carry per-frame timestamps): a clear ``DataError``.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

import torch

from hulumed.conversation import Conversation
from hulumed.errors import DataError
from hulumed.processing.qwen3_vl_inputs import VolumeInput, render_chat_messages, stock_messages
from hulumed.train.collator import right_padded
from hulumed.train.labels import IGNORE_INDEX


@dataclass
class Qwen3VLExample:
    """One training sequence before batching (the stock forward's arguments, unbatched)."""

    input_ids: list[int]
    labels: list[int]
    visual: dict[str, torch.Tensor] = field(default_factory=dict)  # pixel_values (P, C), image_grid_thw (items, 3)
    truncated: bool = False

    @property
    def supervised_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)

    def to_item(self) -> dict[str, Any]:
        return {"input_ids": torch.tensor(self.input_ids, dtype=torch.long),  # (N,)
                "labels": torch.tensor(self.labels, dtype=torch.long),  # (N,)
                **self.visual}


class Qwen3VLLabelEncoder:
    """Encodes conversations for training a second-generation checkpoint."""

    def __init__(self, processor: Any, max_length: int | None = None, volume_input: VolumeInput = "images") -> None:
        self.processor = processor
        self.max_length = max_length
        self.volume_input = volume_input

    def encode(self, conversation: Conversation) -> Qwen3VLExample:
        processor = self.processor
        messages, images, videos, _ = stock_messages(conversation, processor, self.volume_input)
        if videos:
            raise DataError("video parts are not supported for training second-generation models yet; use images "
                            "or 3d parts (volume_input='images')")
        full = render_chat_messages(processor, messages, add_generation_prompt=False)
        spans = []
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = render_chat_messages(processor, messages[:index], add_generation_prompt=True)
            through = render_chat_messages(processor, messages[:index + 1], add_generation_prompt=False)
            if not (through.startswith(before) and full.startswith(through)):
                raise DataError(f"the chat template does not render message {index + 1} as a continuation of the "
                                "messages before it, so the assistant span cannot be located")
            end = len(through.rstrip())
            if end > len(before):
                spans.append((len(before), end))
        if not spans:
            raise DataError("the conversation has no assistant answer to learn")
        inputs = processor(text=[full], images=images or None, return_tensors="pt")
        expected = inputs["input_ids"][0].tolist()
        tokenizer = processor.tokenizer
        encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        image_id = processor.image_token_id
        merge = processor.image_processor.merge_size ** 2
        counts = iter((inputs["image_grid_thw"].prod(dim=1) // merge).tolist() if images else [])
        starts = [start for start, _ in spans]
        ids: list[int] = []
        labels: list[int] = []
        for token, (begin, _) in zip(encoding["input_ids"], encoding["offset_mapping"]):
            if token == image_id:
                try:
                    repeat = int(next(counts))
                except StopIteration:
                    raise DataError("the template renders more images than the conversation holds") from None
                ids.extend([token] * repeat)
                labels.extend([IGNORE_INDEX] * repeat)
                continue
            k = bisect_right(starts, begin) - 1
            ids.append(token)
            labels.append(token if k >= 0 and begin < spans[k][1] else IGNORE_INDEX)
        if ids != expected:
            raise DataError("tokenizing the rendered template does not reproduce the processor's ids")
        visual = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        visual["mm_token_type_ids"] = visual["mm_token_type_ids"][0] if "mm_token_type_ids" in visual else \
            torch.zeros(len(ids), dtype=torch.long)
        return self._truncate(Qwen3VLExample(ids, labels, visual))

    def _truncate(self, example: Qwen3VLExample) -> Qwen3VLExample:
        """Cut text beyond ``max_length`` from the right; never an image token or every label."""
        limit = self.max_length
        if limit is None or len(example.input_ids) <= limit:
            return example
        image_id = self.processor.image_token_id
        last = max((i for i, t in enumerate(example.input_ids) if t == image_id), default=-1)
        if last >= limit:
            raise DataError(f"{len(example.input_ids)} tokens, and the media alone reach past max_length {limit}: "
                            "raise max_length or send fewer slices / smaller images")
        example.input_ids, example.labels = example.input_ids[:limit], example.labels[:limit]
        example.visual["mm_token_type_ids"] = example.visual["mm_token_type_ids"][:limit]
        example.truncated = True
        if example.supervised_tokens == 0:
            raise DataError(f"no assistant token is left within max_length {limit}: raise max_length")
        return example


@dataclass
class Qwen3VLCollator:
    """Right-pads ids / labels / mask / ``mm_token_type_ids`` and concatenates the visual tensors in row order."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        fills = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX, "mm_token_type_ids": 0}
        out: dict[str, Any] = right_padded(items, fills, self.pad_to_multiple_of)
        for key in ("pixel_values", "image_grid_thw"):
            present = [item[key] for item in items if key in item]
            if present:
                out[key] = torch.cat(present)  # (P, C) / (items, 3)
        return out

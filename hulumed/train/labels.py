"""Assistant-only labels: one conversation -> ``input_ids`` and ``labels`` that supervise only assistant turns.

In:  a conversation in the processor's format (``data.Example.conversation``) and a ``HulumedProcessor``.
Out: ``EncodedExample`` — ``input_ids`` exactly as the processor produces them at inference for the same
     conversation, ``labels`` (``-100`` everywhere except the assistant answers), and the media tensors.

How the labels are found, using only the processor's public methods and the checkpoint's chat template:
1. ``load_conversation_media`` once, then ``processor(conversation=loaded, images=items)`` for the ids and
   pixel values (the inference path; the media are not read twice).
2. Render the template for the whole conversation and, per assistant message i, for messages ``[:i]`` with
   ``add_generation_prompt=True`` (the text before the answer) and ``[:i+1]`` (the text through it). The
   answer is the character span between the two, trailing whitespace excluded: with the Hulu-Med template
   that is ``answer<|im_end|>`` — the end marker is learned, so generation stops there; the newline after it
   and the ``<|im_start|>assistant\\n`` header are not. A template whose renderings are not prefixes of
   each other raises ``DataError`` instead of guessing.
3. Map the spans through the ``<image>`` expansion, tokenize the expanded prompt with offsets, check the ids
   equal the processor's, and label every token that starts inside a span (never an ``<image>`` token).

Token reduction happens later, inside the model's forward, which removes reduced ``<image>`` positions from
``labels`` together with the ids; as no ``<image>`` position is ever labelled, the supervised tokens are the
same with reduction on or off.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import numpy as np

from hulumed.conversation import Conversation
from hulumed.errors import DataError

IGNORE_INDEX = -100


@dataclass
class EncodedExample:
    """One training sequence before batching."""

    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX except on assistant answers
    pixel_values: np.ndarray | None = None  # (P, 588) float32
    grid_sizes: np.ndarray | None = None  # (items, 3) int64
    merge_sizes: np.ndarray | None = None  # (items,) int64
    modals: tuple[str, ...] = ()
    truncated: bool = False

    @property
    def supervised_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


class LabelEncoder:
    """Encodes conversations for training with one processor and fixed template options."""

    def __init__(self, processor: Any, add_system_prompt: bool = True, max_length: int | None = None) -> None:
        self.processor = processor
        self.add_system_prompt = add_system_prompt
        self.max_length = max_length

    def render(self, loaded: Conversation, add_generation_prompt: bool = False) -> str:
        return self.processor.apply_chat_template(
            loaded, add_system_prompt=self.add_system_prompt, add_generation_prompt=add_generation_prompt
        )

    def assistant_spans(self, loaded: Conversation) -> tuple[str, list[tuple[int, int]]]:
        """The rendered prompt and the character spans of the assistant answers in it (before expansion)."""
        full = self.render(loaded)
        spans = []
        for index, message in enumerate(loaded):
            if message["role"] != "assistant":
                continue
            before = self.render(loaded[:index], add_generation_prompt=True)
            through = self.render(loaded[: index + 1])
            if not (through.startswith(before) and full.startswith(through)):
                raise DataError(
                    f"the chat template does not render message {index + 1} as a continuation of the messages "
                    "before it, so the assistant span cannot be located; use a prefix-stable template"
                )
            end = len(through.rstrip())
            if end > len(before):
                spans.append((len(before), end))
        return full, spans

    def encode(self, conversation: Conversation) -> EncodedExample:
        """Ids and labels of one conversation (media read here); raises ``DataError`` / ``MediaError``."""
        processor = self.processor
        loaded = processor.load_conversation_media(conversation)
        items = processor.gather_visual_items(loaded)
        inputs = processor(
            conversation=loaded, images=items or None, add_system_prompt=self.add_system_prompt, return_tensors="np"
        )
        input_ids = [int(i) for i in inputs["input_ids"][0]]
        prompt, spans = self.assistant_spans(loaded)

        grid_sizes = inputs.get("grid_sizes", np.zeros((0, 3), np.int64))
        merge_sizes = inputs.get("merge_sizes", np.zeros((0,), np.int64))
        expanded = processor.expand_image_tokens(prompt, grid_sizes, merge_sizes)
        encoding = processor.tokenizer(expanded, return_offsets_mapping=True)
        if list(encoding["input_ids"]) != input_ids:
            raise DataError("tokenizing the rendered template does not reproduce the processor's ids")
        shift = self._expansion_shift(prompt, grid_sizes, merge_sizes)
        spans = [(shift(start), shift(end)) for start, end in spans]
        starts = [start for start, _ in spans]
        labels = [IGNORE_INDEX] * len(input_ids)
        for position, ((begin, _), token) in enumerate(zip(encoding["offset_mapping"], input_ids)):
            k = bisect_right(starts, begin) - 1
            if k >= 0 and begin < spans[k][1] and token != processor.image_token_id:
                labels[position] = token

        encoded = EncodedExample(input_ids, labels, modals=tuple(inputs.get("modals", ())))
        if "pixel_values" in inputs:
            encoded.pixel_values = np.asarray(inputs["pixel_values"], dtype=np.float32)
            encoded.grid_sizes, encoded.merge_sizes = np.asarray(grid_sizes), np.asarray(merge_sizes)
        return self._truncate(encoded)

    def _expansion_shift(self, prompt: str, grid_sizes: np.ndarray, merge_sizes: np.ndarray) -> Any:
        """Character position in the rendered prompt -> position after each `<image>` became `count` copies."""
        token = self.processor.image_token
        counts = []
        for (t, gh, gw), m in zip(np.asarray(grid_sizes).tolist(), np.asarray(merge_sizes).tolist()):
            counts.extend([(gh // m) * (gw // m)] * t)  # one placeholder per frame
        extra = [0, *accumulate((count - 1) * len(token) for count in counts)]
        placeholders = []
        index = prompt.find(token)
        while index >= 0:
            placeholders.append(index)
            index = prompt.find(token, index + len(token))

        def shift(position: int) -> int:
            return position + extra[min(bisect_right(placeholders, position - 1), len(extra) - 1)]

        return shift

    def _truncate(self, encoded: EncodedExample) -> EncodedExample:
        """Cut text beyond ``max_length`` from the right; never cut an `<image>` token or every label."""
        limit = self.max_length
        if limit is None or len(encoded.input_ids) <= limit:
            return encoded
        image_id = self.processor.image_token_id
        last_image = max((i for i, t in enumerate(encoded.input_ids) if t == image_id), default=-1)
        if last_image >= limit:
            raise DataError(
                f"{len(encoded.input_ids)} tokens, and the media alone reach past max_length {limit}: raise "
                "max_length or lower the media budget (max_frames, nii_num_slices, image size)"
            )
        encoded.input_ids, encoded.labels = encoded.input_ids[:limit], encoded.labels[:limit]
        encoded.truncated = True
        if encoded.supervised_tokens == 0:
            raise DataError(f"no assistant token is left within max_length {limit}: raise max_length")
        return encoded

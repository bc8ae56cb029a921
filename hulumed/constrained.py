"""Structured output on the transformers backend: a logits processor that masks each constrained row's logits.

``GrammarMask`` holds one llguidance ``LLMatcher`` per constrained row of a batch (``None`` for free rows, which it
never touches, so a free row in a mixed batch gets exactly the logits it gets alone). At every step it feeds each
matcher the row's newest token, asks for the next-token bitmask and sets disallowed logits to ``-inf``. A row in
thinking mode is free until its text contains ``</think>``; the matcher starts with the next token.

Order matters when sampling: the mask must come before top-k / top-p, or every kept token may be disallowed.
transformers puts a caller's processors after its own warpers, so ``sampling_processors`` builds the warpers
itself (same classes, same order as transformers: temperature, top-k, top-p) to run after the mask, and
``HFEngine`` turns transformers' own warpers off for that batch.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.generation import LogitsProcessor

from .structured import StructuredOutput, parser_limits

THINK_END = "</think>"


class LLTokenizerCache:
    """One llguidance tokenizer per (engine tokenizer, vocabulary width): building it takes ~1 s for 150k tokens."""

    def __init__(self, tokenizer: Any, vocab_size: int, end_ids: list[int]) -> None:
        self.tokenizer, self.vocab_size, self.end_ids = tokenizer, vocab_size, end_ids
        self._built: Any = None

    def get(self) -> Any:
        if self._built is None:
            import llguidance.hf

            # the end tokens the engine stops at are the grammar's EOS: allowed only when the answer is complete
            self._built = llguidance.hf.from_tokenizer(
                self.tokenizer, n_vocab=max(self.vocab_size, len(self.tokenizer)), eos_token=self.end_ids,
            )
        return self._built


class GrammarMask(LogitsProcessor):
    """Masks the logits of constrained rows; ``specs[i]`` is row i's constraint or None (free row)."""

    def __init__(
        self, specs: list[StructuredOutput | None], think: list[bool], cache: LLTokenizerCache, end_ids: set[int],
        prompt_length: int = 0,
    ) -> None:
        import llguidance

        self.tokenizer = cache.tokenizer
        self.end_ids = end_ids
        ll_tokenizer = cache.get()
        self.matchers = [
            None if spec is None else llguidance.LLMatcher(ll_tokenizer, spec.grammar(), log_level=0,
                                                           limits=parser_limits())
            for spec in specs
        ]
        self.waiting_for_think_end = [spec is not None and flag for spec, flag in zip(specs, think)]
        self.tail = ["" for _ in specs]  # the end of each thinking row's text, to find </think>
        # tokens of each row already given to its matcher (or scanned); ``prompt_length``: the prompt columns of
        # ``input_ids`` (0 for our models, which generate from input embeddings; the padded prompt for stock ones)
        self.seen = [prompt_length for _ in specs]
        self.finished = [False for _ in specs]
        self.errors: list[str | None] = [None for _ in specs]  # why a row's grammar gave up (ends that row)
        self.ended = [False for _ in specs]
        self.vocab_size = ll_tokenizer.vocab_size

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # input_ids (B, prompt_length + generated so far)
        import llguidance.torch

        rows = [i for i, matcher in enumerate(self.matchers) if matcher is not None and not self.finished[i]]
        if not rows:
            return scores
        bitmask = llguidance.torch.allocate_token_bitmask(len(rows), self.vocab_size)  # (R, ceil(V / 32))
        masked = []
        for slot, i in enumerate(rows):
            for token in input_ids[i, self.seen[i]:].tolist():
                self._consume(i, int(token))
            self.seen[i] = int(input_ids.shape[1])
            if self.finished[i] or self.waiting_for_think_end[i]:
                continue
            matcher = self.matchers[i]
            llguidance.torch.fill_next_token_bitmask(matcher, bitmask, slot)
            if matcher.is_error():
                self._give_up(i, matcher.get_error())
            else:
                masked.append((slot, i))
        for i, error in enumerate(self.errors):
            if error is not None and not self.ended[i]:  # this row ends now; the other rows go on
                self.ended[i] = True
                scores[i] = float("-inf")
                scores[i, sorted(self.end_ids)] = 0.0
        if masked:
            slots = torch.tensor([slot for slot, _ in masked])
            rows_index = torch.tensor([i for _, i in masked], device=scores.device)
            allowed = unpack_bitmask(bitmask[slots], scores.shape[1]).to(scores.device)  # (M, V) bool
            scores[rows_index] = scores[rows_index].masked_fill(~allowed, float("-inf"))
        return scores

    def _consume(self, i: int, token: int) -> None:
        if self.finished[i]:
            return
        if self.waiting_for_think_end[i]:
            if token in self.end_ids:
                self.finished[i] = True
                return
            self.tail[i] = (self.tail[i] + self.tokenizer.decode([token]))[-64:]
            if THINK_END in self.tail[i]:
                self.waiting_for_think_end[i] = False
            return
        matcher = self.matchers[i]
        if token in self.end_ids:
            self.finished[i] = True
            return
        if not matcher.consume_token(token):
            self._give_up(i, matcher.get_error())

    def _give_up(self, i: int, error: str) -> None:
        """The grammar ran into llguidance's limits (or an internal error): the row ends with an error."""
        self.finished[i] = True
        self.errors[i] = f"structured output stopped: {error.splitlines()[0][:300] if error else 'unknown error'}"


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(R, W) int32 bitmask, bit j of word w = token 32w + j -> (R, vocab_size) bool; tokens past the mask: False."""
    shifts = torch.arange(32, dtype=torch.int32)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1  # (R, W, 32)
    allowed = bits.reshape(bitmask.shape[0], -1).bool()  # (R, 32 W)
    if allowed.shape[1] >= vocab_size:
        return allowed[:, :vocab_size]
    pad = torch.zeros(bitmask.shape[0], vocab_size - allowed.shape[1], dtype=torch.bool)
    return torch.cat([allowed, pad], dim=1)


def sampling_processors(generation_config: Any, kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """For a sampled batch with a mask: the warpers transformers would build (temperature, top-k, top-p, in its
    order, from ``kwargs`` over the checkpoint's generation config), and the kwargs that turn its own off."""
    from transformers.generation import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    def value(name: str) -> Any:
        given = kwargs.get(name, "unset")
        return getattr(generation_config, name, None) if given == "unset" else given

    if not value("do_sample"):
        return [], kwargs
    warpers: list[Any] = []
    temperature, top_k, top_p = value("temperature"), value("top_k"), value("top_p")
    if temperature is not None and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(float(temperature)))
    if top_k is not None and top_k != 0:
        warpers.append(TopKLogitsWarper(top_k=int(top_k), min_tokens_to_keep=1))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=float(top_p), min_tokens_to_keep=1))
    return warpers, {**kwargs, "temperature": 1.0, "top_k": 0, "top_p": 1.0}

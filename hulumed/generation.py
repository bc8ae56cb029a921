"""Generation knobs and results: ``GenerationParams`` in, ``GenerationResult`` out.

Every field of ``GenerationParams`` left as ``None`` takes the checkpoint's ``generation_config.json`` value
(Hulu-Med's sample with temperature 0.7 / top_p 0.8 / top_k 20 / repetition_penalty 1.05 by default);
``do_sample=False`` is plain greedy decoding. ``think=True`` is upstream's reasoning mode: the instruction below
is appended to the last user turn and the result separates ``reasoning`` (inside ``<think>``) from ``answer``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .options import option
from .structured import StructuredOutput


@dataclass
class GenerationParams:
    """What to generate; ``None`` means "as in the checkpoint's generation_config.json"."""

    max_new_tokens: int = option(512, "most tokens of an answer")
    do_sample: bool | None = option(None, "sample (default: generation_config.json)")
    temperature: float | None = option(None, "sampling temperature (0: greedy; default: generation_config.json)")
    top_p: float | None = option(None, "nucleus sampling (default: generation_config.json)")
    top_k: int | None = option(None, "top-k sampling (default: generation_config.json)")
    repetition_penalty: float | None = option(None, "default: generation_config.json")
    stop: list[str] = option([], "stop string (repeatable): the answer ends before the first of them")
    seed: int | None = option(None, "seeds torch before sampling, for reproducible samples")
    think: bool = option(False, "upstream reasoning mode (its instruction appended; reasoning returned separately)")
    ignore_eos: bool = option(False, "always generate max_new_tokens (benchmarks); the end token does not stop")
    # the answer must match a JSON schema / be a JSON object / match a regex / be one of a list (structured.py)
    structured: StructuredOutput | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.temperature == 0:  # OpenAI convention: temperature 0 means greedy
            self.do_sample, self.temperature = False, None
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if isinstance(self.structured, dict):
            self.structured = StructuredOutput(**self.structured)
        if self.structured is not None and not isinstance(self.structured, StructuredOutput):
            raise ValueError(f"structured must be a StructuredOutput, got {type(self.structured).__name__}")
        if self.structured is not None and self.ignore_eos:
            raise ValueError("ignore_eos and structured output exclude each other: a complete answer ends")

    @classmethod
    def greedy(cls, max_new_tokens: int = 512, **kwargs: Any) -> GenerationParams:
        return cls(max_new_tokens=max_new_tokens, do_sample=False, **kwargs)

    def generate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for ``model.generate`` (unset fields omitted)."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        for name in ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        if self.ignore_eos:
            kwargs["min_new_tokens"] = self.max_new_tokens
        if self.do_sample is False:  # greedy: sampling knobs from generation_config.json do not apply
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``structured`` as its own dict)."""
        values = asdict(self)
        values["structured"] = None if self.structured is None else self.structured.to_dict()
        return values


@dataclass
class GenerationResult:
    """One conversation's answer, with token accounting."""

    text: str  # the decoded answer, think blocks removed (upstream's use_think=False)
    reasoning: str | None  # content of <think> blocks when the model produced them, else None
    token_ids: list[int]  # generated ids, up to and including the end token
    prompt_tokens: int  # prompt length in tokens the decoder sees (visual tokens counted after reduction)
    completion_tokens: int
    visual_tokens: int  # visual tokens in the prompt, after inter-frame reduction (what the decoder sees)
    finish_reason: str  # "stop" (end token or stop string), "length" or "cancelled"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """The text before the earliest stop string, and whether one was found."""
    cut = min((text.find(s) for s in stop if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def decode_result(
    tokenizer: Any, ids: list[int], eos_ids: set[int], stop: list[str], *, prompt_tokens: int, visual_tokens: int,
    ignore_eos: bool = False, cancelled: bool = False,
) -> GenerationResult:
    """One row's generated ids -> ``GenerationResult`` (every backend): cut after the first end token (unless
    ``ignore_eos``), decode, cut at the first stop string, split off ``<think>`` blocks as upstream's decode does."""
    from .think import reasoning_of, strip_think

    end = None if ignore_eos else next((i for i, token in enumerate(ids) if token in eos_ids), None)
    finish = "stop" if end is not None else "length"
    ids = ids[: end + 1] if end is not None else ids
    raw, stopped = cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), stop)
    if stopped:
        finish = "stop"
    return GenerationResult(
        text=strip_think(raw), reasoning=reasoning_of(raw), token_ids=ids, prompt_tokens=int(prompt_tokens),
        completion_tokens=len(ids), visual_tokens=int(visual_tokens),
        finish_reason="cancelled" if cancelled else finish,
    )

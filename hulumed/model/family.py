"""Which Hulu-Med generation a checkpoint is, from its own ``config.json`` (never from its name).

* First generation (``ZJU-AI4H/Hulu-Med-4B/7B/14B/32B``): ``model_type`` ``hulumed_qwen2`` / ``hulumed_qwen3``,
  our classes (``model/``), our processor (``processing/``).
* Second generation (2026: ``Hulu-Med-30A3``, ``-235A22``, ``Flash-Preview-27B``): a stock transformers
  image-text-to-text class (``qwen3_vl_moe``; ``qwen3_vl``, ``qwen3_5``, ``qwen3_5_moe`` share its processor,
  ``Qwen3VLProcessor``), loaded with ``AutoModelForImageTextToText``; our media front end is
  ``processing/qwen3_vl_inputs.py``.

Anything else is refused with the list of model types this package runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import CheckpointError

FIRST_GENERATION_TYPES = ("hulumed_qwen2", "hulumed_qwen3")
#: Stock transformers model types whose processor is ``Qwen3VLProcessor`` (transformers' processing_auto).
SECOND_GENERATION_TYPES = ("qwen3_vl_moe", "qwen3_vl", "qwen3_5", "qwen3_5_moe")


@dataclass(frozen=True)
class Family:
    """A checkpoint's model family: ``name`` is ``"hulumed"`` (first generation) or ``"qwen3_vl"`` (second)."""

    name: str
    generation: int
    model_type: str
    moe: bool

    @property
    def label(self) -> str:
        kind = "mixture of experts" if self.moe else "dense"
        return f"Hulu-Med generation {self.generation} ({self.model_type}, {kind})"


def family_of(raw: dict[str, Any], where: str = "config.json") -> Family:
    """The family of a raw ``config.json`` dict; ``CheckpointError`` for a model type this package does not run."""
    model_type = raw.get("model_type")
    if model_type in FIRST_GENERATION_TYPES:
        return Family("hulumed", 1, model_type, moe=False)
    if model_type in SECOND_GENERATION_TYPES:
        text = raw.get("text_config") if isinstance(raw.get("text_config"), dict) else raw
        moe = "moe" in model_type or bool(text.get("num_experts"))
        return Family("qwen3_vl", 2, model_type, moe=moe)
    known = ", ".join(FIRST_GENERATION_TYPES + SECOND_GENERATION_TYPES)
    raise CheckpointError(f"{where}: model_type {str(model_type)[:60]!r} is not a Hulu-Med model type this package "
                          f"runs ({known})")

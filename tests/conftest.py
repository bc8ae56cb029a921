"""Shared test helpers: the golden fixtures (tiny checkpoints in the official layout + upstream outputs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
VARIANTS = ("tiny-qwen2", "tiny-qwen3")


def golden_cases() -> list[tuple[str, str]]:
    """Every (variant, case) pair present in the fixtures folder, discovered, never listed by hand."""
    return [(v, p.stem) for v in VARIANTS for p in sorted((GOLDEN / "cases" / v).glob("*.json"))]


def load_case(variant: str, case: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The case JSON and its tensors, following ``tensors_stored_in_other_file``."""
    from safetensors.torch import load_file

    meta = json.loads((GOLDEN / "cases" / variant / f"{case}.json").read_text())
    tensors = load_file(str(GOLDEN / "cases" / variant / f"{case}.safetensors"))
    for name, rel in meta.get("tensors_stored_in_other_file", {}).items():
        tensors[name] = load_file(str(GOLDEN / rel))[name]
    return meta, tensors


@pytest.fixture(scope="session")
def golden_model():
    """Loaded golden checkpoints, one per variant, shared by the session (fp32, sdpa, eval mode)."""
    from transformers import AutoModelForCausalLM

    import hulumed  # noqa: F401  (registers the Auto classes)

    cache: dict[str, torch.nn.Module] = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = AutoModelForCausalLM.from_pretrained(GOLDEN / variant, attn_implementation="sdpa").eval()
        model = cache[variant]
        model.config.use_token_compression = False
        return model

    return get

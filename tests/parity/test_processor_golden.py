"""HulumedProcessor reproduces the upstream processor outputs stored in the golden fixtures.

Every case JSON under tests/fixtures/golden/cases/<variant>/ is discovered and checked the same way (no case is
special-cased): rendered prompt, token ids, attention mask, expanded prompt (raw decode), grid sizes, merge
sizes, modals (exact) and pixel values (atol 1e-6, as the fixtures README allows; they are bit-exact today).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import torch

from hulumed.processing import HulumedProcessor
from tests.conftest import load_case

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden"
VARIANTS = ("tiny-qwen2", "tiny-qwen3")
MEDIA_KEYS = ("image_path", "video_path")


def _cases() -> list[tuple[str, str]]:
    return [(v, p.stem) for v in VARIANTS for p in sorted((GOLDEN / "cases" / v).glob("*.json"))]


@lru_cache(maxsize=None)
def _processor(variant: str) -> HulumedProcessor:
    return HulumedProcessor.from_pretrained(GOLDEN / variant)


def _absolute_media(value: Any) -> Any:
    """Media paths in the case JSON are relative to the fixtures folder."""
    if isinstance(value, dict):
        return {
            k: str(GOLDEN / v) if k in MEDIA_KEYS and isinstance(v, str) else _absolute_media(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_absolute_media(v) for v in value]
    return value


def test_cases_are_discovered():
    assert len(_cases()) >= 2 * 8


@pytest.mark.parametrize("variant,case", _cases(), ids=[f"{v}/{c}" for v, c in _cases()])
def test_processor_matches_upstream(variant: str, case: str):
    meta, expected = load_case(variant, case)
    processor = _processor(variant)
    conversation = _absolute_media(meta["conversation"])
    kwargs = meta["processor_call_kwargs"]

    prompt = processor.render_prompt(
        conversation,
        add_system_prompt=kwargs.get("add_system_prompt", False),
        add_generation_prompt=kwargs.get("add_generation_prompt", False),
    )
    assert prompt == meta["prompt_text"]

    out = processor(conversation=conversation, **kwargs)
    assert sorted(out.keys()) == sorted(meta["processor_output_keys"])
    assert out["input_ids"].dtype == torch.int64
    assert torch.equal(out["input_ids"], expected["input_ids"])
    assert torch.equal(out["attention_mask"], expected["attention_mask"])
    assert processor.decode(out["input_ids"][0], skip_special_tokens=False, use_think=True) == meta[
        "expanded_prompt_text"
    ]
    assert int((out["input_ids"] == processor.image_token_id).sum()) == meta["num_image_tokens_in_input_ids"]

    if "pixel_values" not in expected:
        assert "pixel_values" not in out
        return
    assert out["grid_sizes"].dtype == torch.int64 and out["merge_sizes"].dtype == torch.int64
    assert out["grid_sizes"].tolist() == meta["grid_sizes"]
    assert torch.equal(out["grid_sizes"], expected["grid_sizes"])
    assert out["merge_sizes"].tolist() == meta["merge_sizes"]
    assert torch.equal(out["merge_sizes"], expected["merge_sizes"])
    assert out["modals"] == meta["modals"]
    assert out["pixel_values"].dtype == torch.float32
    assert out["pixel_values"].shape == expected["pixel_values"].shape
    torch.testing.assert_close(out["pixel_values"], expected["pixel_values"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("variant,case", _cases(), ids=[f"{v}/{c}" for v, c in _cases()])
def test_batch_decode_matches_upstream(variant: str, case: str):
    meta, _ = load_case(variant, case)
    decoded = _processor(variant).batch_decode([meta["new_token_ids"]], skip_special_tokens=True, use_think=False)
    assert decoded == [meta["new_text"]]

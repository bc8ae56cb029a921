"""End to end: conversation -> AutoProcessor -> model.generate -> batch_decode reproduces upstream's answer.

Also the batched path: all cases of a variant in one left-padded processor call and one generate call give
every row upstream's tokens for that case (token reduction on and off).
"""

from __future__ import annotations

from typing import Any

import pytest
from transformers import AutoProcessor

from tests.conftest import GOLDEN, VARIANTS, golden_cases, load_case


def _absolute(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: str(GOLDEN / v) if k in ("image_path", "video_path") else _absolute(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_absolute(v) for v in value]
    return value


def _processor(variant: str):
    import hulumed  # noqa: F401

    processor = AutoProcessor.from_pretrained(GOLDEN / variant)
    assert type(processor).__name__ == "HulumedProcessor"
    return processor


@pytest.mark.parametrize("variant,case", golden_cases())
def test_conversation_to_answer(golden_model, variant, case):
    meta, _ = load_case(variant, case)
    processor = _processor(variant)
    model = golden_model(variant)
    model.config.use_token_compression = meta["use_token_compression"]
    inputs = processor(conversation=_absolute(meta["conversation"]), **meta["processor_call_kwargs"])
    ids = model.generate(**inputs, **meta["generate_kwargs"])
    assert ids[0].tolist() == meta["new_token_ids"]
    assert processor.batch_decode(ids, skip_special_tokens=True, use_think=False)[0] == meta["new_text"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("compressed", [False, True])
def test_one_batch_of_all_cases(golden_model, variant, compressed):
    cases = [(c, load_case(variant, c)[0]) for v, c in golden_cases() if v == variant]
    cases = [(c, m) for c, m in cases if m["use_token_compression"] == compressed or not m["modals"]]
    processor = _processor(variant)
    model = golden_model(variant)
    model.config.use_token_compression = compressed
    kwargs = cases[0][1]["processor_call_kwargs"]
    inputs = processor(conversation=[_absolute(m["conversation"]) for _, m in cases], **kwargs)
    assert inputs["input_ids"].shape[0] == len(cases)
    ids = model.generate(**inputs, do_sample=False, max_new_tokens=8, pad_token_id=cases[0][1]["generate_kwargs"]["pad_token_id"])
    for row, (case, meta) in enumerate(cases):
        expected = meta["new_token_ids"] if meta["use_token_compression"] == compressed else None
        if expected is None:  # text case run in the compressed batch: same as uncompressed
            expected = meta["new_token_ids"]
        assert ids[row, : len(expected)].tolist() == expected, case

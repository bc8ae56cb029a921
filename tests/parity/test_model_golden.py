"""Layer-by-layer parity of the model against the upstream outputs stored in the golden fixtures.

For every case of both variants (discovered from the fixtures folder) the stored processor outputs are fed to
our model and compared at the README's tolerances: encoder and projector outputs (atol/rtol 1e-5), the
reduction keep-mask (exact), full logits (atol/rtol 1e-4) and greedy ids with and without repetition penalty
(exact).
"""

from __future__ import annotations

import pytest
import torch

from hulumed.model.token_reduction import compression_mask
from tests.conftest import golden_cases, load_case

CASES = golden_cases()


def _media(meta, tensors):
    if "pixel_values" not in tensors:
        return {}
    return {
        "pixel_values": tensors["pixel_values"],
        "grid_sizes": tensors["grid_sizes"],
        "merge_sizes": tensors["merge_sizes"],
        "modals": meta["modals"],
    }


@pytest.mark.parametrize("variant,case", CASES)
def test_vision_features_and_mask(golden_model, variant, case):
    meta, t = load_case(variant, case)
    if "pixel_values" not in t:
        pytest.skip("text-only case has no visual features")
    model = golden_model(variant)
    with torch.no_grad():
        encoded = model.model.vision_encoder(t["pixel_values"], t["grid_sizes"], t["merge_sizes"])
        projected = model.model.mm_projector(encoded)
    torch.testing.assert_close(encoded, t["vision_encoder_output"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(projected, t["mm_projector_output"], atol=1e-5, rtol=1e-5)
    mask = compression_mask(t["pixel_values"], t["grid_sizes"], t["merge_sizes"], meta["modals"])
    assert torch.equal(mask, t["compression_mask"])


@pytest.mark.parametrize("variant,case", CASES)
def test_logits(golden_model, variant, case):
    meta, t = load_case(variant, case)
    model = golden_model(variant)
    model.config.use_token_compression = meta["use_token_compression"]
    with torch.no_grad():
        out = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], **_media(meta, t))
    assert out.logits.shape == t["logits"].shape
    torch.testing.assert_close(out.logits, t["logits"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant,case", CASES)
def test_greedy_generation(golden_model, variant, case):
    meta, t = load_case(variant, case)
    model = golden_model(variant)
    model.config.use_token_compression = meta["use_token_compression"]
    kwargs = dict(meta["generate_kwargs"])
    common = dict(input_ids=t["input_ids"], attention_mask=t["attention_mask"], **_media(meta, t))
    ids = model.generate(**common, **kwargs)
    assert ids.tolist() == t["generated_ids"].tolist()
    assert ids[0].tolist() == meta["new_token_ids"]
    plain = model.generate(**common, **kwargs, repetition_penalty=1.0)
    assert plain.tolist() == t["generated_ids_no_repetition_penalty"].tolist()

"""The processing-stage visual-token function agrees with the model's own reduction (mask, counts, dtype)."""

from __future__ import annotations

import pytest
import torch

from hulumed.interface import ReductionOptions
from hulumed.processing.visual_tokens import item_visual_tokens, keep_mask, visual_tokens
from tests.conftest import golden_cases, load_case

MEDIA_CASES = [(v, c) for v, c in golden_cases() if "text" not in c]


def _spliced_image_tokens(model, t, meta, reduction=None) -> int:
    """`<image>` positions left in the decoder input after the model's own splice (its reduction applied)."""
    with torch.no_grad():
        prepared = model.prepare_multimodal_inputs(
            t["input_ids"], t["attention_mask"], None, None, t["pixel_values"], t["grid_sizes"], t["merge_sizes"],
            meta["modals"], reduction=reduction,
        )
    return int(prepared["attention_mask"].sum()) - (int(t["attention_mask"].sum()) - int(
        (t["input_ids"] == model.config.image_token_index).sum()))


@pytest.mark.parametrize("variant,case", MEDIA_CASES)
@pytest.mark.parametrize("enabled", [False, True])
def test_counts_equal_the_models_splice(golden_model, variant, case, enabled):
    meta, t = load_case(variant, case)
    if "pixel_values" not in t:
        pytest.skip("text-only case")
    model = golden_model(variant)
    reduction = ReductionOptions(enabled=enabled)
    items = visual_tokens(t["pixel_values"], t["grid_sizes"], t["merge_sizes"], meta["modals"], model.dtype, reduction)
    assert sum(i.tokens for i in items) == _spliced_image_tokens(model, t, meta, reduction)
    assert all(sum(i.frame_tokens) == i.tokens for i in items)
    if enabled:  # the golden mask is upstream's, for every multimodal case
        assert torch.equal(keep_mask(items), t["compression_mask"])
    else:
        assert keep_mask(items).all()


@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
def test_enabled_none_follows_the_checkpoint(golden_model, variant):
    meta, t = load_case(variant, "video__use_token_compression_true")
    model = golden_model(variant)
    model.config.use_token_compression = True
    items = visual_tokens(t["pixel_values"], t["grid_sizes"], t["merge_sizes"], meta["modals"], model.dtype,
                          ReductionOptions(), checkpoint_default=True)
    assert sum(i.tokens for i in items) == meta["num_visual_tokens_spliced"]
    assert _spliced_image_tokens(model, t, meta) == meta["num_visual_tokens_spliced"]


def test_per_frame_counts_of_static_video():
    frames = (torch.rand(1, 16, 588) * 2 - 1).repeat(4, 1, 1)  # 4 identical frames, 4x4 patches, merge 2
    item = item_visual_tokens(frames.reshape(64, 588), (4, 4, 4), 2, "video", torch.float32, ReductionOptions(True))
    assert item.frame_tokens == [1, 1, 1, 1] and item.tokens == 4 and item.tokens_before_reduction == 16
    whole = item_visual_tokens(frames.reshape(64, 588), (4, 4, 4), 2, "video", torch.float32,
                               ReductionOptions(True, keep_first_frame=True, min_tokens=2))
    assert whole.frame_tokens == [4, 2, 2, 2]
    assert item_visual_tokens(frames.reshape(64, 588), (4, 4, 4), 2, "text", torch.float32).tokens == 0


def test_mask_is_computed_in_the_models_dtype(golden_model):
    """A change of 0.1002 is over the threshold in fp32 but not in bf16: model and function agree in each dtype."""
    meta, t = load_case("tiny-qwen2", "video__use_token_compression_true")
    (frames, gh, gw), m = t["grid_sizes"][0].tolist(), int(t["merge_sizes"][0])
    pixels = torch.zeros(frames * gh * gw, 588)
    pixels[gh * gw :] = 0.1002  # frame 1 changes by 0.1002 everywhere; later frames repeat it
    reduction = ReductionOptions(enabled=True)
    counts = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = golden_model("tiny-qwen2").to(dtype)
        try:
            item = item_visual_tokens(pixels, (frames, gh, gw), m, "video", dtype, reduction)
            spliced = _spliced_image_tokens(model, {**t, "pixel_values": pixels}, meta, reduction)
        finally:
            model.to(torch.float32)
        assert item.tokens == spliced
        counts[dtype] = item.frame_tokens
    n = (gh // m) * (gw // m)
    assert counts[torch.float32][1] == n and counts[torch.bfloat16][1] == 1  # the dtype decides


def test_bad_rows_are_a_clear_error():
    with pytest.raises(ValueError, match="pixel rows"):
        item_visual_tokens(torch.zeros(10, 588), (1, 4, 4), 2, "image", torch.float32)

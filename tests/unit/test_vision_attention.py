"""Vision attention backends are equivalent to upstream's dense block-diagonal mask, and chunking is exact."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from benchmarks.dense_reference import block_diagonal_mask, dense_encode
from hulumed.model.configuration import HulumedVisionEncoderConfig
from hulumed.model.vision_encoder import HulumedVisionEncoder


def _encoder(attn: str) -> HulumedVisionEncoder:
    torch.manual_seed(0)
    config = HulumedVisionEncoderConfig(
        hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, patch_size=14
    )
    config._attn_implementation = attn
    encoder = HulumedVisionEncoder(config).eval()
    with torch.no_grad():  # random weights large enough that attention patterns matter
        for name, p in encoder.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, 0.2)
    return encoder


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # one image (1 frame, 4x6 patches, merge 1), one video (3 frames, 4x4, merge 2), one image (1, 2x2, merge 1)
    grid = torch.tensor([[1, 4, 6], [3, 4, 4], [1, 2, 2]])
    merge = torch.tensor([1, 2, 1])
    patches = int(grid.prod(dim=1).sum())
    generator = torch.Generator().manual_seed(1)
    return torch.rand(patches, 588, generator=generator) * 2 - 1, grid, merge


def test_block_diagonal_mask_is_per_frame():
    _, grid, _ = _inputs()
    mask = block_diagonal_mask(grid, torch.device("cpu"))
    frame_sizes = [24, 16, 16, 16, 4]
    assert mask.shape == (76, 76)
    assert int(mask.sum()) == sum(s * s for s in frame_sizes)
    assert mask[0, 23] and not mask[0, 24] and mask[24, 39] and not mask[39, 40]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_backend_matches_dense_masked_reference(attn):
    encoder = _encoder(attn)
    pixels, grid, merge = _inputs()
    with torch.no_grad():
        ours = encoder(pixels, grid, merge)
    reference = dense_encode(encoder, pixels, grid, merge, mode="masked")
    assert ours.shape == (24 + 3 * 4 + 4, 48)
    torch.testing.assert_close(ours, reference, atol=2e-5, rtol=2e-5)


def test_sdpa_and_eager_agree():
    pixels, grid, merge = _inputs()
    with torch.no_grad():
        a = _encoder("sdpa")(pixels, grid, merge)
        b = _encoder("eager")(pixels, grid, merge)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


def test_upstream_eager_bug_leaks_across_frames_but_not_for_one_frame():
    encoder = _encoder("sdpa")
    pixels, grid, merge = _inputs()
    with torch.no_grad():
        ours = encoder(pixels, grid, merge)
    leaky = dense_encode(encoder, pixels, grid, merge, mode="plus_one")
    assert (ours - leaky).abs().max() > 1e-2  # the +1 "mask" lets frames attend to each other
    single = (pixels[:24], grid[:1], merge[:1])
    with torch.no_grad():
        torch.testing.assert_close(encoder(*single), dense_encode(encoder, *single, mode="plus_one"), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_frame_chunking_is_exact(chunk):
    encoder = _encoder("sdpa")
    pixels, grid, merge = _inputs()
    with torch.no_grad():
        whole = encoder(pixels, grid, merge)
        chunked = encoder(pixels, grid, merge, frame_chunk_size=chunk)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-6)


@pytest.mark.skipif(
    importlib.util.find_spec("flash_attn") is None or not torch.cuda.is_available(),
    reason="flash_attention_2 needs flash-attn and a CUDA device",
)
def test_flash_attention_matches_sdpa():  # pragma: no cover - runs on GPU machines only
    pixels, grid, merge = _inputs()
    a = _encoder("sdpa").cuda().half()
    b = _encoder("flash_attention_2").cuda().half()
    with torch.no_grad():
        torch.testing.assert_close(
            a(pixels.cuda(), grid.cuda(), merge.cuda()), b(pixels.cuda(), grid.cuda(), merge.cuda()), atol=2e-2, rtol=2e-2
        )


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_frame_batching_equals_transformers_per_frame_loop(attn):
    encoder = _encoder(attn)
    pixels, grid, merge = _inputs()
    with torch.no_grad():
        batched = encoder(pixels, grid, merge)
        encoder.set_frame_batching(False)
        looped = encoder(pixels, grid, merge)
    torch.testing.assert_close(batched, looped, atol=1e-6, rtol=1e-6)


def test_equal_length_runs_group_frames_and_respect_the_cap(monkeypatch):
    from hulumed.model import vision_encoder

    cu = torch.tensor([0, 24, 40, 56, 72, 76], dtype=torch.int32)  # frames of 24, 16, 16, 16, 4 patches
    assert vision_encoder._equal_length_runs(cu, heads=4) == [(0, 1, 24), (24, 3, 16), (72, 1, 4)]
    monkeypatch.setattr(vision_encoder, "_MAX_SCORES_PER_CALL", 4 * 16 * 16 * 2)
    assert vision_encoder._equal_length_runs(cu, heads=4) == [(0, 1, 24), (24, 2, 16), (56, 1, 16), (72, 1, 4)]

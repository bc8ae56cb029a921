"""Inter-frame token reduction: upstream's rule, the corrected first-frame rule, and edge cases."""

from __future__ import annotations

import torch

from hulumed.interface import ReductionOptions
from hulumed.model.token_reduction import compression_mask
from hulumed.processing.visual_tokens import frame_keep_mask


def _video(frames: torch.Tensor, m: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, gh*gw, 588) pixel rows already in merge-block order -> processor-shaped tensors."""
    t, per_frame, _ = frames.shape
    side = int(per_frame**0.5)
    return frames.reshape(t * per_frame, 588), torch.tensor([[t, side, side]]), torch.tensor([m])


def test_static_frames_keep_one_token_per_frame():
    base = torch.rand(1, 16, 588) * 2 - 1
    pixels, grid, merge = _video(base.repeat(5, 1, 1))
    mask = compression_mask(pixels, grid, merge, ["video"]).reshape(5, 4)
    assert mask.sum().item() == 5
    assert mask[:, 0].all()  # token 0 (top-left) of every frame, the first frame included (upstream rule)


def test_frames_changing_everywhere_keep_everything_but_first_frame():
    frames = torch.stack([torch.full((16, 588), -0.9 + 0.2 * i) for i in range(4)])
    pixels, grid, merge = _video(frames)
    mask = compression_mask(pixels, grid, merge, ["video"]).reshape(4, 4)
    assert mask[1:].all()
    assert mask[0].tolist() == [True, False, False, False]  # upstream: first frame keeps only token 0


def test_corrected_rule_keeps_first_frame_whole():
    base = torch.rand(1, 16, 588)
    pixels, grid, merge = _video(base.repeat(3, 1, 1))
    mask = compression_mask(pixels, grid, merge, ["video"], ReductionOptions(keep_first_frame=True))
    assert mask.reshape(3, 4).sum(dim=1).tolist() == [4, 1, 1]


def test_threshold_is_strict_and_per_token():
    frames = torch.zeros(2, 4, 4 * 588)
    frames[1, 2] = 0.1001  # only merged token 2 changes by just over the threshold
    frames[1, 3] = 0.0999
    keep = frame_keep_mask(frames, ReductionOptions())
    assert keep[1].tolist() == [False, False, True, False]


def test_images_and_single_frames_keep_all_and_text_items_add_nothing():
    pixels = torch.rand(16 + 16 + 4, 588)
    grid = torch.tensor([[1, 4, 4], [1, 4, 4], [1, 2, 2]])
    merge = torch.tensor([1, 2, 1])
    mask = compression_mask(pixels, grid, merge, ["image", "video", "text"])
    assert mask.shape == (16 + 4,) and mask.all()


def test_mask_computed_in_input_dtype():
    frames = torch.zeros(2, 4, 4 * 588)
    frames[1] = 0.1005  # above 0.1 in fp32, rounds to 0.10009765625 in bf16: still above
    pixels, grid, merge = _video(frames.reshape(2, 16, 588))
    assert compression_mask(pixels.bfloat16(), grid, merge, ["video"]).reshape(2, 4)[1].all()

"""Target-size rules of HulumedImageProcessor on worked examples computed with upstream's resize rules."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hulumed.processing import HulumedImageProcessor, batched_resize, simple_batched_resize


def _array(height: int, width: int) -> np.ndarray:
    return np.zeros((height, width, 3), dtype=np.uint8)  # (H, W, C)


def _video(frames: int, height: int, width: int) -> np.ndarray:
    return np.broadcast_to(np.zeros((1, height, width, 3), dtype=np.uint8), (frames, height, width, 3))


def _slices(count: int, side: int) -> list[np.ndarray]:
    plane = np.zeros((3, side, side), dtype=np.uint8)  # (C, X, Y) channels first, as load_nifti returns
    return [plane] * count


@pytest.mark.parametrize(
    "items,factor,expected",
    [
        ([_array(512, 512)], 14, [(518, 518)]),
        ([Image.new("RGB", (512, 512))], 14, [(518, 518)]),
        ([_array(480, 640)], 14, [(476, 644)]),
        ([Image.new("RGB", (640, 480))], 14, [(644, 476)]),  # PIL: width/height swapped (upstream)
        ([_array(2048, 2048)], 14, [(1792, 1792)]),
        ([_array(40, 40)], 14, [(56, 56)]),  # min-token rule (ceil path)
        ([_array(512, 512), _array(512, 512)], 14, [(518, 518), (518, 518)]),
        ([_video(60, 480, 640)], 28, [(392, 532)]),
        ([_slices(180, 512)], 28, [(252, 252)]),
        ([_slices(32, 512)], 28, [(504, 504)]),
    ],
    ids=["512", "512-pil", "480x640-np", "480x640-pil", "2048", "40-min", "two-512", "video60", "nii180", "nii32"],
)
def test_appendix_a_worked_examples(items, factor, expected):
    assert simple_batched_resize(items, factor=factor, min_tokens=16, max_tokens=16384) == expected


def test_pil_swap_can_be_switched_off():
    pil = [Image.new("RGB", (640, 480))]  # width 640, height 480
    assert simple_batched_resize(pil, factor=14, swap_pil_size=True) == [(644, 476)]
    assert simple_batched_resize(pil, factor=14, swap_pil_size=False) == [(476, 644)]


def test_numpy_inputs_are_never_swapped():
    assert simple_batched_resize([_array(480, 640)], factor=14, swap_pil_size=True) == [(476, 644)]
    assert simple_batched_resize([_array(480, 640)], factor=14, swap_pil_size=False) == [(476, 644)]
    channels_first = np.zeros((3, 480, 640), dtype=np.uint8)
    assert simple_batched_resize([channels_first], factor=14) == [(476, 644)]


def test_min_token_ceil_path_non_square():
    # 60 high x 40 wide: round gives 56x42 = 2352 < 16*196 -> scale up with ceil -> 70x56
    assert simple_batched_resize([_array(60, 40)], factor=14) == [(70, 56)]
    # the same picture as PIL is read as 40 high x 60 wide (golden image_b: grid 4x5)
    assert simple_batched_resize([Image.new("RGB", (40, 60))], factor=14) == [(56, 70)]


def test_max_token_budget_is_shared_by_all_images():
    # budget 16384*196 // 3 per image; 2044x2044 exceeds it -> beta = sqrt(2048^2 / budget), floor -> 73 patches
    sizes = simple_batched_resize([_array(2048, 2048)] * 3, factor=14)
    assert sizes == [(1022, 1022)] * 3
    assert sum((h // 14) * (w // 14) for h, w in sizes) <= 16384


def test_video_frames_count_against_the_budget():
    # 60 frames share the budget: 16384*784 // 60 per frame
    assert simple_batched_resize([_video(60, 480, 640)], factor=28) == [(392, 532)]
    assert simple_batched_resize([_video(1, 480, 640)], factor=28) == [(476, 644)]


def test_batched_resize_for_mixed_merge_sizes():
    under = batched_resize([_array(512, 512), _video(4, 480, 640)], factors=[14, 28])
    assert under == [(518, 518), (476, 644)]
    over = batched_resize([_array(2048, 2048), _video(60, 480, 640)], factors=[14, 28])
    assert over == [(1204, 1204), (280, 364)]  # beta = sqrt((147^2 + 60*18*23) / 16384), floor, no minimum


def test_processor_outputs_follow_the_rules():
    processor = HulumedImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)
    pil = Image.new("RGB", (95, 67), color=(10, 200, 30))
    out = processor([pil], merge_size=1, return_tensors="pt")
    assert out["grid_sizes"].tolist() == [[1, 7, 5]]  # the golden image_a grid
    assert out["pixel_values"].shape == (35, 588)
    off = processor([pil], merge_size=1, swap_pil_size=False)
    assert off["grid_sizes"].tolist() == [[1, 5, 7]]
    array = np.asarray(pil)
    assert processor([array], merge_size=1)["grid_sizes"].tolist() == [[1, 5, 7]]
    video = processor([_video(3, 48, 64)], merge_size=2)
    assert video["grid_sizes"].tolist() == [[3, 8, 10]] and video["merge_sizes"].tolist() == [2]
    assert video["pixel_values"].shape == (3 * 8 * 10, 588)


def test_pixel_pipeline_and_patch_order():
    processor = HulumedImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(112, 140, 3), dtype=np.uint8)  # multiple of 28, >= 16 tokens: no resize
    out = processor([[frame]], merge_size=2)
    pixels = ((frame.astype(np.float64) * (1 / 255)).astype(np.float32) - np.float32(0.5)) / np.float32(0.5)
    chw = pixels.transpose(2, 0, 1)  # (C, H, W)
    # first row: merge block (0, 0), in-block (0, 0) -> pixels [0:14, 0:14]; second row: in-block (0, 1)
    np.testing.assert_array_equal(out["pixel_values"][0], chw[:, 0:14, 0:14].reshape(-1))
    np.testing.assert_array_equal(out["pixel_values"][1], chw[:, 0:14, 14:28].reshape(-1))
    np.testing.assert_array_equal(out["pixel_values"][2], chw[:, 14:28, 0:14].reshape(-1))
    np.testing.assert_array_equal(out["pixel_values"][4], chw[:, 0:14, 28:42].reshape(-1))
    assert out["grid_sizes"].tolist() == [[1, 8, 10]]
    assert out["pixel_values"].dtype == np.float32


def test_from_pretrained_reads_the_official_config(tmp_path):
    import json

    config = {
        "image_processor_type": "HulumedImageProcessor", "do_convert_rgb": True, "do_resize": True,
        "do_rescale": True, "rescale_factor": 0.00392156862745098, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3, "patch_size": 14,
        "min_tokens": 16, "max_tokens": 16384, "some_future_key": 7,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    processor = HulumedImageProcessor.from_pretrained(tmp_path)
    assert processor.image_mean == [0.5, 0.5, 0.5] and processor.max_tokens == 16384
    assert processor.some_future_key == 7
    assert processor.swap_pil_size is True
    assert HulumedImageProcessor.from_pretrained(tmp_path, swap_pil_size=False).swap_pil_size is False


def test_a_pillow_that_resizes_differently_from_the_goldens_warns_once(monkeypatch):
    import warnings

    from hulumed.processing import image_processing

    monkeypatch.setattr(image_processing, "_PILLOW_WARNED", False)
    assert not image_processing.warn_if_pillow_differs("13.0.0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert image_processing.warn_if_pillow_differs("12.1.1")
        assert not image_processing.warn_if_pillow_differs("12.1.1")  # once per process
    assert len(caught) == 1 and "pillow>=13" in str(caught[0].message)

"""Media loaders: upstream sampling / slicing rules, and every bad input surfaces as a MediaError."""

from __future__ import annotations

import builtins
from functools import lru_cache
from pathlib import Path

import nibabel
import numpy as np
import pytest
from PIL import Image

from hulumed.errors import MediaError
from hulumed.processing import (
    HulumedProcessor,
    load_image,
    load_images,
    load_nifti,
    load_video,
    sample_frame_indices,
)

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden"


@lru_cache(maxsize=None)
def _processor() -> HulumedProcessor:
    return HulumedProcessor.from_pretrained(GOLDEN / "tiny-qwen2")


def _write_png(path: Path, size=(20, 10)) -> Path:
    Image.new("RGB", size, color=(200, 10, 10)).save(path)
    return path


def _write_nifti(path: Path, volume: np.ndarray) -> Path:
    nibabel.save(nibabel.Nifti1Image(volume.astype(np.float32), np.eye(4)), str(path))
    return path


# ----------------------------------------------------------------------------------------- images


def test_load_images_types(tmp_path):
    path = _write_png(tmp_path / "a.png")
    assert isinstance(load_images(str(path))[0], Image.Image)
    pil = Image.open(path)
    array = load_images(pil)[0]
    assert isinstance(array, np.ndarray) and array.shape == (10, 20, 3) and array.dtype == np.uint8
    _write_png(tmp_path / "b.png", size=(5, 5))
    folder = load_images(str(tmp_path))
    assert [im.size for im in folder] == [(20, 10), (5, 5)]  # sorted file order


def test_missing_image_file(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(MediaError):
        part = {"type": "image", "image": {"image_path": str(tmp_path / "nope.png")}}
        _processor()(conversation=[{"role": "user", "content": [part]}])


def test_truncated_png(tmp_path):
    good = _write_png(tmp_path / "good.png", size=(64, 64))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="corrupt"):
        load_image(bad)
    not_an_image = tmp_path / "text.png"
    not_an_image.write_text("hello")
    with pytest.raises(MediaError):
        load_image(not_an_image)


# ----------------------------------------------------------------------------------------- video


def test_folder_sampling_rules():
    # folders assume 3 fps; fps=1 keeps every 3rd file from index 1 (upstream)
    assert sample_frame_indices(10, 3, fps=1) == [1, 4, 7]
    assert sample_frame_indices(6, 3, fps=3) == [0, 1, 2, 3, 4, 5]
    # long sources fall back to uniform sampling
    assert sample_frame_indices(10, 3, fps=1, max_frames=2) == [0, 9]
    assert sample_frame_indices(10, 3, fps=None, max_frames=4) == [0, 3, 6, 9]
    # start/end: f_start = max(int(s*fps)-1, 0), f_end = min(int(e*fps)-1, N-1)
    assert sample_frame_indices(30, 3, start_time=2, end_time=4, fps=3) == list(range(5, 12))


def test_folder_video_timestamps():
    clip = load_video(GOLDEN / "inputs" / "video_frames", fps=1)
    assert clip.timestamps == [1 / 3, 4 / 3]
    assert clip.frames[0].shape == (3, 48, 64) and clip.frames[0].dtype == np.uint8


def test_empty_frames_folder(tmp_path):
    empty = tmp_path / "frames"
    empty.mkdir()
    with pytest.raises(MediaError, match="empty"):
        load_video(empty)
    conversation = [{"role": "user", "content": [{"type": "video", "video": {"video_path": str(empty)}}]}]
    with pytest.raises(MediaError):
        _processor()(conversation=conversation)


def test_missing_video_file(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        load_video(tmp_path / "clip.mp4")


def test_corrupt_video_file(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00\x01not a video" * 50)
    with pytest.raises(MediaError):
        load_video(bad)


def test_video_file_without_pyav(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("no av")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(MediaError, match="PyAV"):
        load_video(GOLDEN / "inputs" / "video.mp4")


def test_video_file_with_pyav():
    pytest.importorskip("av")
    clip = load_video(GOLDEN / "inputs" / "video.mp4", fps=1)  # 6 frames at 3 fps: fps filter keeps t=0 s, 1 s
    assert clip.timestamps == [0.0, 1.0] and clip.frames[0].shape == (3, 48, 64)
    clip = load_video(GOLDEN / "inputs" / "video.mp4", fps=2, max_frames=3)  # 4 ticks -> linspace(0, 3, 3)
    assert clip.timestamps == [0.0, 0.5, 1.5]


def test_gif_video(tmp_path):
    frames = [Image.new("RGB", (16, 8), color=(i * 20, 0, 0)) for i in range(10)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40)
    clip = load_video(path, fps=5)  # gif assumes 25 fps -> segment 5 -> indices 2, 7
    assert clip.timestamps == [2 / 25, 7 / 25]
    assert clip.frames[0].shape == (3, 8, 16)


# ----------------------------------------------------------------------------------------- volumes


def test_nifti_rules(tmp_path):
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    volume[:, :, 5] = 7.0  # a constant slice
    path = _write_nifti(tmp_path / "v.nii.gz", volume)
    slices = load_nifti(path)  # axis 2, all 6 slices
    assert len(slices) == 6 and slices[0].shape == (3, 4, 5) and slices[0].dtype == np.uint8
    assert np.array_equal(slices[0][0], slices[0][1]) and np.array_equal(slices[0][0], slices[0][2])
    expected = volume[:, :, 0].astype(np.float64)
    expected = ((expected - expected.min()) / (expected.max() - expected.min()) * 255).astype(np.uint8)
    assert np.array_equal(slices[0][0], expected)
    assert not slices[5].any()  # constant slice -> zeros
    assert len(load_nifti(path, num_slices=3)) == 3  # linspace(0, 5, 3, int) = 0, 2, 5
    assert np.array_equal(load_nifti(path, num_slices=3)[1], slices[2])
    assert len(load_nifti(path, num_slices=10)) == 6  # never up-sampled
    sagittal = load_nifti(path, axis=0)
    assert len(sagittal) == 4 and sagittal[0].shape == (3, 5, 6)
    windowed = load_nifti(path, axis=0, window_center=15, window_width=10)  # clip to [10, 20]
    plane = np.clip(volume[0].astype(np.float64), 10, 20)
    assert np.array_equal(windowed[0][0], ((plane - plane.min()) / (plane.max() - plane.min()) * 255).astype(np.uint8))


def test_non_nifti_as_3d(tmp_path):
    png = _write_png(tmp_path / "slice.png")
    with pytest.raises(MediaError, match="NIfTI"):
        load_nifti(png)
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(b"garbage" * 20)
    with pytest.raises(MediaError):
        load_nifti(fake)
    conversation = [{"role": "user", "content": [{"type": "3d", "3d": {"image_path": str(png)}}]}]
    with pytest.raises(MediaError):
        _processor()(conversation=conversation)


def test_bad_nifti_options(tmp_path):
    path = _write_nifti(tmp_path / "v.nii", np.zeros((3, 3, 3)))
    with pytest.raises(MediaError, match="nii_axis"):
        load_nifti(path, axis=3)
    with pytest.raises(MediaError, match="does not exist"):
        load_nifti(tmp_path / "missing.nii.gz")

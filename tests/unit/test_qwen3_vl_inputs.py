"""The second generation's front end where it does more than transformers (processing/qwen3_vl_inputs.py):
which video frames are decoded, and the checks on bad parts. The stock video processor itself needs torchvision;
its frame choice is stood in for by a sampler with the same interface (``sample_frames(metadata, fps)``)."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest

from hulumed.errors import MediaError
from hulumed.processing.qwen3_vl_inputs import _video, stock_messages
from tests.unit.media_samples import decoded_index, write_clip


def _uniform(metadata, fps=None):
    """The documented rule of transformers' Qwen3-VL ``sample_frames``: fps x duration frames, evenly spaced."""
    count = max(1, min(int(metadata.total_num_frames / metadata.fps * (fps or 2)), metadata.total_num_frames))
    return np.linspace(0, metadata.total_num_frames - 1, count).round().astype(int)


SAMPLER = SimpleNamespace(sample_frames=_uniform)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "c.mp4", frames=60, rate=Fraction(10), gop=12)


def test_only_the_samplers_frames_are_decoded_with_their_metadata(clip):
    frames, metadata = _video({"video_path": str(clip), "fps": 2}, SAMPLER)
    expected = _uniform(SimpleNamespace(total_num_frames=60, fps=10.0), 2).tolist()
    assert metadata.frames_indices == expected and metadata.fps == 10.0
    assert frames.shape == (len(expected), 48, 64, 3) and frames.dtype == np.uint8  # (T, H, W, 3)
    assert [decoded_index(np.moveaxis(f, -1, 0)) for f in frames] == expected


def test_trim_and_max_frames(clip):
    frames, metadata = _video({"video_path": str(clip), "fps": 2, "start_time": 2.0, "end_time": 4.0,
                               "max_frames": 3}, SAMPLER)
    indices = metadata.frames_indices
    assert len(indices) == 3 and 20 <= indices[0] and indices[-1] <= 40  # inside the 2-4 s window
    assert [decoded_index(np.moveaxis(f, -1, 0)) for f in frames] == indices


def test_bad_parts_are_media_errors(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        _video({"video_path": str(tmp_path / "missing.mp4")}, SAMPLER)
    with pytest.raises(MediaError, match="torchvision"):
        _video({"video_path": str(tmp_path / "missing.mp4")}, None)
    processor = SimpleNamespace(video_processor=None)
    with pytest.raises(MediaError, match="3d part needs"):
        stock_messages([{"role": "user", "content": [{"type": "3d", "3d": {"nii_num_slices": 2}}]}], processor)
    with pytest.raises(ValueError, match="volume_input"):
        stock_messages([{"role": "user", "content": "hi"}], processor, volume_input="slices")

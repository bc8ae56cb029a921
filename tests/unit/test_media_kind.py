"""One media sniff (``processing.media_kind``) for the CLI, the vLLM loader (and its bytes): content, not names;
a file given with the wrong flag is refused before any weights load, naming the right flag."""

from __future__ import annotations

import contextlib
import gzip
import io
import shutil

import pytest

from hulumed.processing.media_kind import media_kind
from tests.conftest import GOLDEN

INPUTS = GOLDEN / "inputs"


@pytest.mark.parametrize("name, kind, fmt", [
    ("image_a.png", "image", "PNG"), ("video.mp4", "video", "MP4"), ("volume.nii.gz", "volume", "NIfTI"),
])
def test_golden_inputs_by_content_even_when_renamed(tmp_path, name, kind, fmt):
    assert (media_kind(INPUTS / name).kind, media_kind(INPUTS / name).format) == (kind, fmt)
    renamed = tmp_path / "upload.bin"
    shutil.copy(INPUTS / name, renamed)
    assert media_kind(renamed).kind == kind
    assert media_kind((INPUTS / name).read_bytes()).kind == kind


def test_other_formats_and_unknown(tmp_path):
    from PIL import Image

    for fmt in ("JPEG", "BMP", "TIFF", "GIF", "WEBP"):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, fmt)
        assert media_kind(buffer.getvalue()).kind == "image", fmt
    nii = (INPUTS / "volume.nii.gz").read_bytes()
    assert media_kind(gzip.decompress(nii)).format == "NIfTI"  # uncompressed .nii
    assert media_kind(b"\0" * 128 + b"DICM" + b"\0" * 200).kind == "dicom"
    assert media_kind(b"PK\x03\x04rest").format == "zip"
    assert media_kind(b"\x1a\x45\xdf\xa3" + b"\0" * 60).kind == "video"
    assert media_kind(b"hello, not media").kind is None
    assert media_kind(tmp_path).format == "folder"


@pytest.mark.parametrize("flag, name, right", [
    ("--image", "video.mp4", "--video"), ("--image", "volume.nii.gz", "--volume"),
    ("--volume", "image_a.png", "--image"), ("--video", "image_a.png", "--image"),
])
def test_the_wrong_flag_is_refused_before_the_model_loads(flag, name, right):
    from hulumed.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # the model does not exist: the check must come first
        code = main(["generate", "--model", "/nonexistent/model", flag, str(INPUTS / name), "hi"])
    assert code == 1 and f"pass it with {right}" in err.getvalue() and "nonexistent" not in err.getvalue()


def test_the_right_flags_pass_the_check():
    from hulumed.commands import check_media

    check_media([str(INPUTS / "image_a.png")], str(INPUTS / "video.mp4"), str(INPUTS / "volume.nii.gz"))
    check_media([], str(INPUTS / "video_frames"), None)  # a frame folder


def test_vllm_loader_bytes_sniff_uses_the_same_rule():
    from hulumed.vllm_plugin.media import _kind

    assert _kind((INPUTS / "volume.nii.gz").read_bytes()) == ("volume", ".nii.gz")
    assert _kind((INPUTS / "video.mp4").read_bytes()) == ("video", ".mp4")
    assert _kind(b"\0" * 128 + b"DICM" + b"\0" * 10) == ("volume", ".dcm")




def test_one_volume_part_codec_for_server_endpoint_and_vllm_loader():
    """``volume_url`` part options <-> ``3d`` item keys in one place; the vLLM loader now forwards every option
    (it forwarded 5 of 10), so a volume through vLLM is sliced as our engine slices it."""
    import numpy as np

    from hulumed.backends.endpoint import openai_part
    from hulumed.processing.volume import load_volume
    from hulumed.processing.volume.options import VOLUME_ITEM_KEYS, item_from_part, part_from_item
    from hulumed.serve.guard import part_options
    from hulumed.vllm_plugin.media import load_media_bytes

    item = {"nii_num_slices": 3, "nii_axis": 1, "orientation": "ras", "normalize": "volume", "window": "lung"}
    part = part_from_item(item)
    assert part == {"slices": 3, "axis": 1, "orientation": "ras", "normalize": "volume", "window": "lung"}
    assert item_from_part(part) == item == part_options("volume_url", part, 0)
    assert set(part_options("volume_url", {k: None for k in VOLUME_ITEM_KEYS if k != "image_path"}, 0)) == \
        set(VOLUME_ITEM_KEYS) - {"image_path"}  # the server takes every item key
    sent = openai_part({"type": "3d", "3d": {"image_path": str(INPUTS / "volume.nii.gz"), **item}})
    assert {k: v for k, v in sent["volume_url"].items() if k != "url"} == part
    frames, _ = load_media_bytes((INPUTS / "volume.nii.gz").read_bytes(), **part)
    expected = load_volume(INPUTS / "volume.nii.gz", num_slices=3, axis=1, orientation="ras", normalize="volume",
                           window="lung")
    assert np.array_equal(frames, np.stack(expected))

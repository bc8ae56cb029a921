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



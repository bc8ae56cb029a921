"""Property-based robustness: random and mutated bytes fed to every loader; only `MediaError` may come out.

Seeds are small valid files made here (PNG, GIF, JPEG, MP4, MKV, NIfTI, NIfTI.gz, DICOM, zipped DICOM series);
mutations flip, overwrite, insert and truncate bytes. Examples are bounded so the module runs in seconds.
"""

from __future__ import annotations

import gzip
import io
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Callable

import nibabel
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hulumed import MediaError
from hulumed.processing import load_image, load_video, load_volume
from tests.unit.media_samples import ct_dataset, hu_volume, to_bytes, write_clip

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
SECRETS = ("Secretname", "Hiddenperson", "PID-7731-SECRET", "19451231")


def _image_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)) for _ in range(2)]
    if fmt == "GIF":
        frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    else:
        frames[0].save(buffer, format=fmt)
    return buffer.getvalue()


def _clip_bytes(suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"clip{suffix}"
        write_clip(path, 8, 4, gop=3, size=(32, 16), codec="libx264" if suffix == ".mp4" else "mpeg4")
        return path.read_bytes()


def _nifti_bytes(gz: bool) -> bytes:
    affine = np.array([[0, -0.8, 0, 10], [0, 0, 1.5, -4], [2.0, 0, 0, 3], [0, 0, 0, 1]])
    data = nibabel.Nifti1Image(np.random.default_rng(2).normal(0, 300, (6, 5, 4)).astype(np.float32), affine).to_bytes()
    return gzip.compress(data, mtime=0) if gz else data


def _series_zip() -> bytes:
    hu = hu_volume(rows=6, columns=5, slices=3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for k in range(3):
            archive.writestr(f"s{k}.dcm", to_bytes(ct_dataset(hu[:, :, k], position=(0, 0, k), instance=k + 1)))
    return buffer.getvalue()


@lru_cache(maxsize=None)
def seeds() -> dict[str, tuple[str, bytes, Callable[[Path], object]]]:
    """name -> (file suffix, valid bytes, loader)."""
    dicom = to_bytes(ct_dataset(hu_volume(rows=6, columns=5, slices=1)[:, :, 0], window=(40, 400)))
    return {
        "png": (".png", _image_bytes("PNG"), load_image),
        "jpeg": (".jpg", _image_bytes("JPEG"), load_image),
        "gif_image": (".gif", _image_bytes("GIF"), load_image),
        "gif_video": (".gif", _image_bytes("GIF"), lambda p: load_video(p, fps=25)),
        "mp4": (".mp4", _clip_bytes(".mp4"), lambda p: load_video(p, fps=2)),
        "mkv": (".mkv", _clip_bytes(".mkv"), lambda p: load_video(p, fps=1, max_frames=3)),
        "nii": (".nii", _nifti_bytes(False), lambda p: load_volume(p, orientation="ras")),
        "nii_gz": (".nii.gz", _nifti_bytes(True), load_volume),
        "dicom_image": (".dcm", dicom, load_image),
        "dicom_volume": (".dcm", dicom, lambda p: load_volume(p, window="lung")),
        "dicom_zip": (".zip", _series_zip(), load_volume),
    }


def _run(name: str, data: bytes) -> None:
    suffix, _, loader = seeds()[name]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(data)
        try:
            loader(path)
        except MediaError as err:
            assert not any(secret in str(err) for secret in SECRETS), str(err)


@pytest.mark.parametrize("name", sorted(seeds()))
def test_seeds_are_valid(name: str):
    suffix, data, loader = seeds()[name]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(data)
        loader(path)  # the unmutated seed loads


mutation = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]), st.floats(0, 1),
                     st.integers(0, 255))


def _mutate(data: bytes, edits: list[tuple[str, float, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in edits:
        if not out:
            break
        at = min(int(where * len(out)), len(out) - 1)
        if kind == "flip":
            out[at] ^= 1 << (value % 8)
        elif kind == "set":
            out[at] = value
        elif kind == "insert":
            out[at:at] = bytes([value]) * (1 + value % 7)
        elif kind == "delete":
            del out[at:at + 1 + value % 13]
        else:
            del out[at:]
    return bytes(out)


@pytest.mark.parametrize("name", sorted(seeds()))
@SETTINGS
@given(edits=st.lists(mutation, min_size=1, max_size=6))
def test_mutated_files_only_raise_media_error(name: str, edits: list[tuple[str, float, int]]):
    _run(name, _mutate(seeds()[name][1], edits))


@pytest.mark.parametrize("name", ["png", "mp4", "nii_gz", "dicom_image", "dicom_zip"])
@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.binary(max_size=600))
def test_random_bytes_only_raise_media_error(name: str, data: bytes):
    _run(name, data)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(prefix_length=st.integers(0, 400))
def test_truncated_dicom_and_nifti_headers(prefix_length: int):
    _run("dicom_volume", seeds()["dicom_volume"][1][:prefix_length])
    _run("nii", seeds()["nii"][1][:prefix_length])

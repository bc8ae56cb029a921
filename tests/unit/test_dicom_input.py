"""DICOM input: exact HU round trips, series sorting and choice, multi-frame, X-ray display rules, pydicom's
bundled sample files, and DICOM through the processor (image and 3d items, detected by content)."""

from __future__ import annotations

import logging
import shutil
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.sequence import Sequence as DicomSequence  # noqa: E402

from hulumed import MediaError  # noqa: E402
from hulumed.processing import (  # noqa: E402
    HulumedProcessor,
    load_dicom_image,
    load_image,
    load_volume,
    read_series,
    read_volume,
)
from tests.unit.media_samples import (  # noqa: E402
    SECRET_BIRTH,
    SECRET_ID,
    ct_dataset,
    hu_volume,
    save,
    write_series,
)

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden"
SECRETS = ("Secretname", "Hiddenperson", SECRET_ID, SECRET_BIRTH)


@lru_cache(maxsize=None)
def _processor() -> HulumedProcessor:
    return HulumedProcessor.from_pretrained(GOLDEN / "tiny-qwen2")


# ----------------------------------------------------------------------------------------- series round trips


@pytest.mark.parametrize("slope,intercept", [(1.0, -1024.0), (0.5, -1000.0), (2.0, -2048.0)])
def test_series_round_trip_is_exact(tmp_path: Path, slope: float, intercept: float):
    hu = hu_volume() if slope != 0.5 else np.rint(hu_volume() * 2) / 2  # half-HU steps for slope 0.5
    hu = np.clip(hu, -1000, 2000)
    if slope == 2.0:
        hu = np.rint(hu / 2) * 2
    positions = [-40.0, -37.5, -35.0, -32.5, -30.0, -27.5]
    names = [f"IM{n}" for n in (5, 1, 4, 0, 3, 2)]  # file order unrelated to position
    write_series(tmp_path / "ct", hu, positions, slope=slope, intercept=intercept, names=names)
    volume = read_series(tmp_path / "ct")
    assert volume.data.dtype == np.float32 and volume.data.shape == hu.shape
    assert np.array_equal(volume.data.astype(np.float64), hu)  # exact HU, slices sorted by position
    assert np.allclose(volume.positions[2], np.arange(6) * 2.5)
    # LPS (x, y, z) -> RAS: rows run along +y (posterior), columns along +x (patient left)
    assert np.allclose(volume.affine[:3, 0], [0, -0.7, 0]) and np.allclose(volume.affine[:3, 1], [-0.7, 0, 0])
    assert np.allclose(volume.affine[:3, 2], [0, 0, 2.5]) and np.allclose(volume.affine[:3, 3], [0, 0, -40])


def test_zip_and_folder_and_reversed_normal(tmp_path: Path):
    hu = hu_volume(slices=5)
    # slice normal pointing to the feet (IOP rows x, columns -y): positions sorted along that normal
    paths = write_series(tmp_path / "ct", hu, [0, 3, 6, 9, 12], orientation=(1, 0, 0, 0, -1, 0))
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as writer:
        for path in reversed(paths):
            writer.write(path, f"nested/{path.name}")
    from_zip, from_folder = read_volume(archive), read_volume(tmp_path / "ct")
    assert np.array_equal(from_zip.data, from_folder.data) and np.array_equal(from_zip.data.astype(float), hu)


def test_instance_number_orders_slices_without_positions(tmp_path: Path):
    folder = tmp_path / "ct"
    folder.mkdir()
    hu = hu_volume(slices=4)
    for k, name in zip(range(4), "dcba"):
        ds = ct_dataset(hu[:, :, k], instance=k + 1)
        del ds.ImagePositionPatient
        save(ds, folder / f"{name}.dcm")
    assert np.array_equal(read_series(folder).data.astype(float), hu)


def test_several_series_pick_largest_or_by_uid(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    big, small = hu_volume(slices=5, seed=1), hu_volume(slices=2, seed=2)
    write_series(tmp_path / "study", big, [0, 1, 2, 3, 4], series_uid="1.2.3.100", names=[f"a{k}" for k in range(5)])
    write_series(tmp_path / "study", small, [0, 5], series_uid="1.2.3.200", names=["b0", "b1"])
    (tmp_path / "study" / "notes.txt").write_text("not dicom")
    caplog.set_level(logging.INFO)
    chosen = read_series(tmp_path / "study")
    assert np.array_equal(chosen.data.astype(float), big)
    assert "1.2.3.100" in caplog.text and "5 slices" in caplog.text and "series_uid" in caplog.text
    assert not any(secret in caplog.text for secret in SECRETS)
    assert np.array_equal(read_series(tmp_path / "study", series_uid="1.2.3.200").data.astype(float), small)
    with pytest.raises(MediaError, match="no series with SeriesInstanceUID"):
        read_series(tmp_path / "study", series_uid="9.9")


def test_series_errors_do_not_leak_patient_data(tmp_path: Path):
    hu = hu_volume(slices=2)
    write_series(tmp_path / "dup", hu, [1.0, 1.0])
    with pytest.raises(MediaError, match="share a position") as info:
        read_series(tmp_path / "dup")
    assert not any(secret in str(info.value) for secret in SECRETS)


def test_multiframe_enhanced_ct(tmp_path: Path):
    from pydicom.dataset import Dataset

    hu = hu_volume(slices=4, seed=3)
    ds = ct_dataset(hu[:, :, 0], slope=1.0, intercept=-1024.0)
    del ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.RescaleSlope, ds.RescaleIntercept
    order = [2, 0, 3, 1]  # frames stored out of position order
    ds.NumberOfFrames = 4
    ds.PixelData = b"".join((hu[:, :, k] + 1024).astype("<u2").tobytes() for k in order)
    shared = Dataset()
    orientation, transform = Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    transform.RescaleSlope, transform.RescaleIntercept = 1, -1024
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    frames = []
    for k in order:
        group, position = Dataset(), Dataset()
        position.ImagePositionPatient = [0, 0, 2.0 * k]
        group.PlanePositionSequence = DicomSequence([position])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    path = save(ds, tmp_path / "enhanced.dcm")
    volume = read_volume(path)
    assert np.array_equal(volume.data.astype(float), hu) and np.allclose(volume.positions[2], [0, 2, 4, 6])
    with pytest.raises(MediaError, match="multi-frame"):
        load_dicom_image(path)


# ----------------------------------------------------------------------------------------- 2-D images


def test_monochrome1_and_header_window(tmp_path: Path):
    values = np.array([[0, 100, 200, 300]], dtype=np.float64).repeat(2, axis=0)  # (2, 4)
    ds = ct_dataset(values, intercept=0.0, window=(150.0, 201.0))
    normal = np.asarray(load_dicom_image(save(ds, tmp_path / "m2.dcm")))[..., 0]
    # linear VOI (PS3.3 C.11.2.1.2.1): ((x - (c - 0.5)) / (w - 1) + 0.5) * 255, clipped
    expected = np.rint(np.clip((values - 149.5) / 200.0 + 0.5, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(normal, expected)
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = np.asarray(load_dicom_image(save(ds, tmp_path / "m1.dcm")))[..., 0]
    assert np.array_equal(inverted, 255 - expected)
    no_window = ct_dataset(values, intercept=0.0)
    min_max = np.asarray(load_dicom_image(save(no_window, tmp_path / "mm.dcm")))[0, :, 0]
    assert np.array_equal(min_max, [0, 85, 170, 255])
    preset = np.asarray(load_dicom_image(tmp_path / "mm.dcm", window="ct_rgb"))
    assert preset.shape == (2, 4, 3) and not np.array_equal(preset[..., 0], preset[..., 2])


def test_pydicom_sample_files():
    ct = load_image(get_testdata_file("CT_small.dcm"))
    assert ct.mode == "RGB" and ct.size == (128, 128)
    plain = np.asarray(load_image(get_testdata_file("MR_small.dcm")))
    for compressed in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"):  # RLE (pydicom), JPEG 2000 (Pillow)
        assert np.array_equal(np.asarray(load_image(get_testdata_file(compressed))), plain)
    assert load_image(get_testdata_file("SC_rgb_jpeg.dcm")).size == (256, 256)  # JPEG baseline via Pillow
    with pytest.raises(MediaError, match="install a decoder"):
        load_image(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))  # JPEG-LS needs pylibjpeg / pyjpegls
    dose = read_volume(get_testdata_file("rtdose.dcm"))  # multi-frame, GridFrameOffsetVector, DoseGridScaling
    assert dose.data.shape == (10, 10, 15) and np.allclose(dose.positions[2], np.arange(15) * 5.0)
    ct_file = load_volume(get_testdata_file("CT_small.dcm"), window="abdomen")
    assert len(ct_file) == 1 and ct_file[0].shape == (3, 128, 128)


def test_pydicom_sample_series_folder(tmp_path: Path):
    source = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "77654033" / "CT2"
    volume = read_series(source)
    assert volume.data.shape == (16, 16, 4) and np.all(np.diff(volume.positions[2]) > 0)


# ----------------------------------------------------------------------------------------- through the processor


def test_dicom_in_processor_items(tmp_path: Path):
    hu = hu_volume(rows=40, columns=40, slices=6)
    write_series(tmp_path / "ct", hu, [0, 2, 4, 6, 8, 10])
    extensionless = tmp_path / "xray"
    shutil.copy(tmp_path / "ct" / "slice_000.dcm", extensionless)  # detected by content, not by name
    processor = _processor()
    image = processor(conversation=[{"role": "user", "content": [
        {"type": "image", "image": {"image_path": str(extensionless)}}, {"type": "text", "text": "Findings?"}]}])
    assert image["modals"] == ["image"]
    conversation = [{"role": "user", "content": [
        {"type": "3d", "3d": {"image_path": str(tmp_path / "ct"), "nii_num_slices": 4, "window": "lung",
                              "orientation": "radiological"}},
        {"type": "text", "text": "Findings?"}]}]
    out = processor(conversation=conversation, return_tensors="pt")
    assert out["modals"] == ["video"] and out["grid_sizes"].tolist()[0][0] == 4
    with pytest.raises(MediaError, match="Unsupported 3d option"):
        processor(conversation=[{"role": "user", "content": [{"type": "3d", "3d": {"image_path": "x", "hu": 1}}]}])


def test_dicom_and_nifti_of_the_same_anatomy_agree(tmp_path: Path):
    import nibabel

    hu = hu_volume(rows=8, columns=6, slices=5)
    write_series(tmp_path / "ct", hu, [0, 2, 4, 6, 8], spacing=(0.5, 0.8))
    from_dicom = read_series(tmp_path / "ct")
    nibabel.save(nibabel.Nifti1Image(from_dicom.data, from_dicom.affine), str(tmp_path / "ct.nii.gz"))
    for orientation in ("ras", "radiological"):
        a = load_volume(tmp_path / "ct", orientation=orientation, window="bone")
        b = load_volume(tmp_path / "ct.nii.gz", orientation=orientation, window="bone")
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_without_pydicom(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import builtins

    path = save(ct_dataset(hu_volume()[:, :, 0]), tmp_path / "a.dcm")
    real_import = builtins.__import__

    def no_pydicom(name, *args, **kwargs):
        if name == "pydicom" or name.startswith("pydicom."):
            raise ImportError("no pydicom")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pydicom)
    with pytest.raises(MediaError, match=r"hulumed\[dicom\]"):
        load_image(path)

"""Volumes are read plane by plane: only the slices the model receives, bit-identical to reading the whole volume.

The reference here is the whole-volume algorithm this package ran before (nibabel's `get_fdata()` or the full HU
array, reoriented whole, clipped whole, `np.take` per slice), written out; every option and reader (gzip and plain
NIfTI, scaled integers, 4-D series, DICOM folder and zip) must give identical uint8 slices. On a real-shaped CT
(512 x 512 x 64) the tests count what is read: 8 slices read 8 planes of voxels, decode 8 DICOM files, and never
call `get_fdata` (a full-volume pass).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import pytest
from nibabel.arrayproxy import ArrayProxy
from nibabel.orientations import apply_orientation, io_orientation

from hulumed.processing import VolumeOptions, load_volume, read_volume
from hulumed.processing.volume import select_slices
from hulumed.processing.windowing import resolve_window, windowed_rgb
from tests.unit.media_samples import ct_phantom, hu_volume, write_series

OBLIQUE = np.array([[0.0, 0.0, -2.5, 30.0], [-0.8, 0.0, 0.0, 10.0], [0.0, 0.9, 0.0, -5.0], [0, 0, 0, 1]])

OPTIONS = [
    {"num_slices": 8},
    {},
    {"num_slices": 5, "axis": 0},
    {"num_slices": 5, "axis": 1},
    {"num_slices": 6, "window_center": 40.3, "window_width": 400.7},
    {"num_slices": 6, "window": "lung"},
    {"num_slices": 6, "window": "ct_rgb", "axis": 1},
    {"num_slices": 6, "normalize": "volume"},
    {"num_slices": 6, "normalize": "volume", "window_center": -600, "window_width": 1500},
    {"num_slices": 6, "orientation": "ras"},
    {"num_slices": 6, "orientation": "radiological", "axis": 0},
    {"num_slices": 6, "orientation": "radiological", "window": "bone"},
    {"slice_spacing": 5.0},
]


def whole_volume_slices(data: np.ndarray, affine: np.ndarray, positions: tuple, options: VolumeOptions) -> list:
    """The earlier whole-volume algorithm: reorient the array, clip it, then take each slice with np.take."""
    axis, positions = options.axis, list(positions)
    if options.orientation != "raw":
        ornt = io_orientation(affine)
        data = apply_orientation(data, ornt)
        moved = [np.zeros(0)] * 3
        for source, (target, flip) in enumerate(ornt):
            moved[int(target)] = positions[source][::-1] if flip < 0 else positions[source]
        positions = moved
    indices = select_slices(positions[axis], options.num_slices, options.slice_spacing)
    if options.window_center is not None:
        half = options.window_width / 2
        data = np.clip(data, options.window_center - half, options.window_center + half)
    windows = resolve_window(options.window) if options.window is not None else None
    span = (float(data.min()), float(data.max())) if options.normalize == "volume" and windows is None else None
    out = []
    for index in indices:
        plane = np.take(data, int(index), axis=axis).astype(np.float64)
        if options.orientation == "radiological":
            plane = plane.T[::-1, ::-1]
        if windows is not None:
            out.append(windowed_rgb(plane, windows))
            continue
        low, high = span if span is not None else (plane.min(), plane.max())
        if high <= low:
            grey = np.zeros(plane.shape, np.uint8)
        elif span is not None:
            grey = np.rint((plane - low) / (high - low) * 255).astype(np.uint8)
        else:
            grey = ((plane - low) / (high - low) * 255).astype(np.uint8)
        out.append(np.stack([grey] * 3))
    return out


def _assert_same(got: list, expected: list) -> None:
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
        assert a.dtype == np.uint8 and a.shape == b.shape and np.array_equal(a, b)


def _nifti_positions(path: Path) -> tuple:
    image = nibabel.load(str(path))
    zooms = np.sqrt((np.asarray(image.affine)[:3, :3] ** 2).sum(axis=0))
    return tuple(np.arange(n, dtype=np.float64) * z for n, z in zip(image.shape[:3], zooms))


@pytest.fixture(scope="module")
def niftis(tmp_path_factory) -> dict[str, Path]:
    """Small volumes in every storage form the readers distinguish."""
    folder = tmp_path_factory.mktemp("niftis")
    rng = np.random.default_rng(3)
    hu = rng.integers(-1024, 2000, size=(20, 18, 16)).astype(np.int16)
    files = {}
    for suffix in (".nii.gz", ".nii"):
        scaled = nibabel.Nifti1Image(hu, OBLIQUE)
        scaled.header.set_slope_inter(0.73, -1000.3)  # float32 header values: scaling must match get_fdata bit for bit
        files[f"scaled{suffix}"] = folder / f"scaled{suffix}"
        nibabel.save(scaled, str(files[f"scaled{suffix}"]))
        files[f"float{suffix}"] = folder / f"float{suffix}"
        nibabel.save(nibabel.Nifti1Image(rng.standard_normal((20, 18, 16)).astype(np.float32) * 300, OBLIQUE),
                     str(files[f"float{suffix}"]))
    files["4d.nii.gz"] = folder / "4d.nii.gz"
    series = nibabel.Nifti1Image(rng.integers(0, 4000, size=(12, 10, 9, 3)).astype(np.int16), np.diag([2, 2, 3, 1]))
    series.header.set_slope_inter(0.5, 7.25)
    nibabel.save(series, str(files["4d.nii.gz"]))
    return files


@pytest.mark.parametrize("name", ["scaled.nii.gz", "scaled.nii", "float.nii.gz", "float.nii"])
@pytest.mark.parametrize("fields", OPTIONS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "all")
def test_nifti_planes_equal_the_whole_volume_path(niftis, name: str, fields: dict[str, Any]):
    path = niftis[name]
    options = VolumeOptions(**fields)
    image = nibabel.load(str(path))
    expected = whole_volume_slices(image.get_fdata(), np.asarray(image.affine), _nifti_positions(path), options)
    _assert_same(load_volume(path, options), expected)


@pytest.mark.parametrize("time_index", [0, 2, -1])
def test_one_volume_of_a_4d_series_equals_the_whole_volume_path(niftis, time_index: int):
    path = niftis["4d.nii.gz"]
    image = nibabel.load(str(path))
    data = image.slicer[..., time_index].get_fdata()  # how a 4-D series was read before
    for fields in ({"num_slices": 4}, {"num_slices": 3, "axis": 0}, {"normalize": "volume"}):
        options = VolumeOptions(time_index=time_index, **fields)
        expected = whole_volume_slices(data, np.asarray(image.affine), _nifti_positions(path), options)
        _assert_same(load_volume(path, options), expected)


@pytest.fixture(scope="module")
def dicom_series(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("series")
    hu = np.clip(hu_volume(rows=14, columns=12, slices=10, seed=4), -1000, 2000)
    positions = [-40.0 + 2.5 * k for k in range(10)]
    names = [f"IM{(k * 7) % 10}" for k in range(10)]  # file order unrelated to position
    write_series(folder / "ct", hu, positions, slope=1.0, intercept=-1024.0, names=names,
                 orientation=(0, 1, 0, 0, 0, -1))  # a sagittal acquisition: reorientation moves the axes
    with zipfile.ZipFile(folder / "ct.zip", "w") as archive:
        for file in sorted((folder / "ct").iterdir()):
            archive.write(file, f"series/{file.name}")
    return {"folder": folder / "ct", "zip": folder / "ct.zip"}


@pytest.mark.parametrize("kind", ["folder", "zip"])
@pytest.mark.parametrize("fields", OPTIONS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "all")
def test_dicom_series_planes_equal_the_whole_volume_path(dicom_series, kind: str, fields: dict[str, Any]):
    path = dicom_series[kind]
    options = VolumeOptions(**fields)
    whole = read_volume(path)
    data = whole.data  # every file decoded into the float32 HU array, as the reader built it before
    assert data.dtype == np.float32
    expected = whole_volume_slices(data, whole.affine, whole.positions, options)
    _assert_same(load_volume(path, options), expected)


# ------------------------------------------------------------------- a real-shaped CT: what is read, counted


@pytest.fixture(scope="module")
def ct(tmp_path_factory) -> dict[str, Any]:
    """A 512 x 512 x 64 int16 chest phantom as .nii.gz, .nii and a 64-file DICOM series."""
    folder = tmp_path_factory.mktemp("ct")
    hu = ct_phantom(slices=64)
    affine = np.diag([-0.7, -0.7, 2.5, 1.0])
    image = nibabel.Nifti1Image(hu, affine)
    image.header.set_slope_inter(1.0, 0.0)
    paths = {"nii.gz": folder / "ct.nii.gz", "nii": folder / "ct.nii"}
    for path in paths.values():
        nibabel.save(image, str(path))
    write_series(folder / "dicom", np.clip(hu, -1024, 2000).astype(np.float64), [2.5 * k for k in range(64)])
    return {**paths, "dicom": folder / "dicom", "hu": hu}


class _Reads:
    """Counts what nibabel's array proxy reads: calls and voxels."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls, self.voxels = 0, 0
        original = ArrayProxy._get_scaled

        def counted(proxy, dtype, slicer):
            values = original(proxy, dtype=dtype, slicer=slicer)
            self.calls += 1
            self.voxels += int(np.asarray(values).size)
            return values

        def no_fdata(*args, **kwargs):
            raise AssertionError("get_fdata reads the whole volume")

        monkeypatch.setattr(ArrayProxy, "_get_scaled", counted)
        monkeypatch.setattr(nibabel.Nifti1Image, "get_fdata", no_fdata)


@pytest.mark.parametrize("suffix", ["nii.gz", "nii"])
def test_a_real_shaped_ct_reads_only_the_slices_the_model_receives(ct, monkeypatch, suffix: str):
    reads = _Reads(monkeypatch)
    slices = load_volume(ct[suffix], num_slices=8)
    assert len(slices) == 8 and slices[0].shape == (3, 512, 512)
    assert reads.calls == 8 and reads.voxels == 8 * 512 * 512  # no full-volume pass
    expected_index = np.linspace(0, 63, 8, dtype=int)
    plane = ct["hu"][:, :, expected_index[3]].astype(np.float64)
    grey = ((plane - plane.min()) / (plane.max() - plane.min()) * 255).astype(np.uint8)
    assert np.array_equal(slices[3][0], grey)


def test_another_axis_of_a_gzip_ct_is_one_pass(ct, monkeypatch):
    """Planes along axis 0 are spread over the whole gzip stream: one read of it, not one per slice."""
    reads = _Reads(monkeypatch)
    assert len(load_volume(ct["nii.gz"], num_slices=8, axis=0)) == 8
    assert reads.calls == 1


def test_a_300_file_style_series_decodes_only_the_chosen_files(ct, monkeypatch):
    from hulumed.processing.volume import dicom_series

    decoded: list[str] = []
    original = dicom_series.decode_pixels

    def counted(dataset, name):
        decoded.append(name)
        return original(dataset, name)

    monkeypatch.setattr(dicom_series, "decode_pixels", counted)
    slices = load_volume(ct["dicom"], num_slices=8)
    assert len(slices) == 8 and len(decoded) == 8 and len(set(decoded)) == 8
    plane = np.clip(ct["hu"][:, :, 63], -1024, 2000).astype(np.float64)
    grey = ((plane - plane.min()) / (plane.max() - plane.min()) * 255).astype(np.uint8)
    assert np.array_equal(slices[-1][0], grey)


def test_nan_in_a_slice_the_model_does_not_receive_is_not_read(tmp_path):
    """Only received slices are read, so only they are checked: a NaN elsewhere is not an error; in a received
    slice it is, with the loader's message."""
    volume = np.ones((6, 6, 9), np.float32)
    volume[:, :, 1] = np.nan  # linspace(0, 8, 3) keeps 0, 4, 8
    path = tmp_path / "nan.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), str(path))
    assert len(load_volume(path, num_slices=3)) == 3
    from hulumed import MediaError

    with pytest.raises(MediaError, match="NaN or infinite"):
        load_volume(path)


def test_a_copied_series_keeps_the_header_geometry(ct, tmp_path):
    """Pixel spacing and thickness come from the first sorted file's header (no pixels decoded for it)."""
    folder = tmp_path / "copy"
    shutil.copytree(ct["dicom"], folder)
    volume = read_volume(folder)
    assert volume.shape == (512, 512, 64)
    assert np.allclose(np.sqrt((volume.affine[:3, :3] ** 2).sum(axis=0)), [0.7, 0.7, 2.5])  # mm per index step
    assert volume.voxels.planes_read == 0

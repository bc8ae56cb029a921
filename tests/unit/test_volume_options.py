"""NIfTI volumes: upstream parity by default, and the options (orientation, windows, normalisation, spacing, 4-D).

Volumes are written here with nibabel (non-trivial affines) or taken from the sample files nibabel ships.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel
import numpy as np
import pytest

from hulumed import MediaError
from hulumed.processing import (
    RGB_WINDOWS,
    VOLUME_ITEM_KEYS,
    WINDOW_PRESETS,
    apply_window,
    load_nifti,
    load_volume,
    read_nifti,
    resolve_window,
    window_names,
)

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden"
NIBABEL_DATA = Path(nibabel.__file__).parent / "tests" / "data"


def _save(path: Path, volume: np.ndarray, affine: np.ndarray) -> Path:
    nibabel.save(nibabel.Nifti1Image(volume.astype(np.float32), affine), str(path))
    return path


def _upstream_slices(path: Path, num_slices: int, axis: int) -> list[np.ndarray]:
    """HF-Version `load_nii`, written out."""
    volume = nibabel.load(str(path)).get_fdata()
    indices = np.linspace(0, volume.shape[axis] - 1, num_slices, dtype=int)
    out = []
    for i in indices:
        plane = np.take(volume, i, axis=axis)
        low, high = plane.min(), plane.max()
        grey = ((plane - low) / (high - low) * 255).astype(np.uint8) if high > low else np.zeros(plane.shape, np.uint8)
        out.append(np.stack([grey] * 3))
    return out


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_default_is_upstream_on_golden_volume(axis: int):
    path = GOLDEN / "inputs" / "volume.nii.gz"
    expected = _upstream_slices(path, 8, axis)
    for got in (load_nifti(path, num_slices=8, axis=axis), load_volume(path, num_slices=8, axis=axis)):
        assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))


@pytest.fixture()
def oblique(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A volume stored in (S, L, P)-like axis order with flips: a marker at the patient's right-anterior-superior."""
    rng = np.random.default_rng(1)
    ras = rng.normal(0, 50, size=(10, 12, 8))  # canonical (R, A, S) array
    ras[8:, 9:, 6:] = 3000  # right, anterior, superior corner
    # stored array axes: (S reversed, R reversed -> L, A reversed -> P) with 2 mm x 0.5 mm x 1 mm voxels
    stored = np.transpose(ras, (2, 0, 1))[::-1, ::-1, ::-1]
    affine = np.zeros((4, 4))
    affine[2, 0] = -2.0  # stored axis 0 -> -S
    affine[0, 1] = -0.5  # stored axis 1 -> -R
    affine[1, 2] = -1.0  # stored axis 2 -> -A
    affine[:3, 3] = [0.5 * 9, 1.0 * 11, 2.0 * 7]
    affine[3, 3] = 1
    return _save(tmp_path / "oblique.nii.gz", stored, affine), ras


def test_ras_orientation_matches_nibabel_canonical(oblique):
    path, ras = oblique
    canonical = nibabel.as_closest_canonical(nibabel.load(str(path))).get_fdata()
    assert np.allclose(canonical, ras, atol=1e-3)
    got = load_volume(path, orientation="RAS", normalize="volume")
    assert len(got) == ras.shape[2]
    raw = load_volume(path)  # raw axis order: axis 2 of the stored array (A reversed)
    assert len(raw) == 12


def test_radiological_orientation_puts_patient_right_on_image_left(oblique):
    path, _ = oblique
    top_axial = load_volume(path, orientation="radiological", window=(1000, 100))[-1][0]  # most superior slice
    rows, cols = np.nonzero(top_axial == 255)
    assert rows.max() < top_axial.shape[0] / 2  # anterior at the top
    assert cols.max() < top_axial.shape[1] / 2  # patient's right on the image left
    coronal = load_volume(path, orientation="radiological", axis=1, window=(1000, 100))[-1][0]  # most anterior
    rows, cols = np.nonzero(coronal == 255)
    assert rows.max() < coronal.shape[0] / 2 and cols.max() < coronal.shape[1] / 2  # superior top, right left


def test_window_presets_and_rgb_mode(tmp_path: Path):
    values = np.array([-2000, -1000, -600, 0, 40, 80, 400, 3000], dtype=np.float64)
    path = _save(tmp_path / "ramp.nii", np.broadcast_to(values[:, None, None], (8, 2, 3)).copy(), np.eye(4))
    lung = load_volume(path, window="lung")[0][0][:, 0]
    assert np.array_equal(lung, apply_window(values, WINDOW_PRESETS["lung"]))
    assert lung[0] == 0 and lung[-1] == 255 and lung[2] == 128  # -600 is the lung window centre
    rgb = load_volume(path, window="ct_rgb")[0]
    for channel, window in enumerate(RGB_WINDOWS):
        assert np.array_equal(rgb[channel][:, 0], apply_window(values, window))
    assert set(window_names()) >= {"lung", "mediastinum", "soft_tissue", "abdomen", "bone", "brain", "ct_rgb"}
    assert resolve_window({"center": 40, "width": 400}) == resolve_window((40, 400))
    with pytest.raises(MediaError, match="Unknown window"):
        load_volume(path, window="kidney-ish")
    with pytest.raises(MediaError, match="not both"):
        load_volume(path, window="bone", window_center=40, window_width=400)
    with pytest.raises(MediaError, match="positive width"):
        load_volume(path, window=(40, 0))


def test_volume_normalisation_uses_one_range(tmp_path: Path):
    volume = np.zeros((3, 3, 2))
    volume[..., 0] = 100.0
    volume[0, 0, 1], volume[1, 1, 1] = 0.0, 50.0
    path = _save(tmp_path / "v.nii", volume, np.eye(4))
    per_slice = load_volume(path)
    per_volume = load_volume(path, normalize="volume")
    assert not per_slice[0].any()  # constant slice -> zeros (upstream)
    assert (per_volume[0] == 255).all() and per_volume[1][0, 1, 1] == 128  # 50 of 0..100, rounded


def test_spacing_aware_slice_choice(tmp_path: Path):
    volume = np.arange(20, dtype=np.float64)[None, None, :] * np.ones((2, 2, 1))
    volume[0, 0, :] = -1  # every slice non-constant; slice k has value k elsewhere
    path = _save(tmp_path / "z.nii", volume, np.diag([1.0, 1.0, 2.5, 1.0]))  # 2.5 mm slices
    picked = [int(s[0, 1, 1]) for s in load_volume(path, slice_spacing=10, normalize="volume")]
    expected = [round((k * 4 + 1) / 20 * 255) for k in range(5)]  # slices 0, 4, 8, 12, 16 (every 10 mm)
    assert picked == expected
    assert len(load_volume(path, slice_spacing=10, num_slices=3)) == 3
    assert len(load_volume(path, slice_spacing=0.1)) == 20  # finer than the data: every slice
    with pytest.raises(MediaError, match="slice_spacing"):
        load_volume(path, slice_spacing=-1)


def test_4d_needs_a_time_index():
    path = NIBABEL_DATA / "example4d.nii.gz"
    with pytest.raises(MediaError, match="time_index"):
        load_volume(path)
    first = load_volume(path, time_index=0, num_slices=4)
    second = load_volume(path, time_index=1, num_slices=4)
    assert len(first) == 4 and first[0].shape == (3, 128, 96)
    data = nibabel.load(str(path)).get_fdata()[..., 1]
    plane = data[:, :, np.linspace(0, 23, 4, dtype=int)[2]]
    expected = ((plane - plane.min()) / (plane.max() - plane.min()) * 255).astype(np.uint8)
    assert np.array_equal(second[2][0], expected)
    with pytest.raises(MediaError, match="time_index"):
        load_volume(path, time_index=5)


def test_nibabel_sample_files():
    anatomical = load_volume(NIBABEL_DATA / "anatomical.nii", num_slices=5, orientation="ras")
    assert len(anatomical) == 5 and anatomical[0].shape == (3, 33, 41)
    standard = read_nifti(NIBABEL_DATA / "standard.nii.gz")
    assert standard.data.shape == (4, 5, 7)


def test_item_keys_are_documented():
    assert VOLUME_ITEM_KEYS[:5] == ("image_path", "nii_num_slices", "nii_axis", "window_center", "window_width")
    assert {"window", "orientation", "normalize", "slice_spacing", "time_index", "series_uid"} <= set(VOLUME_ITEM_KEYS)


def test_bad_options(tmp_path: Path):
    path = _save(tmp_path / "v.nii", np.zeros((3, 3, 3)), np.eye(4))
    with pytest.raises(MediaError, match="orientation"):
        load_volume(path, orientation="sideways")
    with pytest.raises(MediaError, match="normalize"):
        load_volume(path, normalize="global")
    with pytest.raises(MediaError, match="nii_num_slices"):
        load_volume(path, num_slices=0)
    with pytest.raises(MediaError, match="does not exist"):
        load_volume(tmp_path / "missing.nii.gz")


def test_volume_options_item_round_trip():
    from hulumed.processing import VolumeOptions

    for options in (VolumeOptions(), VolumeOptions(axis=0, num_slices=8, window=(40.0, 400.0)),
                    VolumeOptions(window_center=40, window_width=400, normalize="volume", orientation="RAS",
                                  slice_spacing=2.5, time_index=1)):
        item = options.item("ct.nii.gz")
        assert item["image_path"] == "ct.nii.gz" and item["nii_axis"] == options.axis
        back = VolumeOptions.from_item(item)  # a window pair comes back as the JSON list the item holds
        window = list(options.window) if isinstance(options.window, tuple) else options.window
        assert back == dataclasses.replace(options, window=window)
    assert VolumeOptions().item("x") == {"image_path": "x", "nii_axis": 2}  # defaults stay implicit
    assert VolumeOptions(window="lung").item("x") == {"image_path": "x", "nii_axis": 2, "window": "lung"}

"""Media made inside the tests: PyAV-encoded clips, pydicom-written slices and series, nibabel volumes.

Shared by the media tests (test_video_seek, test_volume_options, test_dicom_input, test_media_fuzz). Every
writer is deterministic and small; nothing is downloaded.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2.1"
SECRET_NAME = "Secretname^Hiddenperson"
SECRET_ID = "PID-7731-SECRET"
SECRET_BIRTH = "19451231"


def frame_image(index: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """Frame `index` of `write_clip`: its index in binary as 8 black/white vertical stripes, `(H, W, 3)` uint8."""
    width, height = size
    image = np.full((height, width, 3), 30, dtype=np.uint8)
    stripe = width // 8
    for bit in range(8):
        if (index >> bit) & 1:
            image[:, bit * stripe:(bit + 1) * stripe] = 225
    return image


def write_clip(
    path: Path, frames: int, rate: Any, gop: int = 12, size: tuple[int, int] = (64, 48), codec: str = "libx264",
    vfr_pts: Optional[Sequence[int]] = None,
) -> Path:
    """Encode frames `frame_image(0..frames-1)` with PyAV (`vfr_pts`: presentation times in ms, for VFR)."""
    import av

    width, height = size
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.gop_size = gop
    for index in range(frames):
        frame = av.VideoFrame.from_ndarray(frame_image(index, size), format="rgb24")
        if vfr_pts is not None:
            frame.pts, frame.time_base = int(vfr_pts[index]), Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def decoded_index(frame: np.ndarray) -> int:
    """Which `write_clip` frame a decoded `(3, H, W)` frame shows (reads the 8 stripes)."""
    stripe = frame.shape[2] // 8
    bits = [float(frame[:, :, b * stripe:(b + 1) * stripe].mean()) > 128 for b in range(8)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def ct_dataset(
    hu: np.ndarray,
    position: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    spacing: Sequence[float] = (0.7, 0.7),
    slope: float = 1.0,
    intercept: float = -1024.0,
    instance: int = 1,
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    photometric: str = "MONOCHROME2",
    window: Optional[tuple[float, float]] = None,
    syntax: str = "1.2.840.10008.1.2.1",
) -> Any:
    """A CT slice storing `hu` (H, W) as unsigned 16-bit values with the given slope / intercept."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    stored = np.rint((np.asarray(hu, dtype=np.float64) - intercept) / slope)
    assert stored.min() >= 0 and stored.max() < 65536, "HU not representable with this slope/intercept"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(CT_SOP_CLASS)
    meta.MediaStorageSOPInstanceUID = UID(f"{series_uid}.{instance}")
    meta.TransferSyntaxUID = UID(syntax)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = SECRET_NAME, SECRET_ID, SECRET_BIRTH
    ds.StudyDate = "20240229"
    ds.Modality = "CT"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.9"
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.SliceThickness = 1.0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = stored.astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def save(ds: Any, path: Path) -> Path:
    ds.save_as(str(path), enforce_file_format=True)
    return path


def to_bytes(ds: Any) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def hu_volume(rows: int = 12, columns: int = 10, slices: int = 6, seed: int = 0) -> np.ndarray:
    """Integer HU values (rows, columns, slices) in [-1024, 2000], with a distinct value per slice corner."""
    rng = np.random.default_rng(seed)
    volume = rng.integers(-1024, 2000, size=(rows, columns, slices)).astype(np.float64)
    volume[0, 0, :] = np.arange(slices) * 10 - 500  # slice k is recognisable by its corner
    return volume


def write_series(
    folder: Path, volume: np.ndarray, positions: Sequence[float], slope: float = 1.0, intercept: float = -1024.0,
    names: Optional[Sequence[str]] = None, series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0), spacing: Sequence[float] = (0.7, 0.7),
) -> list[Path]:
    """Write slice k of `volume` (rows, cols, slices) at z = positions[k] along the slice normal, one file each."""
    folder.mkdir(parents=True, exist_ok=True)
    row_dir, col_dir = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row_dir, col_dir)
    paths = []
    for k in range(volume.shape[2]):
        name = names[k] if names is not None else f"slice_{k:03d}.dcm"
        ds = ct_dataset(
            volume[:, :, k], position=normal * positions[k], orientation=orientation, spacing=spacing, slope=slope,
            intercept=intercept, instance=k + 1, series_uid=series_uid,
        )
        paths.append(save(ds, folder / name))
    return paths


def ct_phantom(rows: int = 512, columns: int = 512, slices: int = 300, seed: int = 0) -> np.ndarray:
    """A chest-CT-shaped int16 HU volume `(rows, columns, slices)`: air around an elliptic body of soft tissue,
    two lungs, a spine, a table line and scanner noise (so gzip compresses it about as much as a real scan)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    cy, cx = rows / 2, columns / 2
    body = ((x - cx) / (0.42 * columns)) ** 2 + ((y - cy) / (0.32 * rows)) ** 2 < 1
    lungs = [((x - cx + s * 0.17 * columns) / (0.13 * columns)) ** 2 + ((y - cy + 0.02 * rows) / (0.2 * rows)) ** 2 < 1
             for s in (1, -1)]
    spine = ((x - cx) / (0.04 * columns)) ** 2 + ((y - cy - 0.22 * rows) / (0.04 * rows)) ** 2 < 1
    base = np.full((rows, columns), -1000.0, np.float32)
    base[body] = 40.0
    for lung in lungs:
        base[lung & body] = -850.0
    base[spine] = 700.0
    base[int(0.86 * rows):int(0.87 * rows), :] = 200.0  # the table
    volume = np.empty((rows, columns, slices), np.int16)
    for k in range(slices):
        taper = 1.0 - 0.3 * abs(k / max(slices - 1, 1) - 0.5)  # lungs shrink towards the ends
        plane = np.where(base == -850.0, -850.0 + 300.0 * (1 - taper), base)
        volume[:, :, k] = np.clip(plane + rng.normal(0, 12, (rows, columns)), -1024, 3071).astype(np.int16)
    return volume

"""DICOM series -> a `Volume` in HU: files of a folder or a zip, or one multi-frame file.

In:  a folder (searched recursively), a zip archive, or one DICOM file; optionally a SeriesInstanceUID.
Out: `Volume` of float32 HU voxels `(rows, columns, slices)` with an LPS->RAS affine and the slices'
     distances along the normal (for spacing-aware sampling), sorted along the slice normal. Every file's header
     is read (`stop_before_pixels`) to group, sort and check the series; pixels are decoded only for the slices
     that are asked for (`SeriesVoxels`), so 32 slices of a 300-file series decode 32 files.

Rules:
- Files are grouped by SeriesInstanceUID (non-DICOM and non-image files are skipped and counted); `series_uid`
  picks one, otherwise the one with the most slices is used and its UID and slice count are logged (INFO) so the
  choice can be repeated.
- Slices are sorted by ImagePositionPatient projected on the normal of ImageOrientationPatient, then
  InstanceNumber (InstanceNumber alone when positions are missing). Every slice must share its size and
  orientation and no two slices may share a position (`POSITION_TOLERANCE_MM`); each slice is rescaled to HU with
  its own slope and intercept (exact in float32 for stored integers).
- Multi-frame files (enhanced CT/MR, RT dose) use their per-frame positions (PlanePositionSequence, or
  GridFrameOffsetVector) and per-frame / shared rescale values (or DoseGridScaling).
- Limits (`limits.py`): `MAX_VOXELS` voxels per series, `MAX_INFLATED_BYTES` uncompressed bytes per zip;
  `safe_files.MAX_FILES` files per folder.
- Reading, decoding and message scrubbing are `dicom.py`'s: no patient data reaches a message or a log record.

Every failure is a `MediaError` saying what is wrong and what to do.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from hulumed.errors import MediaError
from hulumed.processing import limits, safe_files
from hulumed.processing.dicom import (
    check_pixel_count,
    decode_pixels,
    get_int,
    get_value,
    parse_floats,
    read_dataset,
    scrub,
    sniff_zip,
)
from hulumed.processing.volume.geometry import ArrayVoxels, Volume, Voxels, plane_index

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

POSITION_TOLERANCE_MM = 1e-3  # two slices closer than this along the normal are duplicates


@dataclass
class _Instance:
    """Header facts of one DICOM file of a series (no pixels)."""

    name: str
    source: Union[Path, bytes]
    series_uid: str
    rows: int
    columns: int
    frames: int
    samples: int
    instance_number: int
    position: Optional[np.ndarray]  # (3,) ImagePositionPatient, LPS mm
    orientation: Optional[np.ndarray]  # (6,) ImageOrientationPatient


def _entries(path: Path) -> Iterator[tuple[str, Union[Path, bytes]]]:
    """(name, path or bytes) of every candidate file of a folder, a zip, or one file."""
    if path.is_dir():
        for file in safe_files.folder_files(path, recursive=True):  # regular files only, sorted, <= MAX_FILES
            if file.name.upper() != "DICOMDIR" and not file.name.startswith("."):
                yield str(file), file
        return
    if sniff_zip(path):
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if sum(m.file_size for m in members) > limits.MAX_INFLATED_BYTES:
                    raise MediaError(
                        f"{path} unpacks to more than {limits.MAX_INFLATED_BYTES:,} bytes (decompression bomb guard). "
                        "Unzip it "
                        "and pass the folder of one series."
                    )
                if len(members) > safe_files.MAX_FILES:
                    raise MediaError(f"{path} holds more than {safe_files.MAX_FILES:,} files. Zip one series only.")
                left = limits.MAX_INFLATED_BYTES  # the directory's sizes may lie: count what really comes out
                for member in sorted(members, key=lambda m: m.filename):
                    base = member.filename.rsplit("/", 1)[-1]
                    if base.upper() == "DICOMDIR" or base.startswith(".") or member.filename.startswith("__MACOSX"):
                        continue
                    with archive.open(member) as stream:
                        data = safe_files.read_capped(stream, left, f"{path}", "unpacks to")
                    left -= len(data)
                    yield f"{path}:{member.filename}", data
        except MediaError:
            raise
        except Exception as err:  # BadZipFile, zlib.error, CRC errors, NotImplementedError (encryption), ...
            raise MediaError(
                f"Cannot read zip {path}: {type(err).__name__}: {scrub(str(err))}. The archive is corrupt, truncated "
                "or encrypted."
            ) from err
        return
    yield str(path), path


def _instance(name: str, source: Union[Path, bytes], dataset: Any) -> _Instance:
    position = parse_floats(get_value(dataset, "ImagePositionPatient"), 3)
    orientation = parse_floats(get_value(dataset, "ImageOrientationPatient"), 6)
    return _Instance(
        name=name,
        source=source,
        series_uid=str(get_value(dataset, "SeriesInstanceUID", "")),
        rows=get_int(dataset, "Rows"),
        columns=get_int(dataset, "Columns"),
        frames=max(get_int(dataset, "NumberOfFrames", 1), 1),
        samples=max(get_int(dataset, "SamplesPerPixel", 1), 1),
        instance_number=get_int(dataset, "InstanceNumber", 0),
        position=position,
        orientation=orientation,
    )


def _collect(path: Path) -> list[_Instance]:
    """Header facts of every DICOM image file under `path`; a single file must be one."""
    single = not path.is_dir() and not sniff_zip(path)
    instances, skipped = [], 0
    for name, source in _entries(path):
        try:
            dataset = read_dataset(source, name, header_only=True)
        except MediaError:
            if single:
                raise
            skipped += 1
            continue
        if get_int(dataset, "Rows") <= 0 or get_int(dataset, "Columns") <= 0:
            if single:
                check_pixel_count(dataset, name)  # raises the empty-image message
            skipped += 1
            continue
        check_pixel_count(dataset, name)  # declared frame size and pixel count, before any pixel is decoded
        instances.append(_instance(name, source, dataset))
    if not instances:
        raise MediaError(
            f"No DICOM images found in {path} ({skipped} file(s) were not DICOM images). Pass a DICOM file, a folder "
            "or a zip of one series (a folder of PNG/JPEG slices is a video item, as upstream reads such folders)."
        )
    if skipped:
        logger.info("Skipped %d non-image or unreadable file(s) in %s.", skipped, path)
    return instances


def _choose_series(instances: list[_Instance], series_uid: Optional[str], path: Path) -> list[_Instance]:
    groups: dict[str, list[_Instance]] = {}
    for instance in instances:
        groups.setdefault(instance.series_uid, []).append(instance)
    if series_uid is not None:
        if series_uid not in groups:
            listing = ", ".join(f"{uid or '<no UID>'} ({len(g)} files)" for uid, g in sorted(groups.items()))
            raise MediaError(f"{path} has no series with SeriesInstanceUID {series_uid!r}. Series found: {listing}.")
        return groups[series_uid]
    if len(groups) == 1:
        return next(iter(groups.values()))
    ranked = sorted(groups.items(), key=lambda item: (-sum(i.frames for i in item[1]), item[0]))
    uid, chosen = ranked[0]
    others = ", ".join(f"{u or '<no UID>'} ({sum(i.frames for i in g)} slices)" for u, g in ranked[1:])
    logger.info(
        "%s holds %d DICOM series; using the largest, SeriesInstanceUID %s (%d slices). Others: %s. "
        "Pass series_uid to choose another.",
        path, len(groups), uid or "<no UID>", sum(i.frames for i in chosen), others,
    )
    return chosen


def _rescale(dataset: Any, frame: Optional[int] = None) -> tuple[float, float]:
    """(slope, intercept): per-frame or shared functional groups, then top level, then RT dose grid scaling."""
    groups = []
    if frame is not None:
        try:
            groups.append(dataset.PerFrameFunctionalGroupsSequence[frame])
        except Exception:
            pass
    try:
        groups.append(dataset.SharedFunctionalGroupsSequence[0])
    except Exception:
        pass
    for group in groups:
        try:
            item = group.PixelValueTransformationSequence[0]
            return float(item.RescaleSlope), float(item.RescaleIntercept)
        except Exception:
            continue
    slope = get_value(dataset, "RescaleSlope")
    if slope is None:
        slope = get_value(dataset, "DoseGridScaling", 1.0)
    try:
        return float(slope), float(get_value(dataset, "RescaleIntercept", 0.0))
    except (TypeError, ValueError):
        return 1.0, 0.0


def _pixel_spacing(dataset: Any) -> np.ndarray:
    value = get_value(dataset, "PixelSpacing")
    if value is None:
        try:
            value = dataset.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        except Exception:
            value = None
    spacing = parse_floats(value, 2) if value is not None else None
    return spacing if spacing is not None and np.all(spacing > 0) else np.ones(2)


def _frame_geometry(dataset: Any, frames: int) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(positions (frames, 3), orientation (6,)) of a multi-frame file, or Nones where absent."""
    orientation = parse_floats(get_value(dataset, "ImageOrientationPatient"), 6)
    if orientation is None:
        try:
            orientation = parse_floats(
                dataset.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient, 6
            )
        except Exception:
            orientation = None
    positions = None
    try:
        per_frame = dataset.PerFrameFunctionalGroupsSequence
        found = [parse_floats(per_frame[i].PlanePositionSequence[0].ImagePositionPatient, 3) for i in range(frames)]
        if all(p is not None for p in found):
            positions = np.stack(found)  # (frames, 3)
        if orientation is None:
            orientation = parse_floats(per_frame[0].PlaneOrientationSequence[0].ImageOrientationPatient, 6)
    except Exception:
        positions = None
    if positions is None and "GridFrameOffsetVector" in dataset:  # RT dose: offsets along the normal
        origin = parse_floats(get_value(dataset, "ImagePositionPatient"), 3)
        offsets = parse_floats(get_value(dataset, "GridFrameOffsetVector"), frames)
        if origin is not None and offsets is not None and orientation is not None:
            normal = np.cross(orientation[:3], orientation[3:])
            positions = origin[None, :] + offsets[:, None] * normal[None, :]  # (frames, 3)
    return positions, orientation


def _sort_order(
    positions: Optional[np.ndarray], orientation: Optional[np.ndarray], numbers: list[int], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """(order, distances along the normal in sorted order) of slices; duplicates raise."""
    count = len(numbers)
    if positions is None or orientation is None:
        order = np.argsort(np.asarray(numbers), kind="stable")
        return order, np.arange(count, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    along = positions @ normal  # (slices,)
    order = np.lexsort((np.asarray(numbers), along))
    distances = along[order]
    gaps = np.diff(distances)
    if count > 1 and np.any(gaps < POSITION_TOLERANCE_MM):
        duplicates = int(np.sum(gaps < POSITION_TOLERANCE_MM))
        raise MediaError(
            f"Inconsistent {name}: {duplicates} slice(s) share a position with another slice "
            "(repeated acquisitions, several phases, or duplicated files). Remove the duplicates, or split the series "
            "and pass one."
        )
    return order, distances


def _affine(
    orientation: Optional[np.ndarray], spacing: np.ndarray, first: Optional[np.ndarray], last: Optional[np.ndarray],
    count: int, thickness: float,
) -> np.ndarray:
    """Voxel (row, column, slice) -> RAS+ mm, from LPS patient geometry."""
    if orientation is None or first is None:
        return np.diag([spacing[0], spacing[1], thickness, 1.0])
    along_row, along_column = orientation[:3], orientation[3:]  # column index and row index directions
    normal = np.cross(along_row, along_column)
    step = (last - first) / (count - 1) if count > 1 and last is not None else normal * thickness
    lps = np.eye(4)
    lps[:3, 0] = along_column * spacing[0]  # row index -> next row (PixelSpacing[0] = row spacing)
    lps[:3, 1] = along_row * spacing[1]  # column index -> next column
    lps[:3, 2] = step
    lps[:3, 3] = first
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS


def _check_grey(instance: _Instance, name: str) -> None:
    if instance.samples != 1:
        raise MediaError(
            f"{name} holds colour images ({instance.samples} samples per pixel); a volume needs grey slices. "
            "Pass colour DICOM files as image items."
        )


def _multiframe_volume(instance: _Instance, path: Path) -> Volume:
    _check_grey(instance, instance.name)
    dataset = read_dataset(instance.source, instance.name)
    pixels = decode_pixels(dataset, instance.name)
    frames = instance.frames
    if pixels.ndim == 2:
        pixels = pixels[None]  # (1, rows, cols)
    if pixels.ndim != 3 or pixels.shape[0] != frames:
        raise MediaError(f"{instance.name}: pixel data of shape {pixels.shape} does not match {frames} frames.")
    positions, orientation = _frame_geometry(dataset, frames)
    order, distances = _sort_order(positions, orientation, list(range(frames)), f"DICOM file {instance.name}")
    data = np.empty((instance.rows, instance.columns, frames), dtype=np.float32)  # (rows, cols, slices)
    for k, frame in enumerate(order):
        slope, intercept = _rescale(dataset, int(frame))
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, reported below
            data[:, :, k] = pixels[frame].astype(np.float64) * slope + intercept
    _check_rescaled(data, f"DICOM file {instance.name}")
    spacing = _pixel_spacing(dataset)
    thickness = float(get_value(dataset, "SliceThickness", 1.0) or 1.0)
    first = positions[order[0]] if positions is not None else None
    last = positions[order[-1]] if positions is not None else None
    if positions is None:
        distances = distances * thickness
    return _volume(ArrayVoxels(data), orientation, spacing, first, last, thickness, distances,
                   f"DICOM file {instance.name}")


def _check_rescaled(values: np.ndarray, source: str) -> None:
    if not np.all(np.isfinite(values)):
        raise MediaError(f"{source} has NaN or infinite values after rescaling. Check its rescale slope/intercept.")


def _volume(
    voxels: Voxels, orientation: Optional[np.ndarray], spacing: np.ndarray, first: Optional[np.ndarray],
    last: Optional[np.ndarray], thickness: float, distances: np.ndarray, source: str,
) -> Volume:
    rows, columns, count = voxels.shape
    affine = _affine(orientation, spacing, first, last, count, thickness)
    positions = (
        np.arange(rows, dtype=np.float64) * spacing[0],
        np.arange(columns, dtype=np.float64) * spacing[1],
        np.abs(distances - distances[0]),
    )
    return Volume(voxels, affine, positions, source)


class SeriesVoxels(Voxels):
    """The HU voxels `(rows, columns, slices)` of a series of single-frame files sorted along the normal: a plane
    along the slice axis decodes one file; a plane along another axis needs every file (decoded once, kept)."""

    def __init__(self, instances: list[_Instance], rows: int, columns: int, label: str) -> None:
        self.instances, self.label = instances, label
        self.shape = (rows, columns, len(instances))
        self.dtype = np.dtype(np.float32)
        self._whole: Optional[np.ndarray] = None

    def _slice(self, k: int) -> np.ndarray:  # (rows, columns) float32 HU
        instance = self.instances[k]
        dataset = read_dataset(instance.source, instance.name)
        pixels = decode_pixels(dataset, instance.name)
        if pixels.shape != self.shape[:2]:
            raise MediaError(f"Inconsistent {self.label}: {instance.name} decodes to shape {pixels.shape}.")
        slope, intercept = _rescale(dataset)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, reported below
            values = (pixels.astype(np.float64) * slope + intercept).astype(np.float32)
        _check_rescaled(values, self.label)
        return values

    def _read(self, axis: int, indices: Sequence[int]) -> list[np.ndarray]:
        if axis == 2:
            return [self._slice(k) for k in indices]
        if self._whole is None:
            self._whole = np.stack([self._slice(k) for k in range(self.shape[2])], axis=2)  # (rows, cols, slices)
        return [self._whole[plane_index(axis, i)] for i in indices]


def read_series(path: PathLike, series_uid: Optional[str] = None) -> Volume:
    """A DICOM series (folder, zip, one file, or one multi-frame file) as a HU `Volume` (module docstring)."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"DICOM input {path} does not exist. Check the path.")
    instances = _choose_series(_collect(path), series_uid, path)
    label = f"DICOM series in {path}"
    multi = [i for i in instances if i.frames > 1]
    if multi:
        if len(instances) > 1:
            raise MediaError(
                f"{label} mixes a multi-frame file with {len(instances) - 1} other file(s). Pass the multi-frame file "
                "on its own."
            )
        return _multiframe_volume(multi[0], path)
    sizes = {(i.rows, i.columns) for i in instances}
    if len(sizes) > 1:
        raise MediaError(
            f"Inconsistent {label}: slices of different sizes {sorted(sizes)} (rows, columns). The folder mixes "
            "series or holds localisers; pass one series (series_uid) or remove the odd files."
        )
    for instance in instances:
        _check_grey(instance, instance.name)
    total = sum(i.rows * i.columns for i in instances)
    if total > limits.MAX_VOXELS:
        raise MediaError(
            f"{label} holds {total:,} voxels, more than the limit of {limits.MAX_VOXELS:,} (the per-item memory "
            "budget; decompression bomb guard). Pass fewer slices."
        )
    orientations = [i.orientation for i in instances]
    have_geometry = all(o is not None for o in orientations) and all(i.position is not None for i in instances)
    orientation = orientations[0] if have_geometry else None
    if have_geometry and any(np.abs(o - orientation).max() > 1e-3 for o in orientations):
        raise MediaError(
            f"Inconsistent {label}: the slices have different orientations (ImageOrientationPatient). Pass one series."
        )
    positions = np.stack([i.position for i in instances]) if have_geometry else None  # (slices, 3)
    order, distances = _sort_order(positions, orientation, [i.instance_number for i in instances], label)

    rows, columns = sizes.pop()
    ordered = [instances[int(index)] for index in order]
    header = read_dataset(ordered[0].source, ordered[0].name, header_only=True)  # spacing of the first slice
    spacing = _pixel_spacing(header)
    try:
        thickness = float(get_value(header, "SliceThickness", 1.0)) or 1.0
    except (TypeError, ValueError):
        thickness = 1.0
    first = positions[order[0]] if positions is not None else None
    last = positions[order[-1]] if positions is not None else None
    if positions is None:
        distances = distances * thickness
    return _volume(SeriesVoxels(ordered, rows, columns, label), orientation, spacing, first, last, thickness,
                   distances, label)

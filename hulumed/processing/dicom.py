"""DICOM files: detection, safe reading, pixel decoding, and one 2-D file -> an image.

In:  a path. pydicom (the `dicom` extra: `pip install hulumed[dicom]`) is imported only when a DICOM input
     arrives. Compressed transfer syntaxes decode when pydicom has a plugin for them: RLE and deflate always,
     JPEG baseline / JPEG 2000 through Pillow, JPEG-LS / lossless JPEG with pylibjpeg or pyjpegls installed.
Out: `load_dicom_image` -> an RGB `PIL.Image.Image` (so a DICOM X-ray given by path is handled like a PNG given
     by path, including upstream's PIL size swap). Series (folders, zips, multi-frame files) are assembled into
     volumes by `volume/dicom_series.py` with the readers of this module.

Rules:
- 2-D image: pixel data -> modality LUT (rescale slope/intercept) -> VOI: an explicit `window` if given, else
  the header's first WindowCenter/WindowWidth (DICOM PS3.3 C.11.2.1.2 linear / linear exact / sigmoid), else
  a VOI LUT sequence, else min-max -> [0, 255] rounded; MONOCHROME1 is inverted; colour (RGB, YBR, palette)
  images are returned in RGB. A multi-frame file is not an image: pass it as a `3d` item.
- Patient data never appears in messages or logs: errors name the file and the problem only, and any text
  coming from pydicom is scrubbed of the dataset's patient/study identifiers.
- Limits against corrupt headers and bombs (`limits.py`): `MAX_VOXELS` decoded values per file (and per
  series), `MAX_FRAME_PIXELS` per frame, both checked on the header before decoding; a Deflated-syntax file is
  inflated once in blocks, counting, and refused above `MAX_DEFLATED_DICOM_BYTES` before pydicom inflates it; data
  that starts with a zero tag (e.g. all zeros, which pydicom would parse as millions of empty elements) is
  refused as not DICOM at once.

Every failure is a `MediaError` saying what is wrong and what to do.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image

from hulumed.errors import MediaError
from hulumed.processing import limits, safe_files
from hulumed.processing.windowing import WindowSpec, resolve_window, windowed_rgb

PathLike = Union[str, os.PathLike]

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")
DEFLATED_SYNTAX = b"1.2.840.10008.1.2.1.99"

# identifying attributes whose values are scrubbed from any text that leaves this module
_PRIVATE_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex", "PatientAge",
    "PatientAddress", "PatientTelephoneNumbers", "OtherPatientIDs", "OtherPatientNames", "PatientMotherBirthName",
    "MedicalRecordLocator", "IssuerOfPatientID", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate",
    "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "AccessionNumber", "StudyID",
    "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "InstitutionName", "InstitutionAddress",
    "StationName", "DeviceSerialNumber",
)
_DATE_LIKE = re.compile(r"(19|20)\d{6}")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]")
_MODALITY = re.compile(r"[A-Z]{2,8}")


# ----------------------------------------------------------------------------------------- detection


def sniff_dicom(path: PathLike) -> bool:
    """A DICOM Part-10 file ("DICM" after the 128-byte preamble), or a file with a DICOM extension."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as reader:
            head = reader.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def sniff_zip(path: PathLike) -> bool:
    """A zip archive (a zipped DICOM series), by its signature."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as reader:
            return reader.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    except OSError:
        return False


# ----------------------------------------------------------------------------------------- reading


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError as err:
        raise MediaError(
            "Reading DICOM needs pydicom: pip install 'hulumed[dicom]' (or pip install pydicom). "
            "Alternatively convert the series to NIfTI (e.g. with dcm2niix)."
        ) from err
    return pydicom


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence pydicom's warnings and log records (they can quote element values) while reading."""
    library_logger = logging.getLogger("pydicom")
    level = library_logger.level
    library_logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        library_logger.setLevel(level)


def scrub(text: str, dataset: Any = None) -> str:
    """Library error text made safe to show: quoted values, non-printable runs, date-like digits and the
    dataset's identifying values are removed (a corrupt file can make any element swallow patient data)."""
    text = _QUOTED.sub("'…'", text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    if dataset is not None:
        for keyword in _PRIVATE_KEYWORDS:
            try:
                value = dataset.get(keyword)
            except Exception:
                continue
            for piece in {str(value), *str(value).split("^")} if value not in (None, "") else ():
                if len(piece) >= 2:
                    text = text.replace(piece, "<removed>")
    text = _DATE_LIKE.sub("<removed>", text)
    return text if len(text) <= 300 else text[:297] + "..."


def _modality(dataset: Any) -> str:
    """The Modality code when it looks like one (CT, MR, RTDOSE...), else "object": never echo other text."""
    value = str(get_value(dataset, "Modality", "")).strip()
    return value if _MODALITY.fullmatch(value) else "object"


def _dataset_start(head: bytes) -> int:
    """Offset of the first data element: after the preamble and the file meta group (explicit VR little endian)."""
    if head[128:132] != b"DICM":
        return 0
    offset = 132
    while offset + 8 <= len(head) and head[offset:offset + 2] == b"\x02\x00":  # group 0002 elements
        vr = head[offset + 4:offset + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = int.from_bytes(head[offset + 8:offset + 12], "little")
            offset += 12 + length
        else:
            length = int.from_bytes(head[offset + 6:offset + 8], "little")
            offset += 8 + length
    return offset


def _precheck(source: Union[Path, bytes], name: str) -> None:
    """Refuse, without parsing, data whose first element has tag (0000,0000) -- zeros, which pydicom's forced read
    would walk as millions of empty elements -- and Deflated-syntax data that inflates past
    `limits.MAX_DEFLATED_DICOM_BYTES`."""
    import zlib

    if isinstance(source, bytes):
        stream: Any = io.BytesIO(source)
    else:
        stream = safe_files.open_regular(source)
    with stream:
        head = stream.read(1 << 16)
        start = _dataset_start(head)
        if head[start:start + 4] == b"\x00\x00\x00\x00" and len(head) >= start + 8:
            raise MediaError(f"Cannot read {name} as DICOM: no DICOM attributes were found (the data starts with "
                             "zeros). The file is corrupt, truncated or not DICOM.")
        if DEFLATED_SYNTAX not in head[132:start]:
            return
        stream.seek(start)
        inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
        try:
            while True:
                block = inflater.unconsumed_tail or stream.read(1 << 16)
                if not block:
                    return
                total += len(inflater.decompress(block, 1 << 20))
                if total > limits.MAX_DEFLATED_DICOM_BYTES:
                    raise MediaError(
                        f"{name} is Deflated DICOM that inflates to more than {limits.MAX_DEFLATED_DICOM_BYTES:,} "
                        "bytes, over the per-item memory budget (decompression bomb guard). Re-export it uncompressed."
                    )
                if inflater.eof:
                    return
        except zlib.error as err:
            raise MediaError(f"Cannot read {name}: its deflated data is corrupt ({err}).") from err


def read_dataset(source: Union[Path, bytes], name: str, header_only: bool = False) -> Any:
    """pydicom `dcmread` (force: files without preamble are accepted), warnings silenced, errors typed."""
    pydicom = _pydicom()
    try:
        empty = len(source) == 0 if isinstance(source, bytes) else source.stat().st_size == 0
    except OSError as err:
        raise MediaError(f"Cannot read {name}: {err}. Check that the file exists and is readable.") from err
    if empty:
        raise MediaError(f"{name} is an empty file (0 bytes). Copy or export it again.")
    _precheck(source, name)
    try:
        with _quiet():
            fp = io.BytesIO(source) if isinstance(source, bytes) else str(source)
            dataset = pydicom.dcmread(fp, force=True, stop_before_pixels=header_only)
            dataset.get("Rows")  # force-parsed garbage often fails on first access
    except Exception as err:
        raise MediaError(
            f"Cannot read {name} as DICOM: {type(err).__name__}: {scrub(str(err))}. The file is corrupt, "
            "truncated or not DICOM."
        ) from err
    try:
        recognised = any(k in dataset for k in ("SOPClassUID", "Rows", "PixelData", "Modality", "SeriesInstanceUID"))
    except Exception:
        recognised = False
    if not recognised:
        raise MediaError(
            f"Cannot read {name} as DICOM: no DICOM attributes were found. The file is corrupt, truncated or not "
            "DICOM."
        )
    return dataset


def get_value(dataset: Any, keyword: str, default: Any = None) -> Any:
    """An attribute value, or `default` when it is missing or unreadable (never raises)."""
    try:
        value = dataset.get(keyword, default)
    except Exception:
        return default
    return default if value is None or value == "" else value


def get_int(dataset: Any, keyword: str, default: int = 0) -> int:
    try:
        return int(get_value(dataset, keyword, default))
    except (TypeError, ValueError):
        return default


def parse_floats(value: Any, count: int) -> Optional[np.ndarray]:
    """A multi-valued numeric attribute as `count` finite floats, or None."""
    try:
        array = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (count,) and np.all(np.isfinite(array)) else None


def check_pixel_count(dataset: Any, name: str) -> int:
    rows, columns = get_int(dataset, "Rows"), get_int(dataset, "Columns")
    frames = max(get_int(dataset, "NumberOfFrames", 1), 1)
    samples = max(get_int(dataset, "SamplesPerPixel", 1), 1)
    if rows <= 0 or columns <= 0:
        raise MediaError(f"{name} has an empty image (Rows {rows}, Columns {columns}). The file holds no pixels.")
    if rows * columns > limits.MAX_FRAME_PIXELS:
        raise MediaError(
            f"{name} declares frames of {rows} x {columns} pixels, more than the limit of {limits.MAX_FRAME_PIXELS:,} "
            "(decompression bomb guard). The header is corrupt or the image is too large; raise "
            "hulumed.processing.limits.MAX_FRAME_PIXELS if it is genuine."
        )
    count = rows * columns * frames * samples
    if count > limits.MAX_VOXELS:
        raise MediaError(
            f"{name} declares {count:,} pixel values ({frames} x {rows} x {columns} x {samples}), more than the limit "
            f"of {limits.MAX_VOXELS:,} (decompression bomb guard). The header is corrupt or the image is too large; "
            "raise hulumed.processing.limits.MAX_VOXELS if it is genuine."
        )
    return count


def decode_pixels(dataset: Any, name: str) -> np.ndarray:
    """Decoded pixel data: (rows, cols[, 3]) or (frames, rows, cols[, 3]); colour converted to RGB by pydicom."""
    if "PixelData" not in dataset and "FloatPixelData" not in dataset and "DoubleFloatPixelData" not in dataset:
        raise MediaError(
            f"{name} has no pixel data (it is a DICOM {_modality(dataset)} without an image, "
            "e.g. a report or structure set). Pass a DICOM image."
        )
    check_pixel_count(dataset, name)
    try:
        with _quiet():
            array = dataset.pixel_array
    except Exception as err:
        try:
            syntax = dataset.file_meta.TransferSyntaxUID.name
        except Exception:
            syntax = "unknown"
        raise MediaError(
            f"Cannot decode the pixel data of {name} (transfer syntax {syntax}): {type(err).__name__}: "
            f"{scrub(str(err), dataset)}. If the file is intact, install a decoder (pip install pylibjpeg "
            "pylibjpeg-libjpeg pylibjpeg-openjpeg, or pyjpegls for JPEG-LS) or convert it to an uncompressed "
            "transfer syntax."
        ) from err
    array = np.asarray(array)
    if array.size == 0:
        raise MediaError(f"{name} decodes to an empty image. The file holds no pixels.")
    return array


# ----------------------------------------------------------------------------------------- 2-D images


def _voi_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 VOI windowing onto [0, 255] (float)."""
    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0) * 255.0
    width = max(width, 1.0)
    if width == 1.0:
        return np.where(values <= center - 0.5, 0.0, 255.0)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0) * 255.0


def _first_number(value: Any) -> Optional[float]:
    """The first value of a (possibly multi-valued) numeric attribute, or None."""
    if value is None:
        return None
    try:
        number = float(value) if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") else float(value[0])
    except (TypeError, ValueError, IndexError):
        return None
    return number if np.isfinite(number) else None


def _grey_to_uint8(values: np.ndarray, dataset: Any, raw: np.ndarray, window: Optional[WindowSpec]) -> np.ndarray:
    """Modality values of a grey image -> (H, W) or (3, H, W) uint8 following the module rules."""
    if window is not None:
        windows = resolve_window(window)
        out = windowed_rgb(values, windows)  # (3, H, W)
        return out[0] if len(windows) == 1 else out
    center = _first_number(get_value(dataset, "WindowCenter"))
    width = _first_number(get_value(dataset, "WindowWidth"))
    if center is not None and width is not None and width > 0:
        function = str(get_value(dataset, "VOILUTFunction", "LINEAR")).strip().upper()
        return np.rint(_voi_window(values, center, width, function)).astype(np.uint8)
    if "VOILUTSequence" in dataset:
        from pydicom.pixels import apply_voi_lut

        try:
            values = np.asarray(apply_voi_lut(raw, dataset, prefer_lut=True), dtype=np.float64)
        except Exception as err:
            raise MediaError(f"The VOI LUT of the image is invalid: {type(err).__name__}.") from err
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - low) / (high - low) * 255.0).astype(np.uint8)


def _colour_to_uint8(array: np.ndarray, dataset: Any) -> np.ndarray:
    """RGB (or palette) pixels -> (H, W, 3) uint8."""
    if str(get_value(dataset, "PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        array = apply_color_lut(array, dataset)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        bits = max(get_int(dataset, "BitsStored", 8), 8)
        top = float(2 ** min(bits, 16) - 1) if array.max() > 255 else 255.0
        array = np.rint(np.clip(array.astype(np.float64), 0, top) / top * 255.0).astype(np.uint8)
    return array


def load_dicom_image(path: PathLike, window: Optional[WindowSpec] = None) -> Image.Image:
    """One 2-D DICOM image as an RGB PIL image (module docstring); `window` overrides the header's VOI."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"DICOM file {path} does not exist. Check the path.")
    dataset = read_dataset(path, str(path))
    frames = get_int(dataset, "NumberOfFrames", 1)
    if frames > 1:
        if get_int(dataset, "SamplesPerPixel", 1) > 1:
            raise MediaError(
                f"{path} is a colour multi-frame DICOM (a cine clip of {frames} frames), not one image. Export its "
                "frames (e.g. to a folder of PNGs) and pass them as a video item."
            )
        raise MediaError(f"{path} is a multi-frame DICOM ({frames} frames), not one image. Pass it as a 3d item.")
    array = decode_pixels(dataset, str(path))
    photometric = str(get_value(dataset, "PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    try:
        if array.ndim == 3 and array.shape[-1] == 3:
            return Image.fromarray(_colour_to_uint8(array, dataset), mode="RGB")
        if photometric == "PALETTE COLOR":
            return Image.fromarray(_colour_to_uint8(array, dataset), mode="RGB")
        if array.ndim != 2:
            raise MediaError(f"{path} holds pixel data of shape {array.shape}; a 2-D image was expected.")
        from pydicom.pixels import apply_modality_lut

        with _quiet():
            values = np.asarray(apply_modality_lut(array, dataset), dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise MediaError(f"{path} has NaN or infinite pixel values after rescaling. Check the rescale slope.")
        grey = _grey_to_uint8(values, dataset, array, window)
        if photometric == "MONOCHROME1":
            grey = 255 - grey  # MONOCHROME1: the lowest value is displayed white
        if grey.ndim == 3:
            return Image.fromarray(np.ascontiguousarray(grey.transpose(1, 2, 0)), mode="RGB")  # (H, W, 3)
        return Image.fromarray(grey, mode="L").convert("RGB")
    except MediaError:
        raise
    except Exception as err:
        raise MediaError(
            f"Cannot convert the pixels of {path} to an image: {type(err).__name__}: {scrub(str(err), dataset)}."
        ) from err

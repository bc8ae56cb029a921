"""Still-image loading, with upstream Hulu-Med's input-type rules.

In:  a file path, a folder path, a list of paths, or an in-memory image (PIL or numpy).
Out: a list of images, typed the way upstream types them, because the type changes the resize later on:

- a path (or each file of a folder, in sorted order, or each path of a list) -> `PIL.Image.Image` in RGB. The
  image processor reads a PIL image's `.size` as (height, width) -- upstream's width/height swap -- so these
  images are resized to a transposed aspect ratio unless `swap_pil_size=False`.
- an image handed over in memory (PIL, or a list of PIL) -> numpy `(H, W, 3)` uint8 RGB, which upstream's
  `load_images` does too (`np.array(pil)`), so no swap applies to them. numpy input (an extension: upstream has
  no numpy branch) is normalised to the same `(H, W, 3)` uint8 layout.

A DICOM file (recognised by content: "DICM" after the preamble, or a .dcm-like extension) is an extension:
upstream has no DICOM. It is read by `dicom.load_dicom_image` (modality LUT, VOI window, MONOCHROME1 inversion)
and returned as an RGB PIL image like any other path, so the same size rules apply as for a PNG export of it.

Every failure (missing file, unreadable or truncated image, decompression bomb, empty folder, bad array) is a
`MediaError`. Reference: `HulumedProcessor.load_images` of the HF-Version remote code.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from hulumed.errors import MediaError

PathLike = Union[str, os.PathLike]
LoadedImage = Union[Image.Image, np.ndarray]
ImageSource = Union[PathLike, Image.Image, np.ndarray, Sequence[Union[PathLike, Image.Image, np.ndarray]]]


def list_folder(folder: PathLike) -> list[Path]:
    """Entries of `folder` in `sorted(os.listdir())` order, as upstream lists image and frame folders.

    Every entry must be a regular file (`safe_files.folder_files`): a pipe or device among the frames would
    block the read, so it is refused.
    """
    from hulumed.processing.safe_files import folder_files

    entries = folder_files(folder, recursive=False)
    if not entries:
        raise MediaError(
            f"Folder {folder} is empty. Put the image files (frames or slices) in it, or pass another path."
        )
    return entries


def declared_pixels(path: PathLike) -> int | None:
    """Width x height a PIL-readable image (or GIF canvas) declares in its header, without decoding it; None for
    a file PIL does not read (DICOM, NIfTI, video: their loaders check their own limits). PIL's own bomb limit
    is reported as a ``MediaError``."""
    from PIL import UnidentifiedImageError

    from hulumed.processing import safe_files

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the caller compares with its limit
            with safe_files.open_regular(path) as stream, Image.open(stream) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise MediaError(f"{Path(path).name} is over PIL's decompression-bomb limit of pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, MediaError):
        return None
    return int(width) * int(height)


def check_pixels(path: PathLike, max_pixels: int) -> None:
    """``MediaError`` when the image at ``path`` declares more than ``max_pixels`` (header only)."""
    pixels = declared_pixels(path)
    if pixels is not None and pixels > max_pixels:
        raise MediaError(f"an image of {pixels:,} pixels is over the limit of {max_pixels:,}; pass a smaller image")


def load_image(path: PathLike) -> Image.Image:
    """Open one image file (PIL formats, or DICOM) fully and return it as an RGB `PIL.Image.Image`."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"Image file {path} does not exist. Check the path.")
    if not path.is_file():
        raise MediaError(f"{path} is not a file. Pass the path of an image file (PNG, JPEG, DICOM, ...).")
    if path.stat().st_size == 0:
        raise MediaError(f"Image file {path} is empty (0 bytes). Copy or export it again.")
    from hulumed.processing.dicom import load_dicom_image, sniff_dicom

    if sniff_dicom(path):
        try:
            return load_dicom_image(path)
        except MediaError:
            raise
        except Exception as err:  # never echo library text for DICOM (it may quote patient data)
            raise MediaError(f"Cannot read DICOM image {path}: {type(err).__name__}. The file may be corrupt.") from err
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": real failures are raised, not warned
            with Image.open(path) as image:
                if image.width <= 0 or image.height <= 0:
                    raise MediaError(f"Image {path} has zero size ({image.width} x {image.height}).")
                return image.convert("RGB")  # convert() decodes all pixels, so truncated files fail here
    except MediaError:
        raise
    except Image.DecompressionBombError as err:
        raise MediaError(
            f"Image {path} is too large: {err} It may be a decompression bomb; if it is genuine, raise "
            "PIL.Image.MAX_IMAGE_PIXELS before loading it."
        ) from err
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, struct.error, MemoryError...
        raise MediaError(
            f"Cannot read image {path}: {type(err).__name__}: {err}. The file is not an image PIL can decode, or it "
            "is corrupt/truncated."
        ) from err


def to_rgb_array(image: LoadedImage) -> np.ndarray:
    """An in-memory image as a numpy `(H, W, 3)` uint8 RGB array (upstream's `np.array(pil)` for RGB PILs).

    PIL images of other modes are converted to RGB first; numpy arrays may be `(H, W)` grey, `(H, W, 1|3)`
    or `(1|3, H, W)` with integer values in [0, 255].
    """
    if isinstance(image, Image.Image):
        try:
            return np.array(image.convert("RGB"))
        except Exception as err:
            raise MediaError(f"Cannot convert the PIL image to RGB: {err}.") from err
    if not isinstance(image, np.ndarray):
        try:  # torch tensors and other array-likes
            image = np.asarray(image)
        except Exception as err:
            raise MediaError(
                f"Unsupported image object of type {type(image).__name__}; pass a PIL image or a numpy array."
            ) from err
    array = image
    if array.ndim == 2:
        array = array[:, :, None]  # (H, W, 1)
    if array.ndim != 3:
        raise MediaError(f"An image array must be (H, W), (H, W, C) or (C, H, W); got shape {tuple(image.shape)}.")
    if array.shape[-1] not in (1, 3) and array.shape[0] in (1, 3):
        array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if array.shape[-1] not in (1, 3):
        raise MediaError(f"An image array must have 1 or 3 channels; got shape {tuple(image.shape)}. Drop alpha first.")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)  # grey -> (H, W, 3)
    if array.size == 0:
        raise MediaError(f"Got an empty image array of shape {tuple(image.shape)}.")
    if array.dtype != np.uint8:
        if not (np.issubdtype(array.dtype, np.number) and np.all(np.mod(array, 1) == 0)
                and array.min() >= 0 and array.max() <= 255):
            raise MediaError(
                f"Image arrays must hold integer values in [0, 255] (uint8); got dtype {array.dtype}. "
                "Scale and cast the array to uint8 first."
            )
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


def load_images(source: ImageSource) -> list[LoadedImage]:
    """Load images following upstream's `load_images` rules (see the module docstring).

    A file path gives one PIL image; a folder gives all its files (sorted) as PIL images; a list of paths gives
    PIL images; a PIL image, a numpy array, or a list of them gives numpy `(H, W, 3)` arrays.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return [load_image(entry) for entry in list_folder(path)]
        return [load_image(path)]
    if isinstance(source, (Image.Image, np.ndarray)):
        return [to_rgb_array(source)]
    if isinstance(source, (list, tuple)):
        if not source:
            raise MediaError("Got an empty list of images. Pass at least one image path or image.")
        if all(isinstance(item, (str, os.PathLike)) for item in source):
            return [load_image(item) for item in source]
        if all(isinstance(item, (Image.Image, np.ndarray)) for item in source):
            return [to_rgb_array(item) for item in source]
        raise MediaError("A list of images must hold only paths, or only PIL images / numpy arrays, not a mix.")
    raise MediaError(
        f"Unsupported image source of type {type(source).__name__}. "
        "Pass a path, a folder, a PIL image or a numpy array."
    )

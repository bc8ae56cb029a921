"""The memory budget of one media item, and the size limits that follow from it.

Every loader checks the sizes a file *declares* (NIfTI header, DICOM Rows/Columns/Frames, GIF canvas, image
header, video stream size, zip directory) against these numbers before it reads or inflates anything, and
reads compressed data (gzip NIfTI of unusual names, zip members, Deflated DICOM) in blocks with a cap
(`safe_files.read_capped`), so a small file cannot make a request allocate gigabytes. A refusal is a
`MediaError` naming the limit; the server answers 400.

Budget: the largest working array of one item is `MAX_VOXELS` float64 values (1 GiB; upstream converts
volumes to float64 with `get_fdata`). The loaders hold at most about three arrays of that order at once (raw
data, float64 copy, windowed copy), media items of a request are read one after another, and what is kept of
each (uint8 slices / frames) is far smaller; docs/security.md gives the measured peaks. The loaders read these
names at each call, so raising one here (e.g. `hulumed.processing.limits.MAX_VOXELS = 2**28`) accepts larger
genuine inputs everywhere.
"""

from __future__ import annotations

ITEM_BUDGET_BYTES = 2**30  # the float64 working copy of one item's voxels / pixel values
MAX_VOXELS = ITEM_BUDGET_BYTES // 8  # 2**27 voxels, e.g. 512 x 512 x 512
MAX_FRAME_PIXELS = 2**26  # one video frame, GIF canvas, frame-folder image or volume slice (8192 x 8192)
MAX_INFLATED_BYTES = 2**30  # what one zip series may inflate to (its members are held in memory)
MAX_DEFLATED_DICOM_BYTES = 2**28  # the inflated dataset of one Deflated-syntax DICOM file

# What one request (server) or one attachment (demo) may bring: the edges' defaults, one place for both.
DEFAULT_MAX_PIXELS = 40_000_000  # one still image's width x height (a 176-megapixel PNG is 21 KB on disk)
DEFAULT_MAX_MEDIA_BYTES = 512 * 2**20  # one media file on disk: an ordinary CT / MR study fits

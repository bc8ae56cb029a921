"""Decompression and declared-size bombs: refused with a `MediaError`, quickly, and without the memory they claim.

The small bombs live in the corpus (tests/fixtures/bad, checked by test_bad_media_corpus); the large ones (a 1 MB
gzip NIfTI inflating to 1 GiB, a Deflated DICOM of 20000 x 20000, a zip with a 64 MiB all-zero member, a frame
folder holding a 12000 x 12000 PNG) are written by make_corpus.write_large_bombs into a temporary folder. Peak
memory is measured in a fresh subprocess (ru_maxrss), against a generous bound; benchmarks/media_bombs.py prints
the figures per file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hulumed import MediaError
from hulumed.processing import load_video, load_volume

pytest.importorskip("pydicom")

BAD = Path(__file__).resolve().parent.parent / "fixtures" / "bad"
sys.path.insert(0, str(BAD))
import make_corpus  # noqa: E402

sys.path.remove(str(BAD))

LOADERS = {"volume": load_volume, "video": load_video}
SMALL_BOMBS = ("nii_declares_8gb.nii.gz", "nii_huge_slice.nii.gz", "vid_gif_huge_canvas.gif", "dcm_huge_frame.dcm",
               "nii_bomb.nii.gz", "dcm_bomb.dcm", "series_bomb.zip", "img_bomb.png")
PEAK_BOUND_MB = 1500  # generous: the imports alone take a few hundred MB; the bombs claim 1 to 8 GB each


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    return make_corpus.write_large_bombs(tmp_path_factory.mktemp("bombs"))


def test_large_bombs_are_small_files(bombs):
    for name, path in bombs.items():
        size = sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size
        assert size < 4 * 2**20, name


@pytest.mark.parametrize("name", sorted(make_corpus.LARGE_BOMBS))
def test_large_bomb_is_refused_quickly(bombs, name):
    loader, pattern = make_corpus.LARGE_BOMBS[name]
    began = time.monotonic()
    with pytest.raises(MediaError) as info:
        LOADERS[loader](bombs[name])
    assert re.search(pattern, str(info.value), re.IGNORECASE), str(info.value)
    assert time.monotonic() - began < 15  # the 64 MiB zero member used to take 30-65 s


def test_the_inflating_nifti_is_genuine(bombs):
    """The 1 GiB NIfTI is complete, not truncated: it is refused for its size, not for missing data."""
    import gzip

    with gzip.open(bombs["nii_inflates_1gb.nii.gz"]) as stream:
        total = 0
        while block := stream.read(1 << 24):
            total += len(block)
    assert total == 352 + 2**30


_PEAK_SCRIPT = """
import json, resource, sys
from hulumed.errors import MediaError
from hulumed.processing import load_image, load_video, load_volume
loaders = {"image": load_image, "video": load_video, "volume": load_volume}

def peak_mb():
    # VmHWM starts afresh at exec; ru_maxrss keeps the pytest parent's peak across fork + exec on Linux
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

peaks = {}
for loader, path in json.loads(sys.argv[1]):
    try:
        loaders[loader](path)
        peaks[path] = "accepted"
    except MediaError:
        peaks[path] = peak_mb()
print(json.dumps(peaks))
"""


def test_peak_memory_of_the_bombs_stays_small(bombs):
    manifest = json.loads((BAD / "manifest.json").read_text())
    cases = [(manifest[name]["loader"], str(BAD / name)) for name in SMALL_BOMBS]
    cases += [(make_corpus.LARGE_BOMBS[name][0], str(path)) for name, path in bombs.items()]
    run = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, json.dumps(cases)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    peaks = json.loads(run.stdout.strip().splitlines()[-1])
    assert "accepted" not in peaks.values(), peaks
    assert max(peaks.values()) < PEAK_BOUND_MB, peaks  # VmHWM is the child's own peak so far: the last is the peak


def test_a_slice_over_the_plane_limit_is_refused_before_reading(tmp_path):
    """9000 x 9000 x 1 is under the voxel limit but one slice is over the plane limit (2^26 pixels)."""
    path = tmp_path / "wide.nii.gz"
    path.write_bytes(make_corpus._nifti_header_shape((9000, 9000, 1), True, make_corpus.np.uint8, extra=1024))
    with pytest.raises(MediaError, match="slices of 81,000,000 pixels"):
        load_volume(path)
    with pytest.raises(MediaError, match="truncated"):  # along axis 0 the slices are small: the data is missing
        load_volume(path, axis=0)

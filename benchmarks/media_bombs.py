"""Peak memory and time of the media loaders on decompression and declared-size bombs.

    python benchmarks/media_bombs.py [--out benchmarks/results/media_bombs.json]

Files: the bombs of the committed corpus (tests/fixtures/bad: headers declaring 8 GB of float64 voxels, a
16384 x 16384 slice, a 12000 x 12000 GIF canvas, a 20000 x 20000 DICOM frame, ...) and the large ones that
tests/fixtures/bad/make_corpus.write_large_bombs writes into a temporary folder (a complete 1 MB gzip NIfTI
inflating to 1 GiB, a Deflated DICOM of 20000 x 20000 zeros, a zip with a 64 MiB all-zero member, a frame folder
holding a 12000 x 12000 PNG). Each file is loaded in a fresh subprocess with its loader (load_image /
load_video / load_volume): the row gives what the file claims, the outcome (the error's first words), the wall
time and the peak RSS growth over the process's level after the imports. Prints a table and writes JSON naming
the CPU (the machine may be shared). With `--genuine-slices N` (default 32) a genuine 512 x 512 x N int16 CT
volume is loaded too (upstream defaults, and with a window clip), giving the peak bytes per voxel that the
per-item budget in docs/security.md is computed from.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu_device  # benchmarks/ is on sys.path when run

from hulumed.processing import limits

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "fixtures" / "bad"
SMALL = {  # corpus file -> what it claims
    "nii_declares_8gb.nii.gz": "1024x1024x1000 float64 in 1 KB",
    "nii_huge_slice.nii.gz": "one 16384x16384 slice",
    "nii_bomb.nii.gz": "4000^3 float32",
    "vid_gif_huge_canvas.gif": "2-frame GIF, 12000x12000 canvas",
    "dcm_huge_frame.dcm": "20000x20000 DICOM frame",
    "dcm_bomb.dcm": "500 x 65535^2 frames",
    "series_bomb.zip": "zip claiming 2 x 4 GiB",
    "img_bomb.png": "60000x60000 PNG header",
}
LARGE = {
    "nii_inflates_1gb.nii.gz": "1 MB gzip -> 1 GiB uint8 (complete)",
    "dcm_deflated_20000.dcm": "Deflated DICOM 20000x20000 u16",
    "series_zero_member.zip": "zip, one 64 MiB zero member",
    "vid_frames_huge_png": "frame folder with a 12000x12000 PNG",
}
_CHILD = """
import json, resource, sys, time
from hulumed.errors import MediaError
from hulumed.processing import load_image, load_video, load_volume

loader, path, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
began = time.perf_counter()
try:
    out = {"image": load_image, "video": load_video, "volume": load_volume}[loader](path, **options)
    outcome = f"accepted ({len(out)} items)"
except MediaError as error:
    outcome = "MediaError: " + str(error).split(path)[-1].strip(" :")[:70]
seconds = time.perf_counter() - began
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "seconds": seconds, "peak_growth_mb": (peak - base) / 1024,
                  "peak_mb": peak / 1024}))
"""




def _measure(loader: str, path: Path, options: dict | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run([sys.executable, "-c", _CHILD, loader, str(path), json.dumps(options or {})],
                         capture_output=True, text=True, timeout=600, env=env)
    if run.returncode != 0:
        return {"outcome": f"crashed (rc {run.returncode})", "seconds": None, "peak_growth_mb": None,
                "peak_mb": None}
    return json.loads(run.stdout.strip().splitlines()[-1])


def _genuine(folder: Path, slices: int) -> list[dict]:
    """A real-sized CT-like volume (int16 HU, gzip NIfTI), loaded with upstream's defaults and with a window
    clip: the peak per voxel, which scales to the limit (`MAX_VOXELS`)."""
    import nibabel
    import numpy as np

    shape = (512, 512, slices)
    hu = (np.add.outer(np.arange(512), np.arange(512))[:, :, None] % 3000 - 1024 + np.arange(slices)).astype(np.int16)
    path = folder / "ct.nii.gz"
    nibabel.save(nibabel.Nifti1Image(hu, np.eye(4)), str(path))
    voxels = int(np.prod(shape))
    rows = []
    for label, options in (("default", {}), ("window clip", {"window_center": 40, "window_width": 400})):
        row = {"file": "ct.nii.gz", "claims": f"genuine {shape} int16, {label}", "bytes": path.stat().st_size,
               "loader": "volume", "voxels": voxels, **_measure("volume", path, options)}
        if row["peak_growth_mb"] is not None:
            row["peak_bytes_per_voxel"] = row["peak_growth_mb"] * 2**20 / voxels
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "media_bombs.json"))
    parser.add_argument("--genuine-slices", type=int, default=32,
                        help="also load a genuine 512 x 512 x N int16 CT volume (0: skip) for the per-voxel cost")
    args = parser.parse_args()
    sys.path.insert(0, str(BAD))
    import make_corpus

    manifest = json.loads((BAD / "manifest.json").read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        large = make_corpus.write_large_bombs(Path(tmp))
        cases = [(name, manifest[name]["loader"], BAD / name, claim) for name, claim in SMALL.items()]
        cases += [(name, make_corpus.LARGE_BOMBS[name][0], large[name], claim) for name, claim in LARGE.items()]
        for name, loader, path, claim in cases:
            size = sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size
            rows.append({"file": name, "claims": claim, "bytes": size, "loader": loader, **_measure(loader, path)})
        if args.genuine_slices > 0:
            rows += _genuine(Path(tmp), args.genuine_slices)
    device = cpu_device()
    print(device)
    print(f"{'file':26} {'claims':38} {'bytes':>9} {'s':>6} {'peak+MB':>8}  outcome")
    for row in rows:
        seconds = f"{row['seconds']:.2f}" if row["seconds"] is not None else "-"
        growth = f"{row['peak_growth_mb']:.0f}" if row["peak_growth_mb"] is not None else "-"
        print(f"{row['file']:26} {row['claims']:38} {row['bytes']:>9} {seconds:>6} {growth:>8}  {row['outcome']}")
        if "peak_bytes_per_voxel" in row:
            print(f"{'':26} -> {row['peak_bytes_per_voxel']:.1f} bytes/voxel; at limits.MAX_VOXELS "
                  f"({limits.MAX_VOXELS:,} voxels) about "
                  f"{row['peak_bytes_per_voxel'] * limits.MAX_VOXELS / 2**30:.1f} GiB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

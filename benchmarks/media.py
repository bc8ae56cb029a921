"""Media loading speed and memory: video frame extraction (seek-only vs decode-everything) and DICOM series -> tensor.

    python benchmarks/media.py [--seconds 60] [--height 720] [--gops 250,30] [--slices 200] [--slice-size 512]

Video: a synthetic clip (`--seconds` long, 16:9 at `--height`, 30 fps, H.264 via PyAV, ultrafast preset, one clip
per keyframe interval in `--gops`; generated into a temporary folder, never committed) is loaded with
`load_video(fps=1, max_frames=M)` for M in `--max-frames`, once with `seek=True` (demux, then decode only up to
each kept frame; the default) and once with `seek=False` (decode every frame first, as upstream's ffmpeg pipe
does). Both return identical frames; the script checks that.
DICOM: a CT series of `--slices` slices of `--slice-size`^2 uint16 pixels (slope 1, intercept -1024) is written
with pydicom, then timed from the folder path to the processor's `pixel_values` tensor (3d item, default
options, `nii_num_slices` = all, the tiny checkpoint's processor), and separately to the HU volume only.

Each measurement runs in a fresh subprocess: time is the minimum wall-clock of `--repeat` calls, memory the
growth of the process's peak RSS over its level just before the first call. Prints a table and writes JSON
(benchmarks/results/media.json unless `--out`), naming the CPU and the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_device, peak_rss_bytes  # benchmarks/ is on sys.path when run

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "fixtures" / "golden"






def make_clip(path: Path, seconds: int, height: int, gop: int, rate: int = 30) -> None:
    import av
    import numpy as np

    width = (height * 16 // 9) // 2 * 2
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.gop_size = gop
    stream.codec_context.options = {"preset": "ultrafast", "keyint_min": str(gop), "sc_threshold": "0"}
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    rows = np.arange(height, dtype=np.float32)[:, None]
    for index in range(seconds * rate):
        shift = index * 4.0
        grey = (ramp + rows * 0.3 + shift) % 256  # (H, W) moving gradient
        image = np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)  # (H, W, 3)
        image[:, :, 0] = (index * 7) % 256
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def make_series(folder: Path, slices: int, size: int) -> None:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 3000, size=(size, size), dtype=np.uint16)
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
        meta.MediaStorageSOPInstanceUID = UID(f"1.2.826.0.1.3680043.8.498.7.{k + 1}")
        meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "CT", "1.2.826.0.1.3680043.8.498.7", k + 1
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, k * 1.25], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.25
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.roll(base, k, axis=0).tobytes()
        ds["PixelData"].VR = "OW"
        ds.save_as(str(folder / f"{(k * 7919) % slices:05d}.dcm"), enforce_file_format=True)  # shuffled names


def worker(task: str, path: str, max_frames: int, repeat: int = 1) -> dict:
    import hashlib

    if task in ("seek", "decode_all"):
        from hulumed.processing import load_video

        base = peak_rss_bytes()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            clip = load_video(path, fps=1, max_frames=max_frames, seek=task == "seek")
            times.append(time.perf_counter() - start)
        seconds = min(times)
        digest = hashlib.sha256(b"".join(f.tobytes() for f in clip.frames)).hexdigest()[:16]
        return {"seconds": seconds, "peak_bytes": peak_rss_bytes() - base, "frames": len(clip.frames),
                "digest": digest}
    if task == "dicom_volume":
        from hulumed.processing import read_volume

        base = peak_rss_bytes()
        start = time.perf_counter()
        volume = read_volume(path)
        return {"seconds": time.perf_counter() - start, "peak_bytes": peak_rss_bytes() - base,
                "shape": list(volume.shape)}
    from hulumed.processing import HulumedProcessor

    processor = HulumedProcessor.from_pretrained(GOLDEN / "tiny-qwen2")
    conversation = [{"role": "user", "content": [{"type": "3d", "3d": {"image_path": path}},
                                                 {"type": "text", "text": "Findings?"}]}]
    base = peak_rss_bytes()
    start = time.perf_counter()
    out = processor(conversation=conversation, return_tensors="pt")
    return {"seconds": time.perf_counter() - start, "peak_bytes": peak_rss_bytes() - base,
            "pixel_values": list(out["pixel_values"].shape), "grid": out["grid_sizes"].tolist()[0]}


def _run_worker(task: str, path: Path, max_frames: int = 0, repeat: int = 1) -> dict:
    command = [sys.executable, __file__, "--worker", task, str(path), str(max_frames), "--repeat", str(repeat)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--gops", default="250,30", help="keyframe intervals in frames (x264's default is 250)")
    parser.add_argument("--max-frames", default="128,16")
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--slice-size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="video loads per point; the minimum time is reported")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "media.json"))
    parser.add_argument("--worker", nargs=3, metavar=("TASK", "PATH", "MAX_FRAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        task, path, max_frames = args.worker
        print(json.dumps(worker(task, path, int(max_frames), args.repeat)))
        return

    device = cpu_device()
    print(f"media loading, {device}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for gop in [int(g) for g in args.gops.split(",")]:
            clip = Path(tmp) / f"clip_gop{gop}.mp4"
            start = time.perf_counter()
            make_clip(clip, args.seconds, args.height, gop)
            print(f"encoded {clip.name}: {args.seconds} s {args.height}p 30 fps, keyframe every {gop} frames, "
                  f"{clip.stat().st_size / 2**20:.1f} MB in {time.perf_counter() - start:.1f} s")
            for max_frames in [int(m) for m in args.max_frames.split(",")]:
                seek = _run_worker("seek", clip, max_frames, args.repeat)
                full = _run_worker("decode_all", clip, max_frames, args.repeat)
                rows.append({"kind": "video", "gop": gop, "max_frames": max_frames, "seek": seek, "decode_all": full,
                             "identical": seek.get("digest") == full.get("digest")})
        series = Path(tmp) / "ct"
        start = time.perf_counter()
        make_series(series, args.slices, args.slice_size)
        elapsed = time.perf_counter() - start
        print(f"wrote a CT series of {args.slices} slices of {args.slice_size}^2 in {elapsed:.1f} s")
        rows.append({"kind": "dicom", "slices": args.slices, "slice_size": args.slice_size,
                     "volume": _run_worker("dicom_volume", series), "tensor": _run_worker("dicom_tensor", series)})

    print(f"\nvideo: {args.seconds} s {args.height}p clip, fps=1")
    print(f"{'gop':>5} {'max_frames':>10} {'frames':>6} | {'seek s':>8} {'seek MB':>8} | {'all s':>8} {'all MB':>8} | "
          f"{'speed-up':>8} {'same':>5}")
    for row in (r for r in rows if r["kind"] == "video"):
        seek, full = row["seek"], row["decode_all"]
        if "error" in seek or "error" in full:
            print(f"{row['gop']:>5} {row['max_frames']:>10} failed: {seek.get('error')} {full.get('error')}")
            continue
        print(f"{row['gop']:>5} {row['max_frames']:>10} {seek['frames']:>6} | {seek['seconds']:>8.2f} "
              f"{seek['peak_bytes'] / 2**20:>8.0f} | {full['seconds']:>8.2f} {full['peak_bytes'] / 2**20:>8.0f} | "
              f"{full['seconds'] / seek['seconds']:>7.2f}x {str(row['identical']):>5}")
    for row in (r for r in rows if r["kind"] == "dicom"):
        volume, tensor = row["volume"], row["tensor"]
        print(f"\nDICOM series {row['slices']} x {row['slice_size']}^2:")
        for label, result in (("folder -> HU volume", volume), ("folder -> pixel_values tensor", tensor)):
            if "error" in result:
                print(f"  {label}: failed {result['error']}")
            else:
                extra = result.get("pixel_values") or result.get("shape")
                print(f"  {label:<30} {result['seconds']:>7.2f} s {result['peak_bytes'] / 2**20:>8.0f} MB  {extra}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "seconds": args.seconds, "height": args.height,
                               "repeat": args.repeat, "load_average": os.getloadavg(), "rows": rows},
                              indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

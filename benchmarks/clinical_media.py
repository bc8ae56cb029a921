"""Media at clinical size, on every path, beside the cost of just reading the file.

    python benchmarks/clinical_media.py [--slices 300] [--num-slices 32] [--video-minutes 30] [--skip-video]

Inputs (generated into a temporary folder, never committed): a synthetic chest-CT phantom 512 x 512 x `--slices`
int16 (`tests/unit/media_samples.ct_phantom`) as `.nii.gz`, uncompressed `.nii`, a DICOM series of one file per
slice and that series zipped; a 4096 x 4096 radiograph (PNG); a `--video-minutes` long 720p 30 fps H.264 clip.

Paths, each in a fresh subprocess (time = wall clock of one call after imports; memory = growth of the process's
peak RSS over its level before the call):
- read: the floor, what just reading the file costs: nibabel `get_fdata()`; pydicom `dcmread` + `pixel_array` of
  every file (from the folder, or from the zip's members); Pillow `load()`; PyAV demuxing every packet.
- load (volumes): `load_volume(path, num_slices=N)` -> the N uint8 slices the processor then resizes: reading
  alone, comparable with the read floor.
- processor: `HulumedProcessor` (the tiny checkpoint's) on a 3d item with `--num-slices` slices (image / video
  items for the radiograph / clip: fps 1, 128 frames) -> `pixel_values`.
- estimate (all slices): `hulumed estimate --volume FILE` as a user runs it (process start included).
- generate: `hulumed generate --volume FILE --slices N --max-new-tokens 8` (process start and model load included).
- serve: `hulumed serve` with default limits, one warm-up request, then a `volume_url` request of N slices
  (local path under --media-root), max_tokens 8: the request's wall time; memory is the server process's peak
  so far (one server answers every input in turn, so it only grows).
The ratio path / read is the figure of merit. Prints a table, writes JSON (benchmarks/results/clinical_media.json
unless `--out`), naming the CPU and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from machine import cpu_device, peak_rss_bytes  # benchmarks/ is on sys.path when run

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "golden" / "tiny-qwen2"
sys.path.insert(0, str(ROOT))


def write_inputs(folder: Path, slices: int, video_minutes: float) -> dict[str, Path]:
    import nibabel
    import numpy as np
    from media import make_clip
    from PIL import Image

    from tests.unit.media_samples import ct_phantom, write_series

    hu = ct_phantom(slices=slices)
    image = nibabel.Nifti1Image(hu, np.diag([-0.7, -0.7, 1.25, 1.0]))
    image.header.set_slope_inter(1.0, 0.0)
    paths = {"nii.gz": folder / "ct.nii.gz", "nii": folder / "ct.nii"}
    for path in paths.values():
        nibabel.save(image, str(path))
    paths["dicom"] = folder / "ct_dicom"
    write_series(paths["dicom"], np.clip(hu, -1024, 2000).astype(np.float64), [1.25 * k for k in range(slices)])
    paths["dicom.zip"] = folder / "ct_dicom.zip"
    with zipfile.ZipFile(paths["dicom.zip"], "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for file in sorted(paths["dicom"].iterdir()):
            archive.write(file, f"series/{file.name}")
    radiograph = np.clip(ct_phantom(4096, 4096, 1)[:, :, 0].astype(np.float32) / 8 + 128, 0, 255).astype(np.uint8)
    paths["radiograph"] = folder / "radiograph.png"
    Image.fromarray(radiograph).save(paths["radiograph"])
    if video_minutes > 0:
        paths["video"] = folder / "video.mp4"
        make_clip(paths["video"], int(video_minutes * 60), 720, 250)
    return paths


def _kind(name: str) -> str:
    return "image" if name == "radiograph" else "video" if name == "video" else "volume"


def worker(task: str, name: str, path: str, num_slices: int) -> dict:
    """One measurement in this process."""
    base = peak_rss_bytes()
    start = time.perf_counter()
    extra: dict = {}
    if task == "read":
        if name in ("nii.gz", "nii"):
            import nibabel

            extra["shape"] = list(nibabel.load(path).get_fdata().shape)
        elif name == "dicom":
            import pydicom

            files = sorted(Path(path).iterdir())
            extra["files"] = sum(int(pydicom.dcmread(f).pixel_array.size > 0) for f in files)
        elif name == "dicom.zip":
            import io

            import pydicom

            with zipfile.ZipFile(path) as archive:
                extra["files"] = sum(int(pydicom.dcmread(io.BytesIO(archive.read(m))).pixel_array.size > 0)
                                     for m in archive.namelist())
        elif name == "radiograph":
            from PIL import Image

            with Image.open(path) as image:
                image.load()
                extra["size"] = list(image.size)
        else:
            import av

            with av.open(path) as container:
                extra["packets"] = sum(1 for _ in container.demux(container.streams.video[0]))
    elif task == "load":
        from hulumed.processing import load_volume  # imported before the clock starts, like the processor

        base, start = peak_rss_bytes(), time.perf_counter()
        extra["slices"] = len(load_volume(path, num_slices=num_slices))
    elif task == "processor":
        from hulumed.processing import HulumedProcessor

        processor = HulumedProcessor.from_pretrained(TINY)
        base, start = peak_rss_bytes(), time.perf_counter()
        kind = _kind(name)
        part = ({"type": "3d", "3d": {"image_path": path, "nii_num_slices": num_slices}} if kind == "volume"
                else {"type": "image", "image": {"image_path": path}} if kind == "image"
                else {"type": "video", "video": {"video_path": path, "fps": 1, "max_frames": 128}})
        out = processor(conversation=[{"role": "user", "content": [part, {"type": "text", "text": "Findings?"}]}],
                        return_tensors="pt")
        extra["pixel_values"] = list(out["pixel_values"].shape)
    return {"seconds": time.perf_counter() - start, "peak_mb": (peak_rss_bytes() - base) / 2**20, **extra}


def _in_subprocess(task: str, name: str, path: Path, num_slices: int) -> dict:
    command = [sys.executable, __file__, "--worker", task, name, str(path), "--num-slices", str(num_slices)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


_CLI = (
    "import sys\n"
    "from pathlib import Path\n"
    "from hulumed.cli import main\n"
    "try:\n"
    "    code = main(sys.argv[1:])\n"
    "finally:\n"
    "    hwm = [l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM:')]\n"
    "    print('PEAK_KB', hwm[0].split()[1] if hwm else 0, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _cli(args: list[str]) -> dict:
    """`hulumed ARGS` as a user runs it (a fresh process): wall time and that process's peak RSS."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CLI, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    lines = done.stderr.strip().splitlines()
    peak = next((int(line.split()[1]) for line in reversed(lines) if line.startswith("PEAK_KB")), 0)
    if done.returncode != 0:
        return {"error": next((line for line in reversed(lines) if not line.startswith("PEAK_KB")), "?")}
    return {"seconds": seconds, "peak_mb": peak / 1024}


def _process_peak_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_requests(media_root: Path, files: dict[str, Path], num_slices: int) -> dict[str, dict]:
    """`hulumed serve` with default limits; one volume_url request of `num_slices` slices per input."""
    import httpx

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "hulumed", "serve", "--model", str(TINY), "--host", "127.0.0.1", "--port", str(port),
         "--media-root", str(media_root), "--served-model-name", "hulumed"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    results: dict[str, dict] = {}
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        post = {"model": "hulumed", "max_tokens": 8, "temperature": 0}
        httpx.post(f"{url}/v1/chat/completions", json={**post, "messages": [{"role": "user", "content": "hi"}]},
                   timeout=600)  # warm-up
        for name, path in files.items():
            part = {"type": "volume_url", "volume_url": {"url": str(path.relative_to(media_root)),
                                                         "slices": num_slices}}
            messages = [{"role": "user", "content": [part, {"type": "text", "text": "Findings?"}]}]
            start = time.perf_counter()
            reply = httpx.post(f"{url}/v1/chat/completions", json={**post, "messages": messages}, timeout=600)
            results[name] = {"seconds": time.perf_counter() - start, "status": reply.status_code,
                             "peak_mb": _process_peak_mb(server.pid)}  # the server's peak so far
            if reply.status_code != 200:
                results[name]["error"] = reply.json().get("error", {}).get("message")
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300, help="slices of the 512 x 512 CT phantom")
    parser.add_argument("--num-slices", type=int, default=32, help="slices the model receives")
    parser.add_argument("--video-minutes", type=float, default=30.0)
    parser.add_argument("--skip-video", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "clinical_media.json"))
    parser.add_argument("--worker", nargs=3, metavar=("TASK", "NAME", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.num_slices)))
        return

    device = cpu_device()
    print(f"clinical-size media, {device}")
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "inputs"
        folder.mkdir()
        start = time.perf_counter()
        paths = write_inputs(folder, args.slices, 0 if args.skip_video else args.video_minutes)
        print(f"wrote the inputs in {time.perf_counter() - start:.0f} s: " + ", ".join(
            f"{n} {(sum(f.stat().st_size for f in p.iterdir()) if p.is_dir() else p.stat().st_size) / 2**20:.0f} MB"
            for n, p in paths.items()))
        volumes = [n for n in paths if _kind(n) == "volume"]
        for name, path in paths.items():
            row = rows.setdefault(name, {})
            row["read"] = _in_subprocess("read", name, path, args.num_slices)
            if name in volumes:
                row["load"] = _in_subprocess("load", name, path, args.num_slices)
            row["processor"] = _in_subprocess("processor", name, path, args.num_slices)
            if name in volumes:
                row["estimate_all"] = _cli(["estimate", "--model", str(TINY), "--volume", str(path), "Findings?"])
                row["generate"] = _cli(["generate", "--model", str(TINY), "--device", "cpu", "--volume", str(path),
                                        "--slices", str(args.num_slices), "--max-new-tokens", "8", "--greedy",
                                        "Findings?"])
            print(f"  {name}: done")
        for name, result in serve_requests(Path(tmp), {n: paths[n] for n in volumes}, args.num_slices).items():
            rows[name]["serve"] = result

    paths_shown = ("load", "processor", "estimate_all", "generate", "serve")
    print(f"\nCT phantom 512 x 512 x {args.slices} int16, {args.num_slices} slices to the model (estimate: all); "
          "seconds (peak MB), ratio to read")
    print(f"{'input':<11} {'read':>14} " + " ".join(f"{p:>22}" for p in paths_shown))
    for name, row in rows.items():
        read = row["read"]
        cells = []
        for path in paths_shown:
            result = row.get(path)
            if result is None:
                cells.append(f"{'-':>22}")
            elif "error" in result or "seconds" not in result:
                cells.append(f"{'failed':>22}")
            else:
                ratio = result["seconds"] / read["seconds"] if read.get("seconds") else float("nan")
                peak = f" ({result['peak_mb']:.0f})" if result.get("peak_mb") is not None else ""
                cells.append(f"{result['seconds']:>8.2f}{peak:>7} {ratio:>5.1f}x")
        shown = f"{read['seconds']:.2f} ({read['peak_mb']:.0f})" if "seconds" in read else "failed"
        print(f"{name:<11} {shown:>14} " + " ".join(cells))
    for name, row in rows.items():
        for path, result in row.items():
            if isinstance(result, dict) and "error" in result:
                print(f"{name} {path}: {result['error']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "slices": args.slices, "num_slices": args.num_slices,
                               "video_minutes": 0 if args.skip_video else args.video_minutes,
                               "load_average": os.getloadavg(), "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

"""Vision-encoder time and peak memory on a volume of 8 -> 128 slices: per-frame attention vs a dense P x P mask.

    python benchmarks/vision_memory.py [--slices 8,16,32,64,128] [--slice-size 112] [--device cpu|cuda]

"ours" is ``HulumedVisionEncoder`` with the default ``sdpa`` backend and frame batching (one attention call
for all slices, batched over slices); "loop" is the same without frame batching (transformers' per-slice loop);
"dense" is upstream's formulation (one sequence, a (P, P) block-diagonal mask; ``benchmarks/dense_reference.py``)
on the same weights and inputs. Times are the minimum of ``--repeat`` runs. Each measurement runs in a fresh subprocess so that peak memory is clean:
on CPU it is the growth of the process's peak RSS over its level after building the model and inputs; on CUDA
``torch.cuda.max_memory_allocated`` over the same baseline. Prints a table and writes JSON
(``benchmarks/results/vision_memory.json`` unless ``--out``), naming the device.

The encoder is random, with the released encoder's head_dim (72 would need hidden 1152; we keep hidden 384,
6 heads of 64, 2 layers so the dense path fits in memory): memory of attention scales with the number of
patches, not with the weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from machine import peak_rss_bytes  # benchmarks/ is on sys.path when run

IMPLS = ("ours", "loop", "dense")




def worker(impl: str, slices: int, slice_size: int, device: str, layers: int, repeat: int) -> dict:
    import torch
    from dense_reference import dense_encode  # benchmarks/dense_reference.py, beside this script

    from hulumed.model.configuration import HulumedVisionEncoderConfig
    from hulumed.model.vision_encoder import HulumedVisionEncoder

    torch.manual_seed(0)
    config = HulumedVisionEncoderConfig(
        hidden_size=384, intermediate_size=1536, num_hidden_layers=layers, num_attention_heads=6, patch_size=14
    )
    config._attn_implementation = "sdpa"
    encoder = HulumedVisionEncoder(config).eval().to(device)
    encoder.set_frame_batching(impl != "loop")
    side = slice_size // 14
    grid = torch.tensor([[slices, side, side]], device=device)
    merge = torch.tensor([2], device=device)
    pixels = torch.rand(slices * side * side, 588, device=device) * 2 - 1

    def run(g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if impl == "dense":
                return dense_encode(encoder, p, g, merge)
            return encoder(p, g, merge)

    run(torch.tensor([[1, side, side]], device=device), pixels[: side * side])  # warm-up on one slice
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = peak_rss_bytes()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = run(grid, pixels)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = min(times)
    peak = (torch.cuda.max_memory_allocated() if device == "cuda" else peak_rss_bytes()) - base
    return {
        "impl": impl,
        "slices": slices,
        "patches": int(pixels.shape[0]),
        "tokens": int(out.shape[0]),
        "seconds": seconds,
        "peak_bytes": max(int(peak), 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", default="8,16,32,64,128")
    parser.add_argument("--slice-size", type=int, default=112, help="pixels per side of each slice (multiple of 28)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per point; the minimum is reported")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "vision_memory.json"))
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "SLICES"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        impl, slices = args.worker
        print(json.dumps(worker(impl, int(slices), args.slice_size, args.device, args.layers, args.repeat)))
        return

    rows = []
    for slices in [int(s) for s in args.slices.split(",")]:
        for impl in IMPLS:
            command = [sys.executable, __file__, "--worker", impl, str(slices), "--slice-size", str(args.slice_size),
                       "--device", args.device, "--layers", str(args.layers), "--repeat", str(args.repeat)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                rows.append({"impl": impl, "slices": slices, "error": done.stderr.strip().splitlines()[-1:]})
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))

    import torch

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"vision encoder, slices of {args.slice_size}x{args.slice_size}, hidden 384, {args.layers} layers, {device_name}")
    print(f"{'slices':>6} {'patches':>8} | " + " | ".join(f"{i + ' s':>9} {i + ' MB':>10}" for i in IMPLS)
          + f" | {'dense/ours mem':>14} {'dense/ours time':>15} {'loop/ours time':>14}")
    by_key = {(r["impl"], r["slices"]): r for r in rows}
    summary = []
    for slices in sorted({r["slices"] for r in rows}):
        found = [by_key.get((impl, slices), {}) for impl in IMPLS]
        if any("seconds" not in r for r in found):
            print(f"{slices:>6} failed: {[r.get('error') for r in found]}")
            continue
        ours, loop, dense = found
        ratios = {
            "slices": slices,
            "memory_ratio_dense_over_ours": dense["peak_bytes"] / max(ours["peak_bytes"], 1),
            "time_ratio_dense_over_ours": dense["seconds"] / ours["seconds"],
            "time_ratio_loop_over_ours": loop["seconds"] / ours["seconds"],
        }
        summary.append(ratios)
        cells = " | ".join(f"{r['seconds']:>9.3f} {r['peak_bytes'] / 2**20:>10.1f}" for r in found)
        print(f"{slices:>6} {ours['patches']:>8} | {cells} | {ratios['memory_ratio_dense_over_ours']:>13.1f}x "
              f"{ratios['time_ratio_dense_over_ours']:>14.2f}x {ratios['time_ratio_loop_over_ours']:>13.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device_name, "slice_size": args.slice_size, "layers": args.layers,
                               "rows": rows, "ratios": summary}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

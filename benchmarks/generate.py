"""Engine throughput: N conversations answered one by one, in one batch, and handed over as independent requests
(``Engine.generate_each``: what the batch job and eval do), in the same run.

    python benchmarks/generate.py [--shapes tiny,mid] [--n 8] [--max-new-tokens 32] [--device cpu|cuda]

Modes: ``one-by-one`` (a generate call per conversation), ``batched`` (the caller's chunks of the engine's batch
size, one generate call each), ``each`` (all of them to ``generate_each``: the engine prepares the next chunk
while the previous one runs). Conversations cycle through text, image (95x67) and volume (8 slices of 40x40)
requests from the test fixtures. Decoding is greedy with ``ignore_eos`` so every request generates exactly
``--max-new-tokens``.

Shapes (random weights; tokenizer, template and processor files from the tiny checkpoint):
  tiny  the shipped tiny checkpoint shape (decoder hidden 64 x 2 layers, vision 32 x 2)
  mid   decoder hidden 512, 4 layers, 8 heads / 2 KV heads, intermediate 1408, the real 151,936-row vocabulary;
        vision hidden 256, 4 layers
  7b    Hulu-Med-7B's shapes (Qwen2.5-7B decoder, 27-layer 1152-wide encoder), bf16 — for CUDA machines
Each (shape, mode) runs in a fresh subprocess; peak memory is the growth of peak RSS (CPU) or
``torch.cuda.max_memory_allocated`` (CUDA) over the level after loading and one warm-up request.
Prints a table and writes JSON (``benchmarks/results/generate.json`` unless ``--out``), naming the device.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "tests" / "fixtures" / "golden" / "inputs"

SHAPES = {
    "tiny": {},
    "mid": {
        "hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
        "intermediate_size": 1408, "vocab_size": 151936,
        "vision_encoder_config": {"model_type": "hulumed_vision_encoder", "hidden_size": 256, "intermediate_size": 1024,
                                  "num_hidden_layers": 4, "num_attention_heads": 4, "patch_size": 14},
    },
    "7b": {
        "hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
        "intermediate_size": 18944, "vocab_size": 152064, "max_window_layers": 28,
        "vision_encoder_config": {"model_type": "hulumed_vision_encoder", "hidden_size": 1152,
                                  "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
                                  "patch_size": 14},
    },
}


def conversations(n: int) -> list[list[dict]]:
    from hulumed.conversation import user_turn

    kinds = [
        lambda i: user_turn(f"Explain finding number {i} of a chest CT in plain words."),
        lambda i: user_turn("Describe this image.", images=[str(INPUTS / "image_a.png")]),
        lambda i: user_turn("Write a report for this CT.", volume=str(INPUTS / "volume.nii.gz"), slices=8),
    ]
    return [[kinds[i % 3](i)] for i in range(n)]


def build_engine(shape: str, device: str, batch_size: int = 64):
    import torch

    from hulumed.backends.hf import HFEngine
    from hulumed.interface import LoadOptions
    from hulumed.loading import pick_dtype
    from hulumed.model.configuration import HulumedQwen2Config
    from hulumed.model.modeling import HulumedQwen2ForCausalLM
    from hulumed.processing import HulumedProcessor
    from hulumed.tiny import ASSETS

    folder = ASSETS / "tiny-qwen2"
    raw = json.loads((folder / "config.json").read_text())
    raw.update(SHAPES[shape])
    config = HulumedQwen2Config.from_dict(raw)
    config._attn_implementation = "sdpa"
    dtype = pick_dtype(torch.device(device))
    torch.manual_seed(0)
    with torch.device(device):
        model = HulumedQwen2ForCausalLM(config).to(dtype)
    options = LoadOptions(batch_size=batch_size, frame_chunk_size=32)
    return HFEngine(model, HulumedProcessor.from_pretrained(folder), options)


def _peak(device: str) -> int:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(shape: str, mode: str, n: int, max_new_tokens: int, device: str, batch_size: int | None = None) -> dict:
    import torch

    from hulumed.generation import GenerationParams

    engine = build_engine(shape, device, batch_size=batch_size or max(1, n))
    params = GenerationParams.greedy(max_new_tokens, ignore_eos=True)
    batch = conversations(n)
    engine.generate(batch[:3], params)  # warm-up: every request kind once
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = _peak(device) if device != "cuda" else torch.cuda.memory_allocated()
    start = time.perf_counter()
    if mode == "one-by-one":
        results = [engine.generate(c, params)[0] for c in batch]
    elif mode == "each":  # the engine batches the independent requests itself (scheduler), input order kept
        results = [outcome for _, outcome in engine.generate_each((c, params) for c in batch)]
    else:  # the caller's chunks of batch_size, one generate call each (what the batch job used to do)
        size = engine.options.batch_size
        results = [r for start in range(0, n, size) for r in engine.generate(batch[start:start + size], params)]
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(r.completion_tokens for r in results)
    return {
        "shape": shape, "mode": mode, "n": n, "seconds": seconds, "new_tokens": tokens,
        "tokens_per_s": tokens / seconds, "requests_per_s": n / seconds,
        "peak_bytes": max(int(_peak(device) - base), 0),
        "parameters": sum(p.numel() for p in engine.model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="tiny,mid")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="the engine's batch size (default: --n)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "generate.json"))
    parser.add_argument("--worker", nargs=2, metavar=("SHAPE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.n, args.max_new_tokens, args.device, args.batch_size)))
        return

    import torch

    device_name = (
        torch.cuda.get_device_name() if args.device == "cuda"
        else f"CPU {platform.machine()}, {torch.get_num_threads()} threads"
    )
    rows, ratios = [], []
    for shape in args.shapes.split(","):
        found = {}
        for mode in ("one-by-one", "batched", "each"):
            command = [sys.executable, __file__, "--worker", shape, mode, "--n", str(args.n),
                       "--max-new-tokens", str(args.max_new_tokens), "--device", args.device]
            if args.batch_size:
                command += ["--batch-size", str(args.batch_size)]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                print(f"{shape} {mode} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            found[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(found[mode])
        if len(found) == 3:
            base = found["one-by-one"]["tokens_per_s"]
            ratios.append({"shape": shape, "throughput_ratio": found["batched"]["tokens_per_s"] / base,
                           "each_ratio": found["each"]["tokens_per_s"] / base})
    print(f"engine throughput, {args.n} conversations (text/image/volume), {args.max_new_tokens} new tokens each, "
          f"batch size {args.batch_size or args.n}, {device_name}")
    print(f"{'shape':>5} {'params':>12} {'mode':>11} | {'seconds':>8} {'tok/s':>8} {'req/s':>7} {'peak MB':>8}")
    for r in rows:
        print(f"{r['shape']:>5} {r['parameters']:>12,} {r['mode']:>11} | {r['seconds']:>8.2f} "
              f"{r['tokens_per_s']:>8.1f} "
              f"{r['requests_per_s']:>7.2f} {r['peak_bytes'] / 2**20:>8.1f}")
    for ratio in ratios:
        print(f"{ratio['shape']}: throughput over one-by-one: batched {ratio['throughput_ratio']:.2f}x, "
              f"generate_each {ratio['each_ratio']:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device_name, "n": args.n, "max_new_tokens": args.max_new_tokens,
                               "batch_size": args.batch_size or args.n,
                               "rows": rows, "ratios": ratios}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

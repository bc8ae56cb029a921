"""Serving throughput: the transformers (hf) backend vs the vLLM backend, same checkpoint, same requests.

    python benchmarks/serve_backends.py [--shape mid] [--device cpu|cuda] [--concurrency 1,4,16,64]
                                        [--max-new-tokens 16] [--backends hf,vllm] [--out FILE]
    python benchmarks/serve_backends.py --device cuda --shape 7b          # on a GPU machine

One random checkpoint (shapes of ``benchmarks/generate.py``: tiny / mid / 7b; tokenizer, template and processor
files of the tiny checkpoint) is written once; each backend runs in its own subprocess. For every concurrency c,
c client threads send requests (text, image, 8-slice volume, in turn; greedy with ``ignore_eos`` so each answer is
exactly ``--max-new-tokens``) through the engine interface, non-streamed (``generate``) and streamed
(``stream``), until ``max(8, c)`` requests are answered. Reported: req/s, generated tokens/s, p50/p95 latency,
time to first token (streamed: first delta; non-streamed: the whole answer), and peak memory (RSS of the
backend's process tree on CPU, ``torch.cuda.max_memory_allocated`` + vLLM's reservation on CUDA: see note).
The hf backend is the in-process engine (its scheduler batches concurrent calls into static left-padded batches
of up to ``batch_size``); the vLLM backend batches continuously.
Prints a table and writes JSON (``benchmarks/results/serve_backends.json`` unless ``--out``), naming the device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def write_checkpoint(shape: str, out: Path) -> Path:
    """A random checkpoint of ``shape`` in the HF-Version layout (fp32 on disk; the backend picks its dtype)."""
    import torch
    from generate import SHAPES

    from hulumed.model.configuration import HulumedQwen2Config
    from hulumed.model.modeling import HulumedQwen2ForCausalLM
    from hulumed.tiny import _PROCESSOR_FILES, ASSETS

    source = ASSETS / "tiny-qwen2"
    raw = json.loads((source / "config.json").read_text())
    raw.update(SHAPES[shape])
    if shape == "tiny":  # vLLM's CPU attention needs head_dim >= 32
        raw.update(head_dim=32, num_attention_heads=2, num_key_value_heads=2)
    raw["use_token_compression"] = True
    torch.manual_seed(0)
    model = HulumedQwen2ForCausalLM(HulumedQwen2Config.from_dict(raw))
    model.save_pretrained(out)
    for name in _PROCESSOR_FILES:
        shutil.copyfile(source / name, out / name)
    return out


class PeakMemory:
    """Peak RSS of this process and its children (vLLM's engine core runs in a child), sampled every 50 ms."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> int:
        total = 0
        for proc in [self._process, *self._process.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except Exception:  # noqa: BLE001 - a child may exit between listing and reading
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.05)

    def reset(self) -> None:
        self.peak = self._sample()

    def stop(self) -> None:
        self._stop.set()


def _one(engine, conversation, params, streamed: bool) -> dict:
    from hulumed.interface import StreamDelta, StreamFinal

    start = time.perf_counter()
    first = None
    tokens = params.max_new_tokens
    if streamed:
        for event in engine.stream(conversation, params):
            if first is None and (isinstance(event, str) or isinstance(event, StreamDelta)):
                first = time.perf_counter()
            if isinstance(event, StreamFinal):
                tokens = event.result.completion_tokens
    else:
        [result] = engine.generate([conversation], params)
        tokens = result.completion_tokens
    end = time.perf_counter()
    return {"latency": end - start, "ttft": (first or end) - start, "tokens": tokens}


def worker(backend: str, checkpoint: str, device: str, levels: list[int], max_new: int) -> list[dict]:
    from generate import conversations

    import hulumed
    from hulumed.generation import GenerationParams
    from hulumed.interface import LoadOptions

    memory = PeakMemory()
    if backend == "vllm":
        from hulumed.backends.vllm import load_vllm_engine

        engine = load_vllm_engine(checkpoint, LoadOptions(backend="vllm", device=device, max_model_len=8192))
    else:
        engine = hulumed.load(checkpoint, device=device, batch_size=64)
    params = GenerationParams.greedy(max_new, ignore_eos=True)
    convs = [c[0] if isinstance(c[0], list) else c for c in conversations(3)]
    _one(engine, convs[1], params, False)  # warm-up
    rows = []
    for level in levels:
        for streamed in (False, True):
            n = max(8, level)
            memory.reset()
            start = time.perf_counter()
            with ThreadPoolExecutor(level) as pool:
                done = list(pool.map(lambda i: _one(engine, convs[i % 3], params, streamed), range(n)))
            wall = time.perf_counter() - start
            latencies = sorted(d["latency"] for d in done)
            rows.append({
                "backend": backend, "concurrency": level, "streamed": streamed, "requests": n,
                "req_per_s": n / wall, "tokens_per_s": sum(d["tokens"] for d in done) / wall,
                "p50_s": statistics.median(latencies), "p95_s": latencies[min(n - 1, int(0.95 * n))],
                "ttft_p50_s": statistics.median(d["ttft"] for d in done), "peak_memory_mb": memory.peak / 2**20,
            })
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    memory.stop()
    if hasattr(engine, "close"):
        engine.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="mid", choices=["tiny", "mid", "7b"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--backends", default="hf,vllm")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_backends.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help="use this checkpoint folder instead of writing a random one")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.worker:
        print(json.dumps(worker(args.worker, args.checkpoint, args.device, levels, args.max_new_tokens)))
        return

    import tempfile

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else write_checkpoint(args.shape, Path(tmp) / args.shape)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        if args.device == "cpu":  # vLLM's CPU KV cache: 4 GiB, not 90% of the machine's memory
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
        for backend in args.backends.split(","):
            run = subprocess.run(
                [sys.executable, __file__, "--worker", backend, "--checkpoint", str(checkpoint), "--device",
                 args.device, "--concurrency", args.concurrency, "--max-new-tokens", str(args.max_new_tokens)],
                check=False, capture_output=True, text=True, env=env,
            )
            if run.returncode != 0:
                print(f"{backend} backend failed:\n{run.stderr[-4000:]}", file=sys.stderr)
                continue
            rows.extend(json.loads(run.stdout.strip().splitlines()[-1]))
    device = args.device
    if device == "cpu":
        device = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    else:
        import torch

        device = torch.cuda.get_device_name()
    print(f"device: {device}; shape {args.shape}; {args.max_new_tokens} new tokens per request")
    print(f"{'backend':8} {'conc':>4} {'stream':>6} {'req/s':>7} {'tok/s':>8} {'p50 s':>7} {'p95 s':>7} "
          f"{'ttft s':>7} {'peak MB':>8}")
    for r in rows:
        print(f"{r['backend']:8} {r['concurrency']:>4} {str(r['streamed']):>6} {r['req_per_s']:7.2f} "
              f"{r['tokens_per_s']:8.1f} {r['p50_s']:7.2f} {r['p95_s']:7.2f} {r['ttft_p50_s']:7.2f} "
              f"{r['peak_memory_mb']:8.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "shape": args.shape, "max_new_tokens": args.max_new_tokens,
                               "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

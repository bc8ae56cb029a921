"""Engine batching without HTTP: N concurrent callers (threads), streamed or not, batched vs one at a time.

    python benchmarks/engine_batching.py [--model tests/fixtures/golden/tiny-qwen2] [--requests 48]
                                         [--max-tokens 16] [--concurrency 16] [--repeat 3]

The same workload as ``serve_load.py`` (alternating text and image conversations, greedy with ``ignore_eos``)
goes straight to ``HFEngine.stream`` / ``generate`` from ``--concurrency`` threads: once with an engine of batch
size 16 (the scheduler batches concurrent calls) and once with batch size 1 (one call at a time). No server and
no client process share the cores, so the ratio is the engine's own; ``serve_load.py`` measures the whole
server. The best of ``--repeat`` runs is reported. Prints a table and writes JSON
(``benchmarks/results/engine_batching.json`` unless ``--out``), naming the device.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workload import IMAGE, IMAGE_PROMPT, TEXT_PROMPT, add_workload_arguments, is_image  # benchmarks/ on sys.path


def _conversations(n: int) -> list[list[dict]]:
    image = [{"type": "image", "image": {"image_path": str(IMAGE)}}, {"type": "text", "text": IMAGE_PROMPT}]
    return [[{"role": "user", "content": image if is_image(i) else TEXT_PROMPT.format(i)}] for i in range(n)]


def _run(engine, conversations: list, params, concurrency: int, stream: bool) -> float:
    """Seconds for all conversations, `concurrency` callers at a time."""

    def one(conversation: list) -> None:
        if stream:
            for _ in engine.stream(conversation, params):
                pass
        else:
            engine.generate(conversation, params)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, conversations))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_arguments(parser)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "engine_batching.json"))
    args = parser.parse_args()

    import torch

    import hulumed
    from hulumed.generation import GenerationParams

    device_name = (torch.cuda.get_device_name() if args.device == "cuda"
                   else f"CPU {platform.machine()}, {torch.get_num_threads()} threads")
    params = GenerationParams.greedy(args.max_tokens, ignore_eos=True)
    conversations = _conversations(args.requests)
    engines = {"on": hulumed.load(args.model, device=args.device, batch_size=16),
               "off": hulumed.load(args.model, device=args.device, batch_size=1)}
    rows = []
    for stream in (True, False):
        for batching, engine in engines.items():
            _run(engine, conversations[:4], params, 2, stream)  # warm-up
            seconds = min(_run(engine, conversations, params, args.concurrency, stream) for _ in range(args.repeat))
            rows.append({"stream": stream, "batching": batching, "concurrency": args.concurrency,
                         "seconds": seconds, "requests_per_s": args.requests / seconds})
    for engine in engines.values():
        engine.close()
    print(f"engine batching, {args.requests} requests x {args.max_tokens} tokens (text / image), "
          f"{args.concurrency} concurrent callers, {Path(args.model).name}, {device_name}, best of {args.repeat}")
    print(f"{'stream':>6} {'batching':>8} | {'req/s':>7} {'seconds':>8}")
    for r in rows:
        stream = "on" if r["stream"] else "off"
        print(f"{stream:>6} {r['batching']:>8} | {r['requests_per_s']:>7.2f} {r['seconds']:>8.3f}")
    ratios = {}
    for stream in (True, False):
        on, off = (next(r for r in rows if r["stream"] == stream and r["batching"] == b) for b in ("on", "off"))
        ratios[f"stream={'on' if stream else 'off'}"] = on["requests_per_s"] / off["requests_per_s"]
    for name, ratio in ratios.items():
        print(f"{name}: batching on / off = {ratio:.2f}x requests/s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device_name, "model": args.model, "rows": rows, "speedup": ratios},
                              indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

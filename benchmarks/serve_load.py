"""Server load: requests/s and p50/p95 latency at concurrency 1, 4, 16, batching on vs off, streamed or not.

    python benchmarks/serve_load.py [--model tests/fixtures/golden/tiny-qwen2] [--requests 48] [--max-tokens 16]
                                    [--stream on,off]

A real uvicorn server on 127.0.0.1 (a free port) serves the checkpoint; "on" lets the engine batch concurrent
requests, streamed and not (engine and server batch size 16), "off" answers them one at a time (server batch
size 1: what streams got before the engine batched them). ``--server process`` (default) runs it as
``hulumed serve`` in its own process, as deployed; ``--server thread`` runs it in a thread of this process, where
the client threads below compete with it for the GIL. Requests alternate text and image (data: URI)
prompts, greedy with ``ignore_eos`` so each generates exactly ``--max-tokens``; a streamed request ends when
its ``[DONE]`` arrives.
Clients are threads on this machine sharing its cores with the server. Prints a table and writes JSON
(``benchmarks/results/serve_load.json`` unless ``--out``), naming the device.
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
from workload import IMAGE, IMAGE_PROMPT, TEXT_PROMPT, add_workload_arguments, is_image  # benchmarks/ on sys.path


def _bodies(n: int, max_tokens: int, stream: bool = False) -> list[dict]:
    image = "data:image/png;base64," + base64.b64encode(IMAGE.read_bytes()).decode()
    bodies = []
    for i in range(n):
        content = (TEXT_PROMPT.format(i) if not is_image(i) else
                   [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": IMAGE_PROMPT}])
        bodies.append({"model": "bench", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
                       "temperature": 0, "ignore_eos": True, "stream": stream})
    return bodies


def _run(url: str, bodies: list[dict], concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def one(body: dict) -> None:
        nonlocal errors
        start = time.perf_counter()
        if body.get("stream"):
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as reply:
                ok = reply.status_code == 200 and any(line == "data: [DONE]" for line in reply.iter_lines())
        else:
            ok = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600).status_code == 200
        with lock:
            latencies.append(time.perf_counter() - start)
            errors += not ok

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, bodies))
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "requests": len(bodies), "errors": errors, "seconds": wall, "requests_per_s": len(bodies) / wall,
        "p50_s": statistics.median(ordered), "p95_s": ordered[max(0, int(round(0.95 * len(ordered))) - 1)],
    }


@contextmanager
def _subprocess_server(args: argparse.Namespace, batch_size: int) -> Iterator[str]:
    """``hulumed serve`` on a free loopback port in its own process; yields its URL once it prints it."""
    command = [sys.executable, "-m", "hulumed", "serve", "--model", args.model, "--device", args.device,
               "--port", "0", "--served-model-name", "bench", "--max-batch-size", str(batch_size), "--max-queue", "256"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:  # type: ignore[union-attr]  # serve prints "listening on URL" to stderr
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].split()[0]
                break
        else:
            raise RuntimeError(f"hulumed serve exited with {process.wait()} before listening")
        drain = threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True)  # type: ignore[union-attr]
        drain.start()  # a full pipe would block the server
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_arguments(parser)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--stream", default="on,off", help="streamed requests (on), plain ones (off), or both")
    parser.add_argument("--server", choices=("process", "thread"), default="process",
                        help="hulumed serve in its own process (as deployed), or a thread of this process")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve_load.json"))
    args = parser.parse_args()

    import torch

    import hulumed
    from hulumed.serve.background import serving
    from hulumed.serve.settings import ServerSettings

    engine = hulumed.load(args.model, device=args.device, batch_size=16) if args.server == "thread" else None
    device_name = (torch.cuda.get_device_name() if args.device == "cuda"
                   else f"CPU {platform.machine()}, {torch.get_num_threads()} threads")
    rows = []
    for stream in args.stream.split(","):
        for batching in ("on", "off"):
            size = 16 if batching == "on" else 1
            settings = ServerSettings(model_name="bench", max_batch_size=size, max_queue=256)
            server = serving(engine, settings) if engine is not None else _subprocess_server(args, size)
            with server as url:
                _run(url, _bodies(4, args.max_tokens, stream == "on"), 2)  # warm-up
                for concurrency in [int(c) for c in args.concurrency.split(",")]:
                    row = {"stream": stream, "batching": batching, "concurrency": concurrency,
                           **_run(url, _bodies(args.requests, args.max_tokens, stream == "on"), concurrency)}
                    rows.append(row)
    print(f"server load, {args.requests} requests x {args.max_tokens} tokens (text / image), "
          f"{Path(args.model).name}, {device_name}, server in a {args.server}")
    print(f"{'stream':>6} {'batching':>8} {'conc':>5} | {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'errors':>6}")
    for r in rows:
        print(f"{r['stream']:>6} {r['batching']:>8} {r['concurrency']:>5} | {r['requests_per_s']:>7.2f} "
              f"{r['p50_s']:>7.3f} {r['p95_s']:>7.3f} {r['errors']:>6}")
    by = {(r["stream"], r["batching"], r["concurrency"]): r for r in rows}
    speedups = {
        f"stream={st} concurrency={c}": by[(st, "on", c)]["requests_per_s"] / by[(st, "off", c)]["requests_per_s"]
        for st, _, c in by if (st, "on", c) in by and (st, "off", c) in by
    }
    for name, ratio in speedups.items():
        print(f"{name}: batching on / off = {ratio:.2f}x requests/s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device_name, "model": args.model, "server": args.server, "rows": rows,
                               "speedup_by_concurrency": speedups}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

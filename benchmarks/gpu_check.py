"""Golden cases on one device/dtype for both backends: max logit difference and greedy-token agreement.

    python benchmarks/gpu_check.py --device cuda --dtype bfloat16 [--attn flash_attention_2] [--tp 2]
    python benchmarks/gpu_check.py --device cpu --dtype float32 --backends hf       # dry mode (CI)

For every golden case (tests/fixtures/golden: both tiny families, every modality) the processor outputs stored in
the fixture go through (a) the transformers model: max |logits - upstream logits| over the prompt, and greedy
tokens vs upstream's; (b) the vLLM backend (when requested and vllm is installed): greedy tokens vs upstream's,
with upstream's repetition penalty. bf16 changes numbers, so token agreement is reported, not asserted; fp32 on CPU
must agree exactly. Prints a table, writes JSON (``benchmarks/results/gpu_check.json`` unless ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def hf_rows(device: str, dtype: str, attn: str) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM

    import hulumed  # noqa: F401 - registers the Auto classes
    from tests.conftest import GOLDEN, golden_cases, load_case

    rows, models = [], {}
    for variant, case in golden_cases():
        meta, tensors = load_case(variant, case)
        if variant not in models:
            models[variant] = AutoModelForCausalLM.from_pretrained(
                GOLDEN / variant, dtype=getattr(torch, dtype), attn_implementation=attn
            ).to(device).eval()
        model = models[variant]
        model.config.use_token_compression = meta["use_token_compression"]  # the case's runtime choice
        inputs = {k: tensors[k].to(device) for k in ("input_ids", "attention_mask") if k in tensors}
        for k in ("pixel_values", "grid_sizes", "merge_sizes"):
            if k in tensors:
                inputs[k] = tensors[k].to(device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(getattr(torch, dtype))
            inputs["modals"] = meta["modals"]
        with torch.no_grad():
            logits = model(**inputs).logits.float().cpu()
            generated = model.generate(**inputs, do_sample=False, max_new_tokens=tensors["generated_ids"].shape[1],
                                       temperature=None, top_p=None, top_k=None)
        expected = tensors["generated_ids"][0].tolist()
        got = generated[0].tolist()[: len(expected)]
        diff = (logits[:, -tensors["logits"].shape[1]:] - tensors["logits"]).abs().max() if \
            logits.shape == tensors["logits"].shape else float("nan")
        rows.append({"backend": "hf", "variant": variant, "case": case, "max_logit_diff": float(diff),
                     "tokens_equal": sum(a == b for a, b in zip(got, expected)), "tokens": len(expected)})
    return rows


def vllm_rows(dtype: str, tp: int) -> list[dict]:
    from hulumed.backends.vllm import load_vllm_engine
    from hulumed.generation import GenerationParams
    from hulumed.interface import LoadOptions
    from hulumed.vllm_plugin.items import build_prompt_items
    from tests.conftest import GOLDEN, golden_cases, load_case

    rows, engines = [], {}
    try:
        for variant, case in golden_cases():
            meta, tensors = load_case(variant, case)
            if variant not in engines:
                engines[variant] = load_vllm_engine(GOLDEN / variant, LoadOptions(
                    backend="vllm", dtype=dtype, tensor_parallel_size=tp, max_model_len=4096))
            engine = engines[variant]
            batch = {k: tensors[k] for k in ("input_ids", "pixel_values", "grid_sizes", "merge_sizes") if k in tensors}
            if "pixel_values" in batch:
                batch["modals"] = meta["modals"]
            prompt = build_prompt_items(batch, int(engine.config.image_token_index),
                                        bool(meta["use_token_compression"]), engine.dtype)
            expected = tensors["generated_ids"][0].tolist()
            prepared = engine.prepare([[{"role": "user", "content": "x"}]])
            prepared.inputs, prepared.prompt_tokens = [prompt], [len(prompt.full_prompt_ids)]
            [result] = engine.generate(prepared, GenerationParams.greedy(len(expected), ignore_eos=True))
            got = result.token_ids[: len(expected)]
            rows.append({"backend": f"vllm tp={tp}", "variant": variant, "case": case, "max_logit_diff": None,
                         "tokens_equal": sum(a == b for a, b in zip(got, expected)), "tokens": len(expected)})
    finally:
        for engine in engines.values():
            engine.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--attn", default="sdpa")
    parser.add_argument("--backends", default="hf,vllm")
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    args = parser.parse_args()
    rows = hf_rows(args.device, args.dtype, args.attn) if "hf" in args.backends.split(",") else []
    if "vllm" in args.backends.split(","):
        rows += vllm_rows(args.dtype, args.tp)
    print(f"device {args.device}, dtype {args.dtype}, attn {args.attn}")
    print(f"{'backend':10} {'variant':11} {'case':40} {'max|dlogit|':>11} {'tokens':>7}")
    for r in rows:
        diff = "-" if r["max_logit_diff"] is None else f"{r['max_logit_diff']:.2e}"
        print(f"{r['backend']:10} {r['variant']:11} {r['case']:40} {diff:>11} {r['tokens_equal']:>3}/{r['tokens']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": args.device, "dtype": args.dtype, "attn": args.attn, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

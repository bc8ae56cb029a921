"""Helper script of test_tensor_parallel: run conversations through a VllmEngine in a fresh process.

    python run_cases.py CHECKPOINT CASES.json OUT.json TENSOR_PARALLEL_SIZE

Writes {name: {"prompt_ids": [...], "token_ids": [...]}} (greedy). A separate process because tensor parallelism
on CPU needs its own thread binding (VLLM_CPU_OMP_THREADS_BIND) set before vLLM starts.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from hulumed.backends.vllm import load_vllm_engine
    from hulumed.generation import GenerationParams
    from hulumed.interface import LoadOptions

    checkpoint, cases_file, out_file, tp = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with open(cases_file) as handle:
        cases = json.load(handle)
    engine = load_vllm_engine(checkpoint, LoadOptions(backend="vllm", max_model_len=4096, tensor_parallel_size=tp))
    try:
        names = list(cases)
        prepared = engine.prepare([cases[n] for n in names], GenerationParams.greedy(12))
        results = engine.generate(prepared)
        out = {n: {"prompt_ids": p.engine_prompt_ids, "token_ids": r.token_ids}
               for n, p, r in zip(names, prepared.inputs, results)}
    finally:
        engine.close()
    with open(out_file, "w") as handle:
        json.dump(out, handle)


if __name__ == "__main__":
    main()

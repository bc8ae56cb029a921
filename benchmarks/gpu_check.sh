#!/usr/bin/env bash
# The one GPU check of the vLLM backend (under 8 minutes on one H100/H200-class GPU). Run it on a CUDA machine:
#     bash benchmarks/gpu_check.sh            # needs: pip install vllm && pip install -e ".[test]"
#     bash benchmarks/gpu_check.sh --dry      # the same steps, CPU-sized (tests/unit/test_gpu_check.py)
# Steps: 1) golden cases in bf16, transformers and vLLM backends (max logit / token differences);
#        2) the same with flash-attn when it installs; 3) vLLM tensor parallel when there is more than one GPU;
#        4) benchmarks/serve_backends.py at the 7b shape. Results: benchmarks/results/*.json and the printed tables.
set -euo pipefail
cd "$(dirname "$0")/.."
results="${HULUMED_RESULTS:-benchmarks/results}"
mkdir -p "$results"
if [ "${1:-}" = "--dry" ]; then
    python benchmarks/gpu_check.py --device cpu --dtype float32 --backends hf --out "$results/gpu_check_dry.json"
    python benchmarks/serve_backends.py --shape tiny --device cpu --concurrency 1,2 --max-new-tokens 2 \
        --backends hf --out "$results/serve_backends_dry.json"
    exit 0
fi
nvidia-smi --query-gpu=name,memory.total --format=csv
gpus=$(nvidia-smi --list-gpus | wc -l)
timeout 150 python benchmarks/gpu_check.py --device cuda --dtype bfloat16 --out "$results/gpu_check_bf16.json"
if timeout 120 pip install flash-attn --no-build-isolation -q; then
    timeout 60 python benchmarks/gpu_check.py --device cuda --dtype bfloat16 --attn flash_attention_2 \
        --backends hf --out "$results/gpu_check_flash.json"
else
    echo "flash-attn did not install; skipped"
fi
if [ "$gpus" -gt 1 ]; then
    timeout 90 python benchmarks/gpu_check.py --device cuda --dtype bfloat16 --backends vllm --tp 2 \
        --out "$results/gpu_check_tp2.json"
fi
timeout 150 python benchmarks/serve_backends.py --device cuda --shape 7b --concurrency 1,16,64 \
    --out "$results/serve_backends_7b.json"

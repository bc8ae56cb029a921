#!/usr/bin/env bash
# The one GPU check of fine-tuning (under 8 minutes on one H100/H200-class GPU). On a CUDA machine:
#     bash benchmarks/gpu_train_check.sh          # needs: pip install -e ".[test]"
#     bash benchmarks/gpu_train_check.sh --dry    # the same steps, CPU-sized (tests/unit/test_gpu_check.py)
# Steps (benchmarks/train_scale.py, a random checkpoint at generate.py's "mid" shape, bf16, mixed text/image/3D):
#   1) LoRA on one GPU; 2) full fine-tuning (LLM + projector + vision encoder) on one GPU;
#   3) with more than one GPU: DeepSpeed ZeRO-3 and FSDP (configs/train) on all of them, against one process.
# Results: benchmarks/results/train_*.json and the printed tables (tokens/s, peak RSS per process).
set -euo pipefail
cd "$(dirname "$0")/.."
results="${HULUMED_RESULTS:-benchmarks/results}"
mkdir -p "$results"
if [ "${1:-}" = "--dry" ]; then
    common=(--shape tiny --steps 2 --records 6)
    precision="--precision fp32"
    gpus=2  # the multi-process steps run as DDP on CPU (the Trainer drives ZeRO / FSDP on GPUs only)
    engines=("")
else
    common=(--shape mid --steps 30 --records 96)
    precision="--precision bf16"
    gpus=$(python -c "import torch; print(torch.cuda.device_count())")
    engines=("--deepspeed configs/train/deepspeed/zero3.json" "--fsdp 'full_shard auto_wrap' --fsdp-config configs/train/fsdp/fsdp.json")
fi
timeout 150 python benchmarks/train_scale.py --processes 1 "${common[@]}" \
    --train-args "--lora --gradient-checkpointing $precision" --out "$results/train_lora.json"
timeout 150 python benchmarks/train_scale.py --processes 1 "${common[@]}" \
    --train-args "--vision full $precision" --out "$results/train_full.json"
if [ "$gpus" -gt 1 ]; then
    for engine in "${engines[@]}"; do
        name=$(echo "${engine:-ddp}" | awk '{print $1}' | tr -d '-')
        timeout 150 python benchmarks/train_scale.py --processes "$gpus" "${common[@]}" \
            --train-args "--vision full --gradient-checkpointing $precision $engine" --out "$results/train_$name.json"
    done
fi

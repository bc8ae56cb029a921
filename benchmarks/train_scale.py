"""Fine-tuning on 1 vs N processes with the same global batch: tokens/s and peak RSS per process.

    python benchmarks/train_scale.py [--processes 2] [--records 64] [--steps 16] [--model FOLDER | --shape mid]
                                     [--train-args "--lora --precision bf16"]

A data file of `--records` conversations (text, image and 3D alternating; the golden inputs) is trained for
`--steps` optimizer steps with a global batch of `--processes` conversations: once on 1 process (batch size N),
once with `torchrun --nproc_per_node N` (batch size 1 per process, gloo on CPU; NCCL on GPUs). Each process
reports its time inside `trainer.train()` (model loading excluded) and its peak RSS (VmHWM); tokens are the
non-padding input tokens every step processed (counted on each process's batches as they enter the training
step), so tokens/s compares the two layouts on the same work. Both layouts get the same cores: OMP threads =
cores / processes. `--shape` trains a random checkpoint of one of benchmarks/generate.py's shapes instead of
`--model`; `--train-args` are added to both `hulumed train` command lines (LoRA, precision, a DeepSpeed or FSDP
config on GPUs). Prints a table, writes JSON (benchmarks/results/train_scale.json unless `--out`) naming the
device and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_device  # benchmarks/ is on sys.path when run

ROOT = Path(__file__).resolve().parent.parent
INPUTS = ROOT / "tests" / "fixtures" / "golden" / "inputs"


def write_data(folder: Path, records: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("image_a.png", "image_b.png", "volume.nii.gz"):
        shutil.copyfile(INPUTS / name, folder / name)
    parts = [None, {"type": "image", "image": {"image_path": "image_a.png"}},
             {"type": "3d", "3d": {"image_path": "volume.nii.gz", "nii_num_slices": 4}}]
    lines = []
    for k in range(records):
        part = parts[k % 3]
        question = f"Question {k}: what is shown, and what would you check next?"
        content = question if part is None else [part, {"type": "text", "text": question}]
        lines.append({"conversation": [{"role": "user", "content": content},
                                       {"role": "assistant", "content": f"Answer {k}: a small test pattern."}]})
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def worker(out: str, arguments: list[str]) -> None:
    """One process of a run: train, then write its timing, tokens and peak RSS to OUT.<rank>.json."""
    from hulumed.cli import build_parser
    from hulumed.train import trainer as trainer_module
    from hulumed.train.commands import recipe_from_args
    from hulumed.train.trainer import run_training

    counted_tokens = [0]  # this process's non-padding input tokens, over the batches it trained on
    original = trainer_module.HulumedTrainer.training_step

    def counted(self, model, inputs, *args, **kwargs):
        mask = inputs.get("attention_mask")
        counted_tokens[0] += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
        return original(self, model, inputs, *args, **kwargs)

    recipe = recipe_from_args(build_parser().parse_args(["train", *arguments]))

    trainer_module.HulumedTrainer.training_step = counted
    result = run_training(recipe)
    seconds = result.seconds_per_step * result.global_step  # inside trainer.train(): loading not counted
    peak = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    rank = int(os.environ.get("RANK", "0"))
    Path(f"{out}.{rank}.json").write_text(json.dumps({
        "rank": rank, "steps": result.global_step, "seconds": seconds, "seconds_per_step": result.seconds_per_step,
        "tokens": counted_tokens[0], "peak_bytes": peak, "losses": result.losses}))


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(processes: int, global_batch: int, data: Path, output: Path, model: str, steps: int, threads: int,
        extra: list[str]) -> dict:
    """One run of `steps` optimizer steps of `global_batch` conversations on `processes` processes."""
    arguments = ["--model", model, "--data", str(data), "--output", str(output), "--max-steps", str(steps),
                 "--batch-size", str(global_batch // processes), "--lr", "1e-4", "--warmup", "0",
                 "--logging-steps", "1", "--save-steps", "100000", "--workers", "0", "--precision", "fp32",
                 "--no-shuffle", "--resume", "never", *extra]
    out = output.parent / f"result-{processes}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    if processes == 1:
        command = [sys.executable, __file__, "--worker", str(out), "--", *arguments]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                   "--master_port", str(_port()), __file__, "--worker", str(out), "--", *arguments]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    ranks = [json.loads(Path(f"{out}.{rank}.json").read_text()) for rank in range(processes)]
    tokens = sum(r["tokens"] for r in ranks)
    train_seconds = max(r["seconds"] for r in ranks)
    return {"processes": processes, "wall_seconds": wall, "train_seconds": train_seconds, "tokens": tokens,
            "tokens_per_second": tokens / train_seconds, "steps": ranks[0]["steps"],
            "peak_mb_per_process": [r["peak_bytes"] / 2**20 for r in ranks], "losses": ranks[0]["losses"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--model", default=str(ROOT / "tests" / "fixtures" / "golden" / "tiny-qwen2"))
    parser.add_argument("--shape", choices=["tiny", "mid", "7b"], help="train a random checkpoint of this shape")
    parser.add_argument("--train-args", default="", help="more `hulumed train` options for both runs")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_scale.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.worker:
        worker(args.worker, [a for a in rest if a != "--"])
        return
    device = cpu_device()
    import torch

    if torch.cuda.is_available():
        device = f"GPU: {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}; {device}"
    cores = os.cpu_count() or 1
    extra = shlex.split(args.train_args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if args.shape:
            from serve_backends import write_checkpoint

            model = str(write_checkpoint(args.shape, Path(tmp) / args.shape))
        print(f"fine-tuning scale, {device}; global batch {args.processes}, {args.steps} steps, "
              f"model {args.shape or args.model} {' '.join(extra)}")
        data = write_data(Path(tmp) / "data", args.records)
        for processes in sorted({1, args.processes}):
            threads = max(cores // processes, 1)  # the same cores in total for both layouts
            rows.append(run(processes, args.processes, data, Path(tmp) / f"run{processes}", model, args.steps,
                            threads, extra))
            rows[-1]["threads_per_process"] = threads
    print(f"\n{'processes':>9} {'threads':>7} {'steps':>5} {'tokens':>7} {'train s':>8} {'tokens/s':>9} "
          f"{'peak MB per process':>22}")
    for row in rows:
        if "error" in row:
            print(f"failed: {row['error']}")
            continue
        peaks = ", ".join(f"{p:.0f}" for p in row["peak_mb_per_process"])
        print(f"{row['processes']:>9} {row['threads_per_process']:>7} {row['steps']:>5} {row['tokens']:>7} "
              f"{row['train_seconds']:>8.2f} {row['tokens_per_second']:>9.0f} {peaks:>22}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "load_average": os.getloadavg(), "shape": args.shape,
                               "train_args": extra, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

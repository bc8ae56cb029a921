"""`torchrun --nproc_per_node 2 -m hulumed train` on this CPU machine (gloo), launched as docs/training.md prints it.

Every step one rank holds a text-only example and the other a media example (image or 3D): the data file alternates
them and `--no-shuffle` keeps file order, so the distributed sampler gives rank 0 the even records and rank 1 the
odd ones. A run must be real data parallelism: 8 records, one per rank per step, make 4 optimizer steps (not 8 per
process), the summary is printed once, the final model written once; and its logged losses and final weights
equal a 1-process run with the same global batch (2 records per step) within float tolerance (losses rtol 1e-4;
weights 2e-4 absolute: the 1-process batch pads two sequences into one tensor, and Adam turns that rounding into
at most a fraction of one step, where a rank training alone would differ by whole steps).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import GOLDEN

pytest.importorskip("peft")
INPUTS = GOLDEN / "inputs"
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

TEXT = [("What is the normal resting heart rate?", "Sixty to one hundred beats per minute."),
        ("Name a beta blocker.", "Metoprolol."),
        ("What does CT stand for?", "Computed tomography."),
        ("Is aspirin an anticoagulant?", "It is an antiplatelet drug.")]
MEDIA = {
    "image": [{"type": "image", "image": {"image_path": name}} for name in ("image_a.png", "image_b.png") * 2],
    "3d": [{"type": "3d", "3d": {"image_path": "volume.nii.gz", "nii_num_slices": n}} for n in (4, 2, 3, 4)],
}


def _data(folder: Path, media: str) -> Path:
    """8 records: text, media, text, media, ... (rank 0 text-only, rank 1 media, every step)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("image_a.png", "image_b.png", "volume.nii.gz"):
        shutil.copyfile(INPUTS / name, folder / name)
    lines = []
    for (question, answer), part in zip(TEXT, MEDIA[media]):
        lines.append({"conversation": [{"role": "user", "content": question},
                                       {"role": "assistant", "content": answer}]})
        lines.append({"conversation": [{"role": "user", "content": [part, {"type": "text", "text": "Findings?"}]},
                                       {"role": "assistant", "content": "A small test pattern."}]})
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _train(data: Path, output: Path, processes: int, *extra: str) -> subprocess.CompletedProcess:
    common = ["--model", str(GOLDEN / "tiny-qwen2"), "--data", str(data), "--output", str(output), "--epochs", "1",
              "--no-shuffle", "--lr", "1e-3", "--warmup", "0", "--logging-steps", "1", "--save-steps", "2",
              "--workers", "0", "--precision", "fp32", "--vision", "full", *extra]
    if processes == 1:
        command = [sys.executable, "-m", "hulumed", "train", "--batch-size", "2", *common]
    else:
        torchrun = Path(sys.executable).parent / "torchrun"
        launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
        command = [*launcher, "--nproc_per_node", str(processes), "--master_port", str(_free_port()),
                   "-m", "hulumed", "train", "--batch-size", "1", *common]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _losses(output: Path) -> list[float]:
    state = json.loads((output / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def _weights(output: Path) -> dict[str, torch.Tensor]:
    name = "adapter_model.safetensors" if (output / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(str(output / name))


CASES = {
    "full": ("image", ()),
    "lora": ("image", ("--lora", "--lr", "1e-2", "--lora-dropout", "0")),  # dropout draws differ per rank
    "gradient-checkpointing": ("image", ("--gradient-checkpointing",)),
    "text-3d": ("3d", ()),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_processes_are_data_parallel_and_equal_one_process(tmp_path: Path, case: str):
    media, extra = CASES[case]
    data = _data(tmp_path / "data", media)
    two = _train(data, tmp_path / "two", 2, *extra)
    assert two.returncode == 0, two.stderr[-4000:]
    state = json.loads((tmp_path / "two" / "trainer_state.json").read_text())
    assert state["global_step"] == 4  # 8 records, 2 per step across both ranks: one data-parallel run
    assert two.stdout.count("trained 4 steps") == 1 and "on 2 processes" in two.stdout  # rank 0 alone prints
    assert sorted(p.name for p in (tmp_path / "two").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    one = _train(data, tmp_path / "one", 1, *extra)
    assert one.returncode == 0, one.stderr[-4000:]
    assert json.loads((tmp_path / "one" / "trainer_state.json").read_text())["global_step"] == 4
    torch.testing.assert_close(torch.tensor(_losses(tmp_path / "two")), torch.tensor(_losses(tmp_path / "one")),
                               rtol=1e-4, atol=1e-5)
    got, expected = _weights(tmp_path / "two"), _weights(tmp_path / "one")
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        # Adam divides by the gradient's own scale, so rounding differences of the padded 1-process batch can
        # reach a fraction of a step (seen: 9e-5 with lr 1e-2); a rank training alone differs by whole steps
        torch.testing.assert_close(got[name], tensor, rtol=1e-3, atol=2e-4, msg=name)
    base = load_file(str(GOLDEN / "tiny-qwen2" / "model.safetensors"))
    moved = sum(int(not torch.equal(t, base[n])) for n, t in got.items() if n in base)
    assert moved > 0 or case == "lora"  # the run trained something


def test_fsdp_or_deepspeed_through_the_trainer_is_refused_before_loading_on_cpu(tmp_path: Path):
    if torch.cuda.is_available():
        pytest.skip("the refusal is for machines without CUDA")
    data = _data(tmp_path / "data", "image")
    for flag in (["--fsdp", "full_shard auto_wrap"], ["--deepspeed", str(ROOT / "configs/train/deepspeed/zero3.json")]):
        done = subprocess.run([sys.executable, "-m", "hulumed", "train", "--model", str(GOLDEN / "tiny-qwen2"),
                               "--data", str(data), "--output", str(tmp_path / "out"), "--max-steps", "1", *flag],
                              capture_output=True, text=True, env=ENV, timeout=300)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "needs GPUs" in lines[0] and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert not (tmp_path / "out").exists()


KILLED = """
import os, signal, sys
from transformers import TrainerCallback
from hulumed.cli import build_parser
from hulumed.train.commands import recipe_from_args
from hulumed.train.trainer import run_training

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3 and int(os.environ.get("RANK", "0")) == 0:
            os.kill(os.getpid(), signal.SIGKILL)

run_training(recipe_from_args(build_parser().parse_args(["train", *sys.argv[1:]])), callbacks=[Kill()])
"""


def test_a_killed_torchrun_run_resumes_to_the_uninterrupted_result(tmp_path: Path):
    """Rank 0 is SIGKILLed after step 3 (checkpoint-2 written, checkpoint-4 not); torchrun stops the other rank;
    the same torchrun command again resumes from checkpoint-2 and ends with the uninterrupted run's weights."""
    data = _data(tmp_path / "data", "image")
    reference = _train(data, tmp_path / "reference", 2)
    assert reference.returncode == 0, reference.stderr[-4000:]
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    output = tmp_path / "killed"
    arguments = ["--model", str(GOLDEN / "tiny-qwen2"), "--data", str(data), "--output", str(output), "--epochs", "1",
                 "--no-shuffle", "--lr", "1e-3", "--warmup", "0", "--logging-steps", "1", "--save-steps", "2",
                 "--workers", "0", "--precision", "fp32", "--vision", "full", "--batch-size", "1"]
    killed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                             str(_free_port()), str(script), *arguments], capture_output=True, text=True, env=ENV,
                            timeout=600)
    assert killed.returncode != 0
    assert (output / "checkpoint-2" / "trainer_state.json").is_file() and not (output / "checkpoint-4").exists()
    resumed = _train(data, output, 2)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed from" in resumed.stdout and "checkpoint-2" in resumed.stdout
    torch.testing.assert_close(torch.tensor(_losses(output)), torch.tensor(_losses(tmp_path / "reference")),
                               rtol=1e-6, atol=1e-7)
    got, expected = _weights(output), _weights(tmp_path / "reference")
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-6, atol=1e-7, msg=name)


def test_accelerate_launch_is_data_parallel_on_cpu(tmp_path: Path):
    """`accelerate launch --multi_gpu --num_processes 2 -m hulumed train` (accelerate's multi-process mode; on a
    machine without CUDA it starts the processes through torchrun and the run joins them with gloo). Plain
    `--num_processes 2` (or `--cpu`) starts one process: accelerate's behaviour, documented in docs/training.md."""
    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.exists():
        pytest.skip("accelerate's launcher is not installed beside this python")
    data = _data(tmp_path / "data", "image")
    output = tmp_path / "out"
    done = subprocess.run(
        [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
         "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "hulumed", "train",
         "--model", str(GOLDEN / "tiny-qwen2"), "--data", str(data), "--output", str(output), "--epochs", "1",
         "--no-shuffle", "--workers", "0", "--precision", "fp32", "--batch-size", "1", "--logging-steps", "1"],
        capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads((output / "trainer_state.json").read_text())["global_step"] == 4
    assert done.stdout.count("trained 4 steps") == 1 and "on 2 processes" in done.stdout

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

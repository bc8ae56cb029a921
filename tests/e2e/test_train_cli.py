"""`hulumed train` end to end in subprocesses: a run, and a run killed with SIGKILL then resumed by rerunning
the same command, which must end with the same losses and weights as the uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import GOLDEN
from tests.unit.test_train_data import write_dataset

ROOT = Path(__file__).resolve().parents[2]
STEPS, SAVE_EVERY, KILL_AT = 8, 3, 5

# Runs `hulumed train` in-process with a callback that SIGKILLs the process at the end of step KILL_AT (after
# checkpoint-3, before checkpoint-6). It first checks that building the CLI imports no training dependency.
KILLED_CHILD = f"""
import os, signal, sys
from hulumed.cli import build_parser
args = build_parser().parse_args(sys.argv[1:])
heavy = [m for m in ("peft", "hulumed.train.trainer", "transformers.trainer") if m in sys.modules]
assert not heavy, f"building the CLI imported {{heavy}}"
from transformers import TrainerCallback
from hulumed.train.commands import recipe_from_args
from hulumed.train.trainer import run_training

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == {KILL_AT}:
            os.kill(os.getpid(), signal.SIGKILL)

run_training(recipe_from_args(args), callbacks=[Kill()])
"""


def _command(data: Path, output: Path) -> list[str]:
    return ["train", "--model", str(GOLDEN / "tiny-qwen2"), "--data", str(data), "--media-root", str(data.parent),
            "--output", str(output), "--max-steps", str(STEPS), "--save-steps", str(SAVE_EVERY), "--batch-size", "2",
            "--lr", "1e-3", "--logging-steps", "1", "--workers", "0", "--seed", "7"]


def _run(arguments: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    # one thread: tiny matrices gain nothing from more, and on a shared CPU thread contention costs ~10x
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.run(arguments, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _losses(output: Path) -> dict[int, float]:
    state = json.loads((output / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("train-cli") / "data")


@pytest.fixture(scope="module")
def uninterrupted(data) -> Path:
    output = data.parent.parent / "run"
    done = _run([sys.executable, "-m", "hulumed", *_command(data, output)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"trained {STEPS} steps" in done.stdout
    return output


def test_train_runs_end_to_end_and_writes_a_loadable_checkpoint(uninterrupted):
    from transformers import AutoModelForCausalLM, AutoProcessor

    import hulumed  # noqa: F401

    assert sorted(p.name for p in uninterrupted.glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-8"]
    assert len(_losses(uninterrupted)) == STEPS
    model = AutoModelForCausalLM.from_pretrained(uninterrupted)
    processor = AutoProcessor.from_pretrained(uninterrupted)
    image = {"type": "image", "image": {"image_path": str(GOLDEN / "inputs" / "image_a.png")}}
    conversation = [{"role": "user", "content": [image, {"type": "text", "text": "Describe the image."}]}]
    inputs = processor(conversation=conversation, add_system_prompt=True, add_generation_prompt=True,
                       return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape == (1, 3)


def test_killed_run_resumes_to_the_same_result(data, uninterrupted):
    from safetensors.torch import load_file

    output = data.parent.parent / "killed"
    killed = _run([sys.executable, "-c", KILLED_CHILD, *_command(data, output)])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (output / "checkpoint-3" / "trainer_state.json").is_file()
    assert not (output / "checkpoint-6").exists() and not (output / "model.safetensors").exists()

    resumed = _run([sys.executable, "-m", "hulumed", *_command(data, output)])  # the same command again
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "checkpoint-3" in resumed.stdout

    expected, got = _losses(uninterrupted), _losses(output)
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6), (step, got, expected)
    final, reference = load_file(output / "model.safetensors"), load_file(uninterrupted / "model.safetensors")
    assert final.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(final[name], reference[name], atol=1e-6, rtol=1e-5)

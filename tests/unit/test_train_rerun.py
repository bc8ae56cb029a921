"""Rerunning a finished training run (``resume: auto``) leaves it as it is: no extra step, no new checkpoint,
the saved model untouched; raising ``max_steps`` continues it."""

from __future__ import annotations

import json

from hulumed.train.trainer import run_training
from tests.unit.test_train_data import RECORDS, write_dataset
from tests.unit.test_train_model import _recipe


def _state(output) -> dict:
    return json.loads((output / "trainer_state.json").read_text())


def test_rerun_of_a_finished_run_changes_nothing(tmp_path):
    data = write_dataset(tmp_path / "data", RECORDS[:2])
    output = tmp_path / "out"
    first = run_training(_recipe(tmp_path, data, max_steps=3, save_steps=3, resume="auto"))
    assert first.global_step == 3 and _state(output)["global_step"] == 3
    weights = sorted(output.glob("*.safetensors"))
    stamps = {p: p.stat().st_mtime_ns for p in weights}
    checkpoints = sorted(p.name for p in output.glob("checkpoint-*"))
    for _ in range(2):
        again = run_training(_recipe(tmp_path, data, max_steps=3, save_steps=3, resume="auto"))
        assert again.global_step == 3, "a finished run trained again"
        assert _state(output)["global_step"] == 3
        assert sorted(p.name for p in output.glob("checkpoint-*")) == checkpoints
        assert {p: p.stat().st_mtime_ns for p in weights} == stamps
    longer = run_training(_recipe(tmp_path, data, max_steps=4, save_steps=3, resume="auto"))
    assert longer.global_step == 4 and _state(output)["global_step"] == 4

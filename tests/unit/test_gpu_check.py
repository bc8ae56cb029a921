"""benchmarks/gpu_check.sh in its dry mode: every step's script runs on CPU (fp32 golden cases must agree)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_mode_runs_and_golden_fp32_agrees(tmp_path):
    env = dict(os.environ, HULUMED_RESULTS=str(tmp_path), PYTHONPATH=str(ROOT))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the script's `python` is ours
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((tmp_path / "gpu_check_dry.json").read_text())["rows"]
    assert rows and all(r["tokens_equal"] == r["tokens"] for r in rows), rows
    assert all(r["max_logit_diff"] < 1e-3 for r in rows)
    bench = json.loads((tmp_path / "serve_backends_dry.json").read_text())
    assert {r["concurrency"] for r in bench["rows"]} == {1, 2}


def test_gpu_train_check_dry_mode_runs_every_step(tmp_path):
    """benchmarks/gpu_train_check.sh --dry: LoRA, full and the 2-process step on CPU, each a table row with tokens."""
    env = dict(os.environ, HULUMED_RESULTS=str(tmp_path), PYTHONPATH=str(ROOT))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_train_check.sh"), "--dry"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    for name, processes in (("train_lora", [1]), ("train_full", [1]), ("train_ddp", [1, 2])):
        rows = json.loads((tmp_path / f"{name}.json").read_text())["rows"]
        assert [r.get("processes") for r in rows] == processes, rows
        assert all(r["tokens"] > 0 and r["steps"] == 2 and len(r["peak_mb_per_process"]) == r["processes"]
                   for r in rows)
    ddp = json.loads((tmp_path / "train_ddp.json").read_text())["rows"]
    assert ddp[0]["tokens"] == ddp[1]["tokens"]  # the same work on 1 and 2 processes

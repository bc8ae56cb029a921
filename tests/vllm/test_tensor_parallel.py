"""tensor_parallel_size=2 gives the same prompt ids and greedy tokens as the transformers engine (which the
single-rank vLLM engine equals, test_parity), so TP=2 == TP=1 on every parity case. Two CPU ranks, one core each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from .conftest import cases, hf_reference


def test_tp2_equals_single_rank(tiny_vllm_checkpoint, media, tmp_path):
    import hulumed

    conversations = cases(media)
    (tmp_path / "cases.json").write_text(json.dumps(conversations))
    env = dict(os.environ, VLLM_CPU_OMP_THREADS_BIND="0|1", VLLM_CPU_NUM_OF_RESERVED_CPU="0",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))
    script = Path(__file__).with_name("run_cases.py")
    run = subprocess.run(
        [sys.executable, str(script), str(tiny_vllm_checkpoint), str(tmp_path / "cases.json"),
         str(tmp_path / "out.json"), "2"], check=False, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    hf = hulumed.load(tiny_vllm_checkpoint)
    for name, conversation in conversations.items():
        prompt, tokens = hf_reference(hf, conversation)
        assert out[name]["prompt_ids"] == prompt, name
        assert out[name]["token_ids"] == tokens, name

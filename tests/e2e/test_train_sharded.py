"""Sharded engines with mixed modalities: FSDP2 `fully_shard` and the DeepSpeed ZeRO-2 / ZeRO-3 engines, a text-only
rank beside an image rank for 3 optimizer steps through the model's own forward (tests/e2e/sharded_worker.py,
launched with torchrun, gloo on CPU).

Before the vision pass moved into the model's training forward (and before the model stopped indexing
`embed_tokens.weight` outside that module's forward, which ZeRO-3 answers with an all-gather on that rank alone),
the ranks issued different collectives and step 0 failed with a size mismatch. transformers' Trainer does not
drive these engines on a CPU-only host, so the engines are driven directly here; the Trainer path is the DDP
test (test_train_launch.py).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("sharded_worker.py")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def extensions_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DeepSpeed JIT-builds its CPU ops on first use under a file lock; a run killed during that build leaves the
    lock in ~/.cache/torch_extensions and every later ZeRO start waits on it forever. The tests build into their
    own folder (once per session) so a stale lock elsewhere cannot hang them."""
    return tmp_path_factory.mktemp("torch_extensions")


@pytest.mark.parametrize("engine,vision", [("fsdp2", "full"), ("fsdp2", "frozen"), ("zero3", "full"),
                                           ("zero3", "frozen"), ("zero2", "full")])
def test_a_text_rank_beside_an_image_rank_trains_on_sharded_engines(tmp_path: Path, engine: str, vision: str,
                                                                      extensions_dir: Path):
    if engine.startswith("zero"):
        pytest.importorskip("deepspeed")
    out = tmp_path / "result.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
           "TORCH_EXTENSIONS_DIR": str(extensions_dir)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_port()),
               str(WORKER), engine, vision, str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads(Path(f"{out}.{rank}").read_text()) for rank in (0, 1)]
    assert ranks[0]["digest"] == ranks[1]["digest"]  # the same full weights on both ranks after 3 steps
    for result in ranks:
        losses = result["losses"]
        assert len(losses) == 3 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert ranks[0]["losses"][0] != ranks[1]["losses"][0]  # the ranks really had different batches

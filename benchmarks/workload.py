"""The request mix the batching benchmarks share: alternating text and image prompts, and their common flags."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "tests" / "fixtures" / "golden" / "inputs" / "image_a.png"
TEXT_PROMPT = "Explain finding {} in a chest CT."
IMAGE_PROMPT = "Describe."


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --device, --requests, --max-tokens (greedy with ignore_eos: every answer has exactly that many)."""
    parser.add_argument("--model", default=str(ROOT / "tests" / "fixtures" / "golden" / "tiny-qwen2"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=16)


def is_image(i: int) -> bool:
    """Request i carries the image (odd i) or is text only (even i)."""
    return i % 2 == 1

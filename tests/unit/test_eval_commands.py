"""``hulumed eval``'s parser and ``--list`` import neither torch nor transformers (nor numpy, PIL, pyarrow, httpx):
heavy modules are imported inside the run function, so ``hulumed eval --list`` works on a machine without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# hulumed/__init__.py is bypassed (it loads the model classes): the eval package is imported on its own.
PROBE = """
import argparse, sys, types
package = types.ModuleType("hulumed"); package.__path__ = [sys.argv[1] + "/hulumed"]; sys.modules["hulumed"] = package
from hulumed.eval import commands
parser = argparse.ArgumentParser(); commands.register(parser.add_subparsers())
args = parser.parse_args(["eval", "--list", "--endpoint", "http://a/v1", "--endpoint", "http://b/v1"])
assert args.endpoint == ["http://a/v1", "http://b/v1"] and args.concurrency == 4
assert "M3D_VQA_test.csv" in commands.list_benchmarks() and "H. None" in commands.list_benchmarks()
heavy = sorted(m for m in ("torch", "transformers", "numpy", "PIL", "pyarrow", "httpx") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_parser_and_list_need_no_heavy_imports() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, str(REPO)], check=False, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"


def test_protocol_paper_sets_upstream_scoring_and_needs_a_judge() -> None:
    import argparse

    from hulumed.eval.commands import apply_protocol

    args = argparse.Namespace(protocol="paper", scoring="fixed", judge_url=None, judge_model=None)
    with pytest.raises(ValueError, match="--protocol paper needs an LLM judge"):
        apply_protocol(args)
    args.judge_url = "http://127.0.0.1:9/v1"
    apply_protocol(args)
    assert args.scoring == "upstream" and args.judge_model == "gpt-4.1"
    plain = argparse.Namespace(protocol=None, scoring="fixed", judge_url=None, judge_model=None)
    apply_protocol(plain)
    assert plain.scoring == "fixed" and plain.judge_model is None


def test_eval_takes_the_same_load_options_as_generate():
    from hulumed.cli import build_parser

    args = build_parser(["eval"]).parse_args(
        ["eval", "--model", "m", "--attn", "eager", "--quantization", "4bit", "--revision", "v1", "--backend", "vllm",
         "--max-batch-tokens", "4096", "--device", "cpu"])
    assert (args.attn_implementation, args.quantization, args.revision, args.backend, args.max_batch_tokens,
            args.device) == ("eager", "4bit", "v1", "vllm", 4096, "cpu")

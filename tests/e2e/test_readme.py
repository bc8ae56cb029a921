"""The README's commands and example run as written (docs that cannot drift)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GOLDEN

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _code_block_after(marker: str) -> str:
    match = re.search(re.escape(marker) + r"\s*```python\n(.*?)```", README, re.S)
    assert match, f"README lost its block after {marker}"
    return match.group(1)


def test_ci_runs_exactly_the_readme_test_command():
    block = re.search(r"## Run the tests\s*```bash\n(.*?)\n```", README, re.S)
    assert block, "README lost its test command"
    command = block.group(1).strip()
    assert command.splitlines()[-1] in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
def test_transformers_example_runs_without_remote_code(variant, capsys):
    code = _code_block_after("<!-- example: transformers -->")
    assert "trust_remote_code" not in code
    code = code.replace('"ZJU-AI4H/Hulu-Med-7B"', repr(str(GOLDEN / variant)))
    code = code.replace('"chest_xray.png"', repr(str(GOLDEN / "inputs" / "image_a.png")))
    code = code.replace("max_new_tokens=1024", "max_new_tokens=8")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert type(namespace["model"]).__name__.startswith("HulumedQwen")
    assert isinstance(namespace["answer"], str) and namespace["answer"]
    assert capsys.readouterr().out.strip() == namespace["answer"]


def test_first_readme_command_runs(tmp_path):
    """The install-and-run line: everything after the pip install, run as written (in a scratch folder)."""
    line = next(x for x in README.splitlines() if x.startswith("pip install") and "make-tiny" in x)
    steps = [step.strip() for step in line.split("&&")[1:]]
    assert steps[0].startswith("hulumed make-tiny") and steps[1].startswith("hulumed generate")
    for step in steps:
        args = [a.strip('"') for a in re.findall(r'"[^"]*"|\S+', step)][1:]
        args = [str(ROOT / a) if a.startswith("tests/") else a for a in args]
        done = subprocess.run([sys.executable, "-m", "hulumed", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "tiny-hulumed" / "model.safetensors").is_file()


@pytest.mark.parametrize("media", [["--volume", "inputs/volume.nii.gz", "--slices", "8"], ["--video", "inputs/video_frames"], []])
def test_quickstart_other_modalities(media):
    args = [a if not a.startswith("inputs/") else str(GOLDEN / a) for a in media]
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--model", str(GOLDEN / "tiny-qwen3"), *args,
         "--max-new-tokens", "4", "What do you see?"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()


def test_fine_tuning_command_from_readme_runs(tmp_path):
    line = next(x for x in README.splitlines() if x.startswith('pip install -e ".[train]"'))
    steps = [step.strip() for step in line.split("&&")[1:]]
    assert steps[0].startswith("hulumed data check") and steps[1].startswith("hulumed train")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for step in steps:
        args = [str(ROOT / a) if a.startswith(("tests/", "examples/")) else a for a in step.split()[1:]]
        args = [str(tmp_path / a) if a.startswith("runs/") else a for a in args]
        done = subprocess.run([sys.executable, "-m", "hulumed", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "runs" / "tiny-lora").is_dir()

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


@pytest.mark.parametrize("media", [["--volume", "inputs/volume.nii.gz", "--slices", "8"],
                                   ["--video", "inputs/video_frames"], []])
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


def upstream_as_documented(code: str, model_path: Path) -> str:
    """Upstream's Option-1 code with exactly the changes the README lists (and nothing else)."""
    code = code.replace('"ZJU-AI4H/Hulu-Med-7B"', repr(str(model_path)))
    code = re.sub(r"^\s*trust_remote_code=True,?\n", "", code, flags=re.M)
    code = code.replace(".cuda()", ".to(model.device)")
    return code


def _demo_folder(root: Path) -> None:
    """Upstream's ./demo files, stood in for by the fixture inputs (same kinds: images, NIfTI, mp4)."""
    import gzip
    import shutil

    demo = root / "demo"
    demo.mkdir()
    inputs = GOLDEN / "inputs"
    for name, source in {"demo.jpg": "image_a.png", "demo1.jpg": "image_a.png", "demo2.jpg": "image_b.png",
                         "XRay.jpg": "image_a.png", "pathology.png": "image_b.png",
                         "1min_demo.mp4": "video.mp4"}.items():
        shutil.copyfile(inputs / source, demo / name)
    (demo / "amos_0013.nii").write_bytes(gzip.decompress((inputs / "volume.nii.gz").read_bytes()))


def _stops_at_once(source: Path, out: Path) -> Path:
    """A copy of a tiny checkpoint whose every token ends the answer (generation_config ``eos_token_id``): the
    examples ask for up to 4096 tokens, which a tiny random model seldom stops before; media, prompt and the
    generate call are exercised the same."""
    import json
    import shutil

    shutil.copytree(source, out)
    vocab = json.loads((out / "config.json").read_text())["vocab_size"]
    generation = json.loads((out / "generation_config.json").read_text())
    generation["eos_token_id"] = list(range(vocab))
    (out / "generation_config.json").write_text(json.dumps(generation))
    return out


def test_upstream_option1_examples_run_with_only_the_documented_changes(tmp_path, monkeypatch, capsys):
    from tests.e2e.upstream_option1 import EXAMPLES, LOAD

    checkpoint = _stops_at_once(GOLDEN / "tiny-qwen3", tmp_path / "tiny")
    changes = _code_block_after("<!-- upstream option 1 changes -->")
    assert changes.startswith("import hulumed") and ".to(model.device)" in changes
    _demo_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile("import hulumed\n" + upstream_as_documented(LOAD, checkpoint), "option1", "exec"),
         namespace)  # noqa: S102 - upstream's README code
    model = namespace["model"]
    assert type(model).__name__ == "HulumedQwen3ForCausalLM" and model.config._attn_implementation == "sdpa"
    capsys.readouterr()
    for name, code in EXAMPLES.items():
        exec(compile(upstream_as_documented(code, checkpoint), name, "exec"), namespace)  # noqa: S102
        answer = namespace.get("outputs_no_think" if "outputs_no_think" in code else "outputs")
        assert isinstance(answer, str), name
        assert capsys.readouterr().out == answer + "\n", name


def test_eval_summary_example_shows_the_registered_versions():
    from hulumed.eval.benchmarks import get_benchmark

    rows = re.findall(r"^\| (\w+) \| (\d+) \| (?:fixed|upstream) \|", README, re.M)
    assert rows, "README lost its summary.md example"
    for name, version in rows:
        assert version == str(get_benchmark(name).version), name


def test_readme_curl_example_runs_against_the_server(tmp_path):
    """The curl example (request built into a file, no inlined base64) as written, against a live server."""
    import json

    import hulumed
    from hulumed.serve.background import serving
    from hulumed.serve.settings import ServerSettings

    block = re.search(r"<!-- example: curl -->\s*```bash\n(.*?)```", README, re.S).group(1)
    assert "$(base64" not in block and "-d @request.json" in block
    (tmp_path / "cxr.png").write_bytes((GOLDEN / "inputs" / "image_a.png").read_bytes())
    engine = hulumed.load(GOLDEN / "tiny-qwen2", device="cpu")
    with serving(engine, ServerSettings(model_name="ZJU-AI4H/Hulu-Med-7B")) as url:
        script = block.replace("http://127.0.0.1:8000", url)
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["object"] == "chat.completion", reply
    assert reply["usage"]["prompt_tokens_details"]["visual_tokens"] == 35


def test_readme_structured_output_example_runs_against_the_server(tmp_path):
    """The structured-output example as written (only the URL changed): its answer parses and has the fields."""
    import hulumed
    from hulumed.serve.background import serving
    from hulumed.serve.settings import ServerSettings

    block = re.search(r"<!-- example: structured -->\s*```python\n(.*?)```", README, re.S).group(1)
    (tmp_path / "cxr.png").write_bytes((GOLDEN / "inputs" / "image_a.png").read_bytes())
    engine = hulumed.load(GOLDEN / "tiny-qwen2", device="cpu")
    with serving(engine, ServerSettings(model_name="ZJU-AI4H/Hulu-Med-7B")) as url:
        script = block.replace("http://127.0.0.1:8000", url)
        done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
    assert done.returncode == 0, done.stderr
    urgency = done.stdout.split()[0]
    assert urgency in ("routine", "urgent", "critical"), done.stdout


def test_training_doc_eval_commands_parse():
    """docs/training.md section 4's eval commands use options that exist."""
    from hulumed.cli import build_parser

    doc = (ROOT / "docs" / "training.md").read_text()
    section = doc.split("## 4.", 1)[1].split("## 5.", 1)[0]
    assert "being built" not in section
    commands = [line.split("#")[0].split() for line in section.splitlines() if line.startswith("hulumed eval")]
    assert len(commands) >= 3
    for words in commands:
        args = build_parser(words[1:]).parse_args(words[1:])
        assert args.verb == "eval"

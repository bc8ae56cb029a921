"""Every CLI verb end to end in a subprocess, on a tiny checkpoint made by `hulumed make-tiny`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import GOLDEN

INPUTS = GOLDEN / "inputs"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def hulumed(*args: str, stdin: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hulumed", *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=ENV
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    done = hulumed("make-tiny", str(out), "--variant", "qwen3", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert (out / "model.safetensors").is_file() and (out / "chat_template.json").is_file()
    return out


def registered_verbs() -> list[str]:
    from hulumed.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "verb")
    return sorted(action.choices)


def test_registry_has_the_inference_verbs():
    assert {"generate", "chat", "batch", "info", "estimate", "make-tiny"} <= set(registered_verbs())


@pytest.mark.parametrize("verb", registered_verbs())
def test_every_verb_has_help(verb, capsys):
    from hulumed.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0 and "usage: hulumed" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    done = hulumed("--version")
    assert done.returncode == 0 and done.stdout.startswith("hulumed ")


def test_generate_streams_the_same_text_as_json(tiny):
    media = ["--image", str(INPUTS / "image_a.png"), "--max-new-tokens", "12", "--greedy"]
    streamed = hulumed("generate", "--model", str(tiny), *media, "Describe this image.")
    as_json = hulumed("generate", "--model", str(tiny), *media, "--json", "Describe this image.")
    assert streamed.returncode == 0 and as_json.returncode == 0, streamed.stderr + as_json.stderr
    result = json.loads(as_json.stdout)
    assert streamed.stdout == result["text"] + "\n"
    assert result["visual_tokens"] == 35 and result["completion_tokens"] == 12


def test_generate_volume_and_video(tiny):
    volume = hulumed("generate", "--model", str(tiny), "--volume", str(INPUTS / "volume.nii.gz"), "--slices", "4",
                     "--max-new-tokens", "4", "--json", "Report.")
    video = hulumed("generate", "--model", str(tiny), "--video", str(INPUTS / "video_frames"), "--fps", "3",
                    "--max-new-tokens", "4", "--json", "--think", "What moves?")
    assert volume.returncode == 0 and video.returncode == 0, volume.stderr + video.stderr
    assert json.loads(volume.stdout)["visual_tokens"] == 4 * 16  # 40x40 slices: 4x4 merged tokens each
    assert json.loads(video.stdout)["visual_tokens"] == 6 * 20


def test_generate_bad_media_is_a_clean_error(tiny, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    done = hulumed("generate", "--model", str(tiny), "--image", str(broken), "x")
    assert done.returncode == 1
    assert "error:" in done.stderr and "Traceback" not in done.stderr


def test_info_and_estimate(tiny):
    info = hulumed("info", str(tiny))
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["model_type"] == "hulumed_qwen3" and data["use_token_compression"] is False
    assert data["parameters"] == sum(data["parameters_by_part"].values())
    assert data["chat_template"]["system_prompt"] == "You are a helpful medical assistant."
    estimate = hulumed("estimate", "--model", str(tiny), "--volume", str(INPUTS / "volume.nii.gz"), "--slices", "8",
                       "--json", "Report.")
    assert estimate.returncode == 0, estimate.stderr
    assert json.loads(estimate.stdout)["visual_tokens"] == 8 * 16


def test_missing_model_is_a_clean_error(tmp_path):
    done = hulumed("info", str(tmp_path / "nowhere"))
    assert done.returncode == 1 and "error:" in done.stderr and "Traceback" not in done.stderr


def test_chat_session(tiny):
    script = f"/image {INPUTS / 'image_b.png'}\nWhat is this?\n/think\nAnd now?\n/image /no/such.png\nBroken?\n/reset\nHi\n/quit\n"
    done = hulumed("chat", "--model", str(tiny), "--max-new-tokens", "5", "--greedy", stdin=script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("hulumed>") == 4  # three answers and the failed turn's prompt
    assert "think mode on" in done.stderr and "error:" in done.stderr and "cleared" in done.stderr


def _requests(path: Path, n: int) -> list[str]:
    lines = []
    for i in range(n):
        if i % 3 == 0:
            record = {"id": f"r{i}", "prompt": f"Question {i}?", "max_new_tokens": 6, "do_sample": False}
        elif i % 3 == 1:
            record = {"id": f"r{i}", "prompt": "Describe.", "images": ["image_a.png"], "max_new_tokens": 6,
                      "do_sample": False}
        else:
            record = {"id": f"r{i}", "conversation": [{"role": "user", "content": [
                {"type": "3d", "3d": {"image_path": "volume.nii.gz", "nii_num_slices": 4}},
                {"type": "text", "text": "Report."}]}], "max_new_tokens": 6, "do_sample": False}
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return [f"r{i}" for i in range(n)]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_job_with_bad_lines(tiny, tmp_path):
    requests = tmp_path / "requests.jsonl"
    ids = _requests(requests, 6)
    with requests.open("a") as handle:
        handle.write("{not json\n")
        handle.write(json.dumps({"id": "missing", "prompt": "x", "images": ["nope.png"]}) + "\n")
        handle.write(json.dumps({"id": "r0", "prompt": "duplicate id"}) + "\n")
        handle.write(json.dumps({"id": "bad-params", "prompt": "x", "top_p": 7}) + "\n")
    out = tmp_path / "out.jsonl"
    done = hulumed("batch", "--model", str(tiny), "--input", str(requests), "--output", str(out), "--batch-size",
                   "4", "--media-root", str(INPUTS), "--no-progress")
    assert done.returncode == 0, done.stderr
    records = {r["id"]: r for r in _read(out)}
    assert len(_read(out)) == len(records) == 9
    for i in ids:
        assert "text" in records[i] and records[i]["usage"]["completion_tokens"] <= 6
    assert "malformed JSON" in records["line-7"]["error"]
    assert "error" in records["missing"] and "error" in records["bad-params"]
    assert records["r1"]["usage"]["visual_tokens"] == 35


def test_batch_job_killed_half_way_resumes_with_every_id_once(tiny, tmp_path):
    requests = tmp_path / "requests.jsonl"
    ids = _requests(requests, 12)
    reference = tmp_path / "reference.jsonl"
    args = ["batch", "--model", str(tiny), "--input", str(requests), "--batch-size", "2", "--media-root", str(INPUTS),
            "--no-progress"]
    assert hulumed(*args, "--output", str(reference)).returncode == 0
    out = tmp_path / "out.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "hulumed", *args, "--output", str(out)], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = len(_read(out)) if out.exists() else 0
    assert 0 < partial < len(ids), "the job should have been killed part-way"
    assert hulumed(*args, "--output", str(out)).returncode == 0
    records = _read(out)
    assert sorted(r["id"] for r in records) == sorted(ids)
    expected = {r["id"]: r["text"] for r in _read(reference)}
    assert {r["id"]: r["text"] for r in records} == expected


def test_torn_last_line_is_repaired(tmp_path):
    from hulumed.batch_job import done_ids

    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": "a", "text": "x"}) + "\n" + '{"id": "b", "te')
    assert done_ids(out) == {"a"}
    assert out.read_text().endswith("\n") and out.read_text().count("\n") == 1


def test_generate_volume_window_options(tiny):
    common = ["generate", "--model", str(tiny), "--volume", str(INPUTS / "volume.nii.gz"), "--slices", "4",
              "--max-new-tokens", "4", "--greedy", "--json"]
    windowed = hulumed(*common, "--window", "lung", "--orientation", "ras", "Report.")
    assert windowed.returncode == 0, windowed.stderr
    assert json.loads(windowed.stdout)["visual_tokens"] == 4 * 16
    bad = hulumed(*common, "--window", "nonsense", "Report.")
    assert bad.returncode == 1 and "Unknown window" in bad.stderr and "Traceback" not in bad.stderr

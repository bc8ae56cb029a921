"""Every CLI verb end to end in a subprocess, on a tiny checkpoint made by `hulumed make-tiny`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
    script = (f"/image {INPUTS / 'image_b.png'}\nWhat is this?\n/think\nAnd now?\n/image /no/such.png\nBroken?\n"
              "/reset\nHi\n/quit\n")
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


# ---------------------------------------------------------------------------------------------- first run (issue 15)
def _no_torch(argv: list[str]) -> subprocess.CompletedProcess:
    """Run ``hulumed.cli.main(argv)`` in a fresh interpreter; its last stdout line says whether torch got imported."""
    code = (
        "import sys\nfrom hulumed.cli import main\ntry:\n    code = main(%r)\n"
        "except SystemExit as e:\n    code = e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)" % (argv,)
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["eval", "--list"], ["generate", "--help"],
                                  ["serve", "--help"], ["train", "--help"], ["generate", "--model", "m", "--imgae",
                                                                             "x.png", "hi"], ["genrate"]])
def test_cheap_commands_do_not_import_torch(argv):
    done = _no_torch(argv)
    assert done.stdout.strip().splitlines()[-1].startswith("NO-TORCH"), done.stdout[-500:] + done.stderr[-2000:]


def test_import_hulumed_does_not_import_torch():
    code = "import sys, hulumed; print(hulumed.__version__, 'torch' in sys.modules, 'transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV)
    assert done.stdout.split() == ["0.1.0", "False", "False"], done.stderr


@pytest.mark.parametrize("prelude", [
    "import hulumed\nfrom transformers import AutoModelForCausalLM, AutoProcessor",
    "from transformers import AutoModelForCausalLM, AutoProcessor\nimport hulumed",
    "import hulumed\nfrom transformers import Qwen2ForCausalLM\n"
    "from transformers import AutoModelForCausalLM, AutoProcessor",
    "import hulumed\nfrom transformers.models.auto.processing_auto import AutoProcessor\n"
    "from transformers.models.auto.modeling_auto import AutoModelForCausalLM",
])
def test_auto_classes_find_hulumed_whatever_the_import_order(prelude):
    model = GOLDEN / "tiny-qwen2"
    code = (f"{prelude}\nm = AutoModelForCausalLM.from_pretrained({str(model)!r})\n"
            f"p = AutoProcessor.from_pretrained({str(model)!r})\nprint(type(m).__name__, type(p).__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["HulumedQwen2ForCausalLM", "HulumedProcessor"]


def test_lazy_attribute_registers_the_auto_classes():
    code = ("import hulumed\nassert hulumed.HulumedQwen3Config.model_type == 'hulumed_qwen3'\n"
            "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\n"
            "print(CONFIG_MAPPING['hulumed_qwen3'].__name__, hulumed.load.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=ENV)
    assert done.stdout.split() == ["HulumedQwen3Config", "hulumed.loading"], done.stderr[-2000:]


def _flash_attn_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


@pytest.mark.skipif(_flash_attn_installed(), reason="flash-attn is installed: its kernels are used")
def test_flash_attention_request_without_flash_attn_falls_back_to_sdpa():
    import warnings

    from transformers import AutoModelForCausalLM

    import hulumed  # noqa: F401

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = AutoModelForCausalLM.from_pretrained(GOLDEN / "tiny-qwen3", attn_implementation="flash_attention_2",
                                                     device_map="auto")
    mentions = [w for w in caught if "flash-attn is not installed" in str(w.message)]
    assert len(mentions) == 1
    assert model.config._attn_implementation == "sdpa"
    assert model.model.vision_encoder.config._attn_implementation == "sdpa"


class _Running:
    """A ``hulumed`` process whose stdout / stderr are collected by threads while it runs."""

    def __init__(self, args: list[str]) -> None:
        import threading

        self.process = subprocess.Popen([sys.executable, "-m", "hulumed", *args], env=ENV, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        for stream, sink in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=lambda s=stream, k=sink: [k.append(c) for c in iter(lambda: s.read1(4096), b"")],
                             daemon=True).start()

    @property
    def stdout(self) -> str:
        return b"".join(self.out).decode(errors="replace")

    @property
    def stderr(self) -> str:
        return b"".join(self.err).decode(errors="replace")

    def send(self, text: str) -> None:
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def interrupt_when(self, streaming: Any, timeout: float = 240) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and not streaming(self.stdout) and self.process.poll() is None:
            time.sleep(0.05)
        assert streaming(self.stdout), "the answer should have been streaming: " + self.stderr[-2000:]
        self.process.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 120) -> int:
        self.process.stdin.close()
        code = self.process.wait(timeout=timeout)
        time.sleep(0.2)  # let the reader threads drain
        return code


def test_ctrl_c_stops_generate_cleanly(tiny):
    run = _Running(["generate", "--model", str(tiny), "--max-new-tokens", "20000", "--ignore-eos",
                    "Tell me everything."])
    run.interrupt_when(lambda out: len(out) > 20)
    assert run.finish() == 130, run.stderr[-2000:]
    assert "terminate called" not in run.stderr and "Traceback" not in run.stderr and "(stopped)" in run.stderr


def test_ctrl_c_in_chat_stops_the_answer_and_keeps_the_conversation(tiny):
    run = _Running(["chat", "--model", str(tiny), "--max-new-tokens", "20000", "--ignore-eos"])
    run.send("Tell me everything.\n")
    run.interrupt_when(lambda out: len(out.split("hulumed>", 1)[-1]) > 20 and "hulumed>" in out)
    run.send("/history\n/quit\n")
    assert run.finish() == 0, run.stderr[-2000:]
    stderr = run.stderr
    assert "answer stopped" in stderr and "Traceback" not in stderr and "terminate called" not in stderr
    assert "you: Tell me everything." in stderr and "\nhulumed: " in stderr  # the turn and its partial answer


def test_chat_validates_attachments_and_never_exits_on_a_bad_command(tiny, tmp_path):
    script = "\n".join([
        "/image nope.png", f"/image {INPUTS / 'image_a.png'}", "/volume f.nii abc",
        f"/volume {INPUTS / 'volume.nii.gz'} zero", "/bogus", "What is this?", "/history", "/quit"]) + "\n"
    done = hulumed("chat", "--model", str(tiny), "--max-new-tokens", "4", "--greedy", stdin=script)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("(error:") == 3 and "nope.png" in done.stderr and "/volume SLICES" in done.stderr
    assert "unknown command /bogus" in done.stderr
    assert done.stdout.count("hulumed>") == 1
    assert "you: [image] What is this?" in done.stderr  # the good image went with the message


def test_chat_commands_are_listed_in_both_helps():
    from hulumed.commands import CHAT_HELP

    commands = sorted({word for word in CHAT_HELP.split() if word.startswith("/")})
    top = hulumed("--help").stdout
    chat = hulumed("chat", "--help").stdout
    assert commands == sorted(["/image", "/video", "/volume", "/think", "/history", "/reset", "/help", "/quit"])
    for command in commands:
        assert command in top and command in chat, command


def test_batch_rerun_retries_errors_and_warns_on_duplicate_ids(tiny, tmp_path):
    import shutil

    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        json.dumps({"id": "a", "prompt": "Describe.", "images": ["later.png"], "max_new_tokens": 3}) + "\n"
        + json.dumps({"id": "b", "prompt": "Hi", "max_new_tokens": 3}) + "\n"
        + json.dumps({"id": "b", "prompt": "Hi again", "max_new_tokens": 3}) + "\n"
    )
    out = tmp_path / "out.jsonl"
    args = ["batch", "--model", str(tiny), "--input", str(requests), "--output", str(out), "--no-progress"]
    first = hulumed(*args)
    assert first.returncode == 0, first.stderr
    assert "line 3 repeats id 'b' of line 1" not in first.stderr and "line 3 repeats id 'b' of line 2" in first.stderr
    assert "error" in {r["id"]: r for r in _read(out)}["a"]
    shutil.copyfile(INPUTS / "image_a.png", tmp_path / "later.png")  # the missing image is restored
    second = hulumed(*args)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stderr.strip().splitlines()[-1]) == {"skipped": 1, "answered": 1, "errors": 0}
    records = _read(out)
    assert sorted(r["id"] for r in records) == ["a", "b"] and all("text" in r for r in records)


@pytest.mark.parametrize("argv, expected", [
    (["batch", "--model", "m", "--input", "i", "--output", "o", "--batch-size", "0"],
     "--batch-size: must be at least 1"),
    (["serve", "--model", "m", "--port", "99999"], "--port: 99999 is out of range"),
    (["generate", "--model", "m", "--imgae", "x.png", "hi"], "did you mean: --imgae -> --image"),
    (["genrate", "--model", "m"], "did you mean: genrate -> generate"),
    (["generate", "--model", "m", "--slices", "0", "hi"], "--slices: must be at least 1"),
])
def test_argument_errors_are_one_line(argv, expected):
    done = hulumed(*argv)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr, done.stderr


def test_make_tiny_refuses_to_overwrite(tmp_path):
    """The refusals in-process (no weights involved); the forced write through the installed command."""
    from tests.unit.test_checkpoint_bounds import _cli

    existing = tmp_path / "file.txt"
    existing.write_text("keep me")
    code, err = _cli("make-tiny", str(existing))
    assert code == 1 and "is a file" in err and "Traceback" not in err
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "model.safetensors").write_text("a real checkpoint")
    code, err = _cli("make-tiny", str(folder))
    assert code == 1 and "--force" in err and "Traceback" not in err
    assert (folder / "model.safetensors").read_text() == "a real checkpoint"
    assert hulumed("make-tiny", str(folder), "--force").returncode == 0
    assert (folder / "config.json").is_file()


@pytest.fixture(scope="module")
def unloadable(tiny, tmp_path_factory) -> Path:
    """A checkpoint folder whose weights cannot load: an error about anything else was found before loading."""
    import shutil

    out = tmp_path_factory.mktemp("bad") / "ckpt"
    shutil.copytree(tiny, out)
    (out / "model.safetensors").write_bytes(b"not safetensors")
    return out


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _mps() -> bool:
    import torch

    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


@pytest.mark.parametrize("flags, expected, skip", [
    (["--device", "cuda"], "--device cuda: CUDA is not available", _cuda),
    (["--device", "mps"], "--device mps: MPS (Apple GPU) is not available", _mps),
    (["--attn", "flash_attention_2"], "--attn flash_attention_2 needs the flash-attn package", _flash_attn_installed),
    (["--dtype", "float12"], "unknown dtype 'float12'", lambda: False),
])
def test_load_options_are_checked_before_weights(unloadable, flags, expected, skip):
    if skip():
        pytest.skip("this machine has it")
    for verb in (["generate", "--model", str(unloadable), *flags, "hi"], ["serve", "--model", str(unloadable), *flags]):
        done = hulumed(*verb)
        assert done.returncode == 1 and expected in done.stderr, done.stderr[-2000:]
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("args, expected", [
    (["--video", str(INPUTS / "image_a.png"), "What moves?"], "is a PNG image, not a video; pass it with --image"),
    (["   "], "the prompt is empty"),
    (["--image", "nope.png", "hi"], "--image nope.png: no such file"),
])
def test_bad_requests_are_refused_before_loading(unloadable, args, expected, tmp_path):
    done = hulumed("generate", "--model", str(unloadable), *args)
    assert done.returncode == 1 and expected in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_jpeg_as_video_is_refused(unloadable, tmp_path):
    from PIL import Image

    jpeg = tmp_path / "scan.jpg"
    Image.new("RGB", (8, 8)).save(jpeg)
    done = hulumed("generate", "--model", str(unloadable), "--video", str(jpeg), "What moves?")
    assert done.returncode == 1 and "is a JPEG image, not a video" in done.stderr


def test_lora_adapter_folder_as_model_suggests_merge(tmp_path):
    adapter = tmp_path / "run"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    done = hulumed("generate", "--model", str(adapter), "hi")
    assert done.returncode == 1 and "LoRA adapter" in done.stderr and f"hulumed merge-lora {adapter}" in done.stderr


def test_serve_prints_where_it_listens(tiny):
    import re
    import urllib.request

    run = _Running(["serve", "--model", str(tiny), "--port", "0", "--served-model-name", "tiny"])
    try:
        deadline = time.time() + 240
        while time.time() < deadline and "listening on" not in run.stderr and run.process.poll() is None:
            time.sleep(0.1)
        match = re.search(r"hulumed serve: listening on (http://127\.0\.0\.1:\d+) \(model tiny\)", run.stderr)
        assert match, run.stderr[-2000:]
        with urllib.request.urlopen(match.group(1) + "/v1/models", timeout=30) as response:
            assert json.loads(response.read())["data"][0]["id"] == "tiny"
    finally:
        run.process.send_signal(signal.SIGINT)
        run.process.wait(timeout=60)

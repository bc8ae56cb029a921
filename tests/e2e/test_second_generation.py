"""The second generation (``make-tiny --variant qwen3_vl_moe``) through every edge: CLI verbs in a subprocess,
the OpenAI server with its limits, and eval on one text, one 2D and one 3D benchmark."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import hulumed
from hulumed.generation import GenerationParams
from tests.conftest import GOLDEN

INPUTS = GOLDEN / "inputs"
GREEDY = GenerationParams.greedy(6)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen2") / "tiny-30a3"
    done = subprocess.run([sys.executable, "-m", "hulumed", "make-tiny", "--variant", "qwen3_vl_moe", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def engine(checkpoint):
    loaded = hulumed.load(checkpoint, device="cpu", batch_size=4)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def dicom_zip(tmp_path_factory) -> Path:
    pytest.importorskip("pydicom")
    from tests.unit.media_samples import hu_volume, write_series

    folder = tmp_path_factory.mktemp("series")
    positions = [2.0 * k for k in range(10)]
    paths = write_series(folder / "s", hu_volume(rows=48, columns=40, slices=10), positions=positions)
    archive = folder / "study.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in paths:
            handle.write(path, path.name)
    return archive


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hulumed", *args], capture_output=True, text=True, timeout=300)


def _main(capsys, *args: str) -> tuple[int, str, str]:
    """A verb run in this process (``hulumed.cli.main``): exit code, stdout, stderr."""
    from hulumed.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as stop:  # argparse's own errors
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_info_names_the_generation_and_active_parameters(checkpoint, capsys):
    done = _cli("info", str(checkpoint))  # the installed command, once
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["generation"] == 2 and info["model_type"] == "qwen3_vl_moe" and "mixture of experts" in info["family"]
    assert info["experts"] == 4 and info["experts_per_token"] == 2
    assert 0 < info["active_parameters"] < info["parameters"]
    first = json.loads(_main(capsys, "info", str(GOLDEN / "tiny-qwen2"))[1])
    assert first["generation"] == 1 and "generation 1" in first["family"]


def test_generate_a_dicom_zip_equals_the_engine(checkpoint, engine, dicom_zip):
    done = _cli("generate", "--model", str(checkpoint), "--device", "cpu", "--volume", str(dicom_zip), "--slices", "4",
                "--window", "lung", "--temperature", "0", "--max-new-tokens", "6", "--json", "Findings?")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    volume = {"type": "3d", "3d": {"image_path": str(dicom_zip), "nii_num_slices": 4, "nii_axis": 2, "window": "lung"}}
    [expected] = engine.generate([{"role": "user", "content": [volume, {"type": "text", "text": "Findings?"}]}], GREEDY)
    assert got["token_ids"] == expected.token_ids and got["visual_tokens"] == expected.visual_tokens > 0


def test_estimate_counts_what_generate_sees(checkpoint, engine, capsys):
    code, out, err = _main(capsys, "estimate", "--model", str(checkpoint), "--image", str(INPUTS / "image_a.png"),
                           "--json", "Describe.")
    assert code == 0, err
    report = json.loads(out)
    [result] = engine.generate([hulumed.conversation.user_turn("Describe.", images=[str(INPUTS / "image_a.png")])],
                               GREEDY)
    assert report["prompt_tokens"] == result.prompt_tokens and report["visual_tokens"] == result.visual_tokens
    assert report["weights_bytes"] == 4 * json.loads(_main(capsys, "info", str(checkpoint))[1])["parameters"]


def test_a_video_is_refused_clearly_without_torchvision(checkpoint, capsys):
    from hulumed.processing.qwen3_vl_inputs import torchvision_available

    if torchvision_available():
        pytest.skip("torchvision installed: video runs (tests/parity/test_second_generation.py)")
    code, _, err = _main(capsys, "generate", "--model", str(checkpoint), "--device", "cpu", "--video",
                         str(INPUTS / "video.mp4"), "Hi")
    assert code != 0 and "torchvision" in err and "Traceback" not in err


def _data_uri(path: Path, media_type: str) -> str:
    return f"data:{media_type};base64," + base64.b64encode(path.read_bytes()).decode()


def test_serve_answers_images_and_volumes_as_the_engine(engine, tmp_path):
    pytest.importorskip("fastapi")
    import httpx

    from hulumed.conversation import user_turn
    from hulumed.serve.background import serving
    from hulumed.serve.settings import ServerSettings

    (tmp_path / "ct.nii.gz").write_bytes((INPUTS / "volume.nii.gz").read_bytes())
    settings = ServerSettings(model_name="ZJU-AI4H/Hulu-Med-30A3", media_root=tmp_path, max_tokens_limit=16,
                              max_visual_tokens=20)  # 4 slices of 40 x 40 make 16 tokens, all 12 make 48
    image = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": _data_uri(INPUTS / "image_a.png", "image/png")}},
        {"type": "text", "text": "Describe this image."}]}]
    volume = [{"role": "user", "content": [{"type": "volume_url", "volume_url": {"url": "ct.nii.gz", "slices": 4}},
                                           {"type": "text", "text": "Report."}]}]
    expected_image = engine.generate([user_turn("Describe this image.", images=[str(INPUTS / "image_a.png")])],
                                     GREEDY)[0]
    expected_volume = engine.generate([user_turn("Report.", volume=str(INPUTS / "volume.nii.gz"), slices=4)],
                                      GREEDY)[0]
    with serving(engine, settings) as url:
        for messages, expected in ((image, expected_image), (volume, expected_volume)):
            body = {"model": "ZJU-AI4H/Hulu-Med-30A3", "messages": messages, "max_tokens": 6, "temperature": 0}
            reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
            assert reply.status_code == 200, reply.text
            assert reply.json()["choices"][0]["message"]["content"] == expected.text
            assert reply.json()["usage"]["prompt_tokens"] == expected.prompt_tokens
            with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=120) as r:
                lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ") and line != "data: [DONE]"]
            text = "".join(json.loads(x)["choices"][0]["delta"].get("content") or "" for x in lines
                           if json.loads(x)["choices"])
            assert text == expected.text
        too_many = {"model": "ZJU-AI4H/Hulu-Med-30A3", "max_tokens": 4, "messages": [{"role": "user", "content": [
            {"type": "volume_url", "volume_url": {"url": "ct.nii.gz", "slices": 40}}, {"type": "text", "text": "R"}]}]}
        reply = httpx.post(f"{url}/v1/chat/completions", json=too_many, timeout=120)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "too_many_visual_tokens"  # as gen 1


def test_eval_text_2d_and_3d_benchmarks(engine, tmp_path):
    from hulumed.eval.benchmarks import get_benchmark
    from hulumed.eval.runner import RunOptions, run_benchmark, write_summary
    from tests.unit.test_eval_benchmarks import write_release

    data, out = tmp_path / "data", tmp_path / "out"
    for name in ("MedQA_USMLE", "VQA_RAD", "M3D"):
        expected = write_release(data, name)
        metrics = run_benchmark(engine, get_benchmark(name), data, out, GenerationParams.greedy(3),
                                RunOptions(limit=2))
        assert metrics["count"] == min(2, expected) and metrics["errors"] == {"release_rows": 0, "samples": 0}, name
        assert "generation 2" in metrics["model_family"]
    assert "generation 2 (qwen3_vl_moe, mixture of experts)" in write_summary(out).read_text()


def test_volume_input_video_needs_torchvision_or_matches_frames(checkpoint):
    from hulumed.errors import MediaError
    from hulumed.processing.qwen3_vl_inputs import torchvision_available

    video_engine = hulumed.load(checkpoint, device="cpu", volume_input="video")
    turn = hulumed.conversation.user_turn("Report.", volume=str(INPUTS / "volume.nii.gz"), slices=4)
    if not torchvision_available():
        with pytest.raises(MediaError, match="torchvision"):
            video_engine.prepare([[turn]])
        return
    inputs = video_engine.prepare([[turn]]).inputs[0].inputs
    grid = inputs["video_grid_thw"]
    assert grid.shape == (1, 3) and int(grid[0, 0]) == 2  # 4 slices, temporal patch 2
    assert np.isfinite(inputs["pixel_values_videos"].numpy()).all()


def test_labels_supervise_only_the_answer_and_ids_equal_inference(checkpoint, engine):
    from hulumed.train.labels import IGNORE_INDEX
    from hulumed.train.qwen3_vl_labels import Qwen3VLLabelEncoder

    question = hulumed.conversation.user_turn("Describe the findings.", images=[str(INPUTS / "image_a.png")],
                                              volume=str(INPUTS / "volume.nii.gz"), slices=2)
    answer = {"role": "assistant", "content": "A round opacity."}
    encoded = Qwen3VLLabelEncoder(engine.processor).encode([question, answer])
    prompt = engine.prepare([[question]]).inputs[0].inputs["input_ids"][0].tolist()
    assert encoded.input_ids[:len(prompt)] == prompt  # the prompt is tokenized exactly as at inference
    learned = [t for t in encoded.labels if t != IGNORE_INDEX]
    assert engine.tokenizer.decode(learned) == "A round opacity.<|im_end|>"
    assert all(label == IGNORE_INDEX for label in encoded.labels[:len(prompt)])
    item = encoded.to_item()
    assert item["image_grid_thw"].shape == (3, 3) and item["mm_token_type_ids"].shape == item["input_ids"].shape


def test_train_lora_on_experts_then_merge_and_generate(checkpoint, tmp_path, capsys):
    pytest.importorskip("peft")
    data = tmp_path / "train.jsonl"
    rows = [line for line in (Path(__file__).parents[2] / "examples" / "train.jsonl").read_text().splitlines()
            if '"video"' not in line]
    data.write_text("\n".join(rows) + "\n")
    out, merged = tmp_path / "run", tmp_path / "merged"
    done = _cli("train", "--model", str(checkpoint), "--data", str(data), "--media-root", str(INPUTS), "--output",
                str(out), "--max-steps", "2", "--lora", "--lora-dropout", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["target_parameters"] == ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
    assert "language_model" in adapter["target_modules"]
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as handle:
        names = list(handle.keys())
    assert any("experts" in n for n in names) and any("q_proj.lora_A" in n for n in names)
    code, _, err = _main(capsys, "merge-lora", str(out), "--output", str(merged))
    assert code == 0, err[-2000:]
    code, stdout, err = _main(capsys, "generate", "--model", str(merged), "--device", "cpu", "--volume",
                              str(INPUTS / "volume.nii.gz"), "--slices", "2", "--temperature", "0",
                              "--max-new-tokens", "3", "--json", "Findings?")
    assert code == 0, err[-2000:]
    assert json.loads(stdout)["completion_tokens"] >= 1


def test_train_refuses_token_compression_on_the_second_generation(checkpoint, tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"conversation": [{"role": "user", "content": "Hi?"},
                                                 {"role": "assistant", "content": "Hello."}]}) + "\n")
    code, _, err = _main(capsys, "train", "--model", str(checkpoint), "--data", str(data), "--output",
                         str(tmp_path / "out"), "--max-steps", "1", "--use-token-compression")
    assert code != 0 and "first-generation checkpoints only" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_batch_file_with_images_volumes_and_a_schema(checkpoint, engine, tmp_path):
    lines = [{"id": "a", "prompt": "Describe.", "images": ["image_a.png"], "temperature": 0, "max_new_tokens": 4},
             {"id": "v", "prompt": "Findings?", "volume": "volume.nii.gz", "slices": 3, "temperature": 0,
              "max_new_tokens": 4},
             {"id": "s", "prompt": "Report.", "volume": "volume.nii.gz", "slices": 2, "json_schema": "vqa_answer",
              "max_new_tokens": 64, "temperature": 0},
             {"id": "bad", "prompt": "x", "images": ["missing.png"]}]
    requests, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = _cli("batch", "--model", str(checkpoint), "--device", "cpu", "--input", str(requests), "--output", str(out),
                "--media-root", str(INPUTS), "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    [expected] = engine.generate([hulumed.conversation.user_turn("Findings?", volume=str(INPUTS / "volume.nii.gz"),
                                                                 slices=3)], GenerationParams.greedy(4))
    assert records["v"]["text"] == expected.text and records["a"]["usage"]["completion_tokens"] == 4
    assert records["s"]["text"].startswith('{"answer":"')  # constrained (random weights run out of tokens later)
    assert "missing.png" in records["bad"]["error"]

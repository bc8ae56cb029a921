"""Second generation (stock Qwen3-VL-MoE and Qwen3.5 classes): our front end + engine against transformers' own pipeline.

The reference is the stock ``Qwen3VLProcessor.apply_chat_template(messages, tokenize=True, return_dict=True)``
(transformers loads the images itself) and the stock model's greedy ``generate``; ours is ``hulumed.load`` on the
same tiny random checkpoint (``make-tiny --variant qwen3_vl_moe``). Video needs torchvision (transformers' video
processor): that case is skipped where it is missing.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from hulumed.generation import GenerationParams
from hulumed.interface import StreamDelta, StreamFinal

INPUTS = Path(__file__).parents[1] / "fixtures" / "golden" / "inputs"
IMAGE_A, IMAGE_B = INPUTS / "image_a.png", INPUTS / "image_b.png"
GREEDY = GenerationParams(max_new_tokens=12, do_sample=False)


@pytest.fixture(scope="module", params=["qwen3_vl_moe", "qwen3_5"])
def checkpoint(request, tmp_path_factory) -> Path:
    """Hulu-Med-30A3's type (MoE) and the type Flash-Preview-27B is reported with (dense, linear attention)."""
    from hulumed.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("gen2") / f"tiny-{request.param}", request.param)


@pytest.fixture(scope="module")
def engine(checkpoint):
    import hulumed

    loaded = hulumed.load(checkpoint, device="cpu", batch_size=4)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def stock(checkpoint):
    """transformers' own pieces: the stock model class and the stock processor class."""
    from transformers import AutoModelForImageTextToText

    from hulumed.processing.qwen3_vl_inputs import load_qwen3_vl_processor

    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.float32).eval()
    return model, load_qwen3_vl_processor(checkpoint)


def _ours(kind: str, path: Path) -> dict:
    return {"type": kind, kind: {"image_path": str(path)}}


CASES = {
    "text": (
        [{"role": "user", "content": "What is a normal resting heart rate?"}],
        [{"role": "user", "content": "What is a normal resting heart rate?"}],
    ),
    "image": (
        [{"role": "user", "content": [_ours("image", IMAGE_A), {"type": "text", "text": "Describe this image."}]}],
        [{"role": "user", "content": [{"type": "image", "url": str(IMAGE_A)},
                                      {"type": "text", "text": "Describe this image."}]}],
    ),
    "two_images_system_multiturn": (
        [{"role": "system", "content": "You are a radiologist."},
         {"role": "user", "content": [_ours("image", IMAGE_A), _ours("image", IMAGE_B),
                                      {"type": "text", "text": "Compare them."}]},
         {"role": "assistant", "content": "The second is brighter."},
         {"role": "user", "content": "Which one is larger?"}],
        [{"role": "system", "content": "You are a radiologist."},
         {"role": "user", "content": [{"type": "image", "url": str(IMAGE_A)}, {"type": "image", "url": str(IMAGE_B)},
                                      {"type": "text", "text": "Compare them."}]},
         {"role": "assistant", "content": "The second is brighter."},
         {"role": "user", "content": "Which one is larger?"}],
    ),
}


def _stock_inputs(processor, messages):
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                         return_tensors="pt")


@pytest.mark.parametrize("case", sorted(CASES))
def test_inputs_equal_stock_processor(engine, stock, case):
    ours, theirs = CASES[case]
    _, processor = stock
    expected = _stock_inputs(processor, theirs)
    prepared = engine.prepare([ours], GREEDY)
    got = prepared.inputs[0].inputs
    assert set(got) == set(expected)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    image_tokens = int((expected["input_ids"] == engine.model.config.image_token_id).sum())
    assert prepared.visual_tokens == [image_tokens]
    assert prepared.prompt_tokens == [int(expected["input_ids"].shape[1])]


@pytest.mark.parametrize("case", sorted(CASES))
def test_greedy_tokens_equal_stock_generate(engine, stock, case):
    ours, theirs = CASES[case]
    model, processor = stock
    inputs = _stock_inputs(processor, theirs)
    with torch.no_grad():
        output = model.generate(**inputs, do_sample=False, max_new_tokens=GREEDY.max_new_tokens)
    expected = output[0, inputs["input_ids"].shape[1]:].tolist()
    [result] = engine.generate(ours, GREEDY)
    assert result.token_ids == expected[:len(result.token_ids)]
    assert len(result.token_ids) == len(expected) or result.finish_reason == "stop"


def test_batched_rows_equal_rows_alone(engine):
    conversations = [CASES[c][0] for c in sorted(CASES)] + [CASES["image"][0]]
    alone = [engine.generate(c, GREEDY)[0].token_ids for c in conversations]
    together = [r.token_ids for r in engine.generate(conversations, GREEDY)]
    assert together == alone


def test_stream_joins_to_the_answer(engine):
    events = list(engine.stream(CASES["image"][0], GREEDY))
    assert isinstance(events[-1], StreamFinal)
    text = "".join(e.text for e in events if isinstance(e, StreamDelta))
    assert text == events[-1].result.text
    assert events[-1].result.token_ids == engine.generate(CASES["image"][0], GREEDY)[0].token_ids


def test_threads_are_batched_and_answered_in_order(engine):
    conversations = [CASES["text"][0], CASES["image"][0]] * 2
    expected = [engine.generate(c, GREEDY)[0].token_ids for c in conversations]
    got: dict[int, list[int]] = {}

    def ask(i: int) -> None:
        got[i] = engine.generate(conversations[i], GREEDY)[0].token_ids

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(conversations))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [got[i] for i in range(len(conversations))] == expected


def _nifti(path: Path, volume: np.ndarray) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(volume.astype(np.int16), np.eye(4)), str(path))
    return path


def test_volume_reaches_the_model_as_its_slices(engine, tmp_path):
    """volume_input="images": every sampled slice one image, in slice order — pinned against the stock processor
    given exactly those slices (as PIL images) and the slices our volume reader returns."""
    from PIL import Image

    from hulumed.processing.volume import VolumeOptions, load_volume

    rng = np.random.default_rng(0)
    volume = rng.integers(-1000, 1000, size=(40, 36, 12))
    path = _nifti(tmp_path / "ct.nii.gz", volume)
    item = {"image_path": str(path), "nii_num_slices": 6, "nii_axis": 2}
    conversation = [{"role": "user", "content": [{"type": "3d", "3d": item}, {"type": "text", "text": "Findings?"}]}]
    got = engine.prepare([conversation], GREEDY).inputs[0].inputs
    slices = load_volume(path, VolumeOptions.from_item(item))
    assert len(slices) == 6
    _, processor = engine.model, engine.processor
    messages = [{"role": "user", "content": [{"type": "image"}] * 6 + [{"type": "text", "text": "Findings?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images = [Image.fromarray(np.ascontiguousarray(np.moveaxis(s, 0, -1))) for s in slices]
    expected = processor(text=[text], images=images, return_tensors="pt")
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert int((got["input_ids"] == engine.tokenizer.convert_tokens_to_ids("<|vision_start|>")).sum()) == 6
    [result] = engine.generate(conversation, GREEDY)
    assert result.visual_tokens == int((expected["input_ids"] == engine.model.config.image_token_id).sum())


def test_dicom_series_runs_end_to_end(engine, tmp_path):
    pytest.importorskip("pydicom")
    from tests.unit.media_samples import hu_volume, write_series

    folder = tmp_path / "series"
    write_series(folder, hu_volume(rows=40, columns=36, slices=8), positions=[float(k) for k in range(8)])
    conversation = [{"role": "user", "content": [
        {"type": "3d", "3d": {"image_path": str(folder), "nii_num_slices": 4, "window": "lung"}},
        {"type": "text", "text": "Findings?"}]}]
    [result] = engine.generate(conversation, GREEDY)
    assert result.visual_tokens > 0 and result.finish_reason in ("stop", "length")


def test_video_without_torchvision_is_a_clear_error(engine):
    from hulumed.errors import MediaError
    from hulumed.processing.qwen3_vl_inputs import torchvision_available

    if torchvision_available():
        pytest.skip("torchvision is installed: the video path runs (test_video_equals_stock)")
    conversation = [{"role": "user", "content": [{"type": "video", "video": {"video_path": str(INPUTS / "video.mp4")}},
                                                 {"type": "text", "text": "What happens?"}]}]
    with pytest.raises(MediaError, match="torchvision"):
        engine.prepare([conversation], GREEDY)


def test_video_equals_stock(engine, stock):
    """Our seek-decoded frames at the stock processor's own indices, with their timestamps, equal transformers'
    ``apply_chat_template`` on the video file (it decodes the whole clip and samples at the same fps)."""
    from hulumed.processing.qwen3_vl_inputs import torchvision_available

    if not torchvision_available():
        pytest.skip("transformers' Qwen3-VL video processor needs torchvision, which is not installed")
    _, processor = stock
    ours = [{"role": "user", "content": [{"type": "video", "video": {"video_path": str(INPUTS / "video.mp4")}},
                                         {"type": "text", "text": "What happens?"}]}]
    theirs = [{"role": "user", "content": [{"type": "video", "url": str(INPUTS / "video.mp4")},
                                           {"type": "text", "text": "What happens?"}]}]
    expected = processor.apply_chat_template(theirs, add_generation_prompt=True, tokenize=True, return_dict=True,
                                             return_tensors="pt", load_video_backend="pyav")
    got = engine.prepare([ours], GREEDY).inputs[0].inputs
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_structured_output_on_the_second_generation(engine):
    """A JSON schema constrains the answer on this family too (the grammar sees only the generated tokens)."""
    import json

    from hulumed.structured import StructuredOutput

    schema = {"type": "object", "properties": {"finding": {"type": "string", "maxLength": 12}},
              "required": ["finding"], "additionalProperties": False}
    params = GenerationParams(max_new_tokens=48, do_sample=False, structured=StructuredOutput.json_schema(schema))
    results = engine.generate([CASES["image"][0], CASES["text"][0]], params)
    for result in results:
        assert set(json.loads(result.text)) == {"finding"}

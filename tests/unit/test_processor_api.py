"""HulumedProcessor behaviour beyond the golden cases: decoding, batching, merge rule, input types, plain mode."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hulumed.processing import HulumedProcessor, strip_think

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden"
IMAGE_A = str(GOLDEN / "inputs" / "image_a.png")
IMAGE_B = str(GOLDEN / "inputs" / "image_b.png")
FRAMES = str(GOLDEN / "inputs" / "video_frames")
VOLUME = str(GOLDEN / "inputs" / "volume.nii.gz")


@lru_cache(maxsize=None)
def _processor(variant: str = "tiny-qwen3") -> HulumedProcessor:
    return HulumedProcessor.from_pretrained(GOLDEN / variant)


def _user(*parts) -> list[dict]:
    return [{"role": "user", "content": list(parts)}]


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


# ----------------------------------------------------------------------------------------- decoding


def test_strip_think():
    assert strip_think("<think>a\n\n\nb</think>\n\nAnswer") == "Answer"
    assert strip_think("x<think>1</think>y<think>2</think>z") == "xyz"  # non-greedy
    assert strip_think("A\n \n\n  \nB") == "A\n\nB"
    assert strip_think("<think>unterminated\n\nAnswer") == "<think>unterminated\n\nAnswer"


@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
def test_decode_strips_think_unless_use_think(variant: str):
    processor = _processor(variant)
    raw = "<think>a\n\n\nb</think>\n\nAnswer"
    ids = processor.tokenizer(raw)["input_ids"]
    assert processor.batch_decode([ids]) == ["Answer"]
    assert processor.batch_decode([ids], use_think=True) == [raw]
    assert processor.decode(ids) == "Answer"
    assert processor.decode(ids, use_think=True) == raw
    assert processor.decode(torch.tensor([ids])) == "Answer"  # a (1, N) tensor is one sequence


# ----------------------------------------------------------------------------------------- batching


def test_batch_of_conversations_is_left_padded():
    processor = _processor()
    first = _user({"type": "image", "image": {"image_path": IMAGE_A}}, _text("What is shown?"))
    second = _user({"type": "video", "video": {"video_path": FRAMES, "fps": 3}}, _text("Describe."))
    third = _user(_text("Hello."))
    kwargs = dict(add_system_prompt=True, add_generation_prompt=True, return_tensors="pt")
    singles = [processor(conversation=c, **kwargs) for c in (first, second, third)]
    batch = processor(conversation=[first, second, third], **kwargs)

    width = max(s["input_ids"].shape[1] for s in singles)
    assert batch["input_ids"].shape == (3, width) and batch["attention_mask"].shape == (3, width)
    for row, single in enumerate(singles):
        n = single["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][row, width - n:], single["input_ids"][0])
        assert torch.equal(batch["input_ids"][row, : width - n], torch.full((width - n,), processor.pad_token_id))
        assert batch["attention_mask"][row].tolist() == [0] * (width - n) + [1] * n
    visual = [s for s in singles if "pixel_values" in s]
    assert torch.equal(batch["pixel_values"], torch.cat([s["pixel_values"] for s in visual]))
    assert torch.equal(batch["grid_sizes"], torch.cat([s["grid_sizes"] for s in visual]))
    assert torch.equal(batch["merge_sizes"], torch.cat([s["merge_sizes"] for s in visual]))
    assert batch["modals"] == ["image", "video"]


def test_batch_takes_one_system_prompt_flag_per_conversation():
    processor = _processor()
    first = _user({"type": "image", "image": {"image_path": IMAGE_A}}, _text("What is shown?"))
    second = _user(_text("Hello."))
    batch = processor(conversation=[first, second], add_system_prompt=[True, False], add_generation_prompt=True,
                      return_tensors="pt")
    for row, (conversation, flag) in enumerate([(first, True), (second, False)]):
        single = processor(conversation=conversation, add_system_prompt=flag, add_generation_prompt=True,
                           return_tensors="pt")["input_ids"][0]
        assert batch["input_ids"][row, -single.shape[0]:].tolist() == single.tolist()
    with pytest.raises(ValueError, match="flags"):
        processor(conversation=[first, second], add_system_prompt=[True])
    assert processor.pad_token_id == processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")


# ----------------------------------------------------------------------------------------- conversation rules


def test_merge_size_is_two_for_every_item_when_a_video_is_present():
    processor = _processor()
    conversation = _user(
        {"type": "image", "image": {"image_path": IMAGE_A}},
        {"type": "video", "video": {"video_path": FRAMES, "fps": 3}},
        _text("Compare."),
    )
    out = processor(conversation=conversation, return_tensors="pt")
    assert out["modals"] == ["image", "video"]
    assert out["merge_sizes"].tolist() == [2, 2]
    # one shared budget and factor 28; image_a read as 95 high x 67 wide (PIL swap) -> min rule -> 5x4 merged
    assert out["grid_sizes"].tolist() == [[1, 10, 8], [6, 8, 10]]
    n_tokens = int((out["input_ids"] == processor.image_token_id).sum())
    assert n_tokens == 5 * 4 + 6 * 4 * 5


def test_3d_item_is_a_video_without_timestamps():
    processor = _processor()
    conversation = _user({"type": "3d", "3d": {"image_path": VOLUME, "nii_num_slices": 5, "nii_axis": 0}}, _text("Q"))
    prompt = processor.render_prompt(conversation)
    assert "Time" not in prompt and prompt.count("<image>") == 5
    out = processor(conversation=conversation, return_tensors="pt")
    assert out["modals"] == ["video"] and out["merge_sizes"].tolist() == [2]
    assert out["grid_sizes"][0, 0].item() == 5


def test_in_memory_images_are_numpy_so_not_swapped():
    processor = _processor()
    pil = Image.open(IMAGE_A).convert("RGB")  # 95 wide x 67 high
    from_path = processor(conversation=_user({"type": "image", "image": {"image_path": IMAGE_A}}), return_tensors="pt")
    from_pil = processor(conversation=_user({"type": "image", "image": pil}), return_tensors="pt")
    from_array = processor(conversation=_user({"type": "image", "image": np.asarray(pil)}), return_tensors="pt")
    assert from_path["grid_sizes"].tolist() == [[1, 7, 5]]  # swapped
    assert from_pil["grid_sizes"].tolist() == [[1, 5, 7]]
    assert torch.equal(from_pil["pixel_values"], from_array["pixel_values"])
    by_path = _user({"type": "image", "image": {"image_path": IMAGE_A}})
    unswapped = processor(conversation=by_path, swap_pil_size=False, return_tensors="pt")
    assert torch.equal(unswapped["pixel_values"], from_pil["pixel_values"])


def test_video_time_windows_share_one_load():
    processor = _processor()
    conversation = _user(
        {"type": "video", "video": {"video_path": FRAMES, "fps": 3, "end_time": 0.5}},
        {"type": "video", "video": {"video_path": FRAMES, "fps": 3, "start_time": 1.0}},
    )
    loaded = processor.load_conversation_media(conversation)
    first, second = loaded[0]["content"]
    assert first["timestamps"] == [0.0, 1 / 3]
    assert second["timestamps"] == [1.0, 4 / 3, 5 / 3]
    assert conversation[0]["content"][0]["video"] == {"video_path": FRAMES, "fps": 3, "end_time": 0.5}  # untouched


def test_placeholder_count_mismatch_is_a_clear_error():
    processor = _processor()
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="placeholders"):
        processor(text="<image><image> two placeholders, one image", images=[image])
    with pytest.raises(ValueError, match="placeholders"):
        processor(text="<image> but no image")


def test_plain_mode_uses_per_item_merge_sizes():
    processor = _processor()
    image = np.zeros((512, 512, 3), dtype=np.uint8)
    video = [np.zeros((480, 640, 3), dtype=np.uint8)] * 4
    text = "<image>\n" + "<image>," * 3 + "<image>\nQ"
    out = processor(text=text, images=[image, video], return_tensors="pt")
    assert out["modals"] == ["image", "video"]
    assert out["merge_sizes"].tolist() == [1, 2]
    assert out["grid_sizes"].tolist() == [[1, 37, 37], [4, 34, 46]]  # batched_resize path
    assert int((out["input_ids"] == processor.image_token_id).sum()) == 37 * 37 + 4 * 17 * 23


def test_text_only_and_return_tensors_none():
    processor = _processor()
    out = processor(conversation=_user(_text("Hi")), add_generation_prompt=True)
    assert set(out.keys()) == {"input_ids", "attention_mask"}
    assert isinstance(out["input_ids"], list) and isinstance(out["input_ids"][0], int)

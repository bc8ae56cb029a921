"""Assistant-only labels checked against the rendered chat template, truncation, and batch collation."""

from __future__ import annotations

import itertools

import pytest
import torch

from hulumed.train.data import DataError
from hulumed.train.labels import IGNORE_INDEX, LabelEncoder
from tests.conftest import GOLDEN

INPUTS = GOLDEN / "inputs"

CONVERSATION = [
    {"role": "user", "content": [
        {"type": "image", "image": {"image_path": str(INPUTS / "image_a.png")}},
        {"type": "text", "text": "What is shown?"},
    ]},
    {"role": "assistant", "content": [{"type": "text", "text": "A chest radiograph."}]},
    {"role": "user", "content": [
        {"type": "3d", "3d": {"image_path": str(INPUTS / "volume.nii.gz"), "nii_num_slices": 4}},
        {"type": "text", "text": "And this one?"},
    ]},
    {"role": "assistant", "content": " A CT volume, axial slices.\n"},
]
ANSWERS = ["A chest radiograph.", " A CT volume, axial slices.\n"]


@pytest.fixture(scope="module", params=["tiny-qwen2", "tiny-qwen3"])
def processor(request):
    from transformers import AutoProcessor

    import hulumed  # noqa: F401

    return AutoProcessor.from_pretrained(GOLDEN / request.param)


def _runs(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of supervised positions."""
    runs, position = [], 0
    for supervised, group in itertools.groupby(labels, key=lambda x: x != IGNORE_INDEX):
        length = len(list(group))
        if supervised:
            runs.append((position, position + length))
        position += length
    return runs


@pytest.mark.parametrize("system", [True, False])
def test_labels_mask_exactly_the_non_assistant_tokens(processor, system):
    encoded = LabelEncoder(processor, add_system_prompt=system).encode(CONVERSATION)
    # the ids are the inference ids of the same conversation
    reference = processor(conversation=CONVERSATION, add_system_prompt=system, return_tensors="pt")
    assert encoded.input_ids == reference["input_ids"][0].tolist()
    assert torch.equal(torch.from_numpy(encoded.pixel_values), reference["pixel_values"])
    # every supervised token carries its own id, and they form one run per assistant turn
    assert all(label in (IGNORE_INDEX, token) for label, token in zip(encoded.labels, encoded.input_ids))
    runs = _runs(encoded.labels)
    assert len(runs) == len(ANSWERS)
    tokenizer = processor.tokenizer
    header = tokenizer("<|im_start|>assistant\n")["input_ids"]
    full = processor.render_prompt(CONVERSATION, add_system_prompt=system)
    for (start, end), answer in zip(runs, ANSWERS):
        # the run is the answer (its own whitespace included) and <|im_end|>, not the newline after it
        assert tokenizer.decode(encoded.input_ids[start:end]) == answer + "<|im_end|>"
        assert encoded.input_ids[start - len(header):start] == header  # preceded by the (unlabelled) header
        assert answer + "<|im_end|>\n" in full
    # the unsupervised rest decodes to the template with the answers cut out
    rest = [t for t, label in zip(encoded.input_ids, encoded.labels) if label == IGNORE_INDEX]
    expected_rest = full
    for answer in ANSWERS:
        expected_rest = expected_rest.replace(answer + "<|im_end|>", "", 1)
    expanded = processor.expand_image_tokens(expected_rest, encoded.grid_sizes, encoded.merge_sizes)
    assert rest == tokenizer(expanded)["input_ids"]
    assert processor.image_token_id not in [label for label in encoded.labels if label != IGNORE_INDEX]


def test_text_only_conversation(processor):
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    encoded = LabelEncoder(processor).encode(conversation)
    assert encoded.pixel_values is None and encoded.modals == ()
    supervised = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX]
    assert processor.tokenizer.decode(supervised) == "Hello.<|im_end|>"


def test_truncation_cuts_text_never_media(processor):
    encoder = LabelEncoder(processor)
    full = encoder.encode(CONVERSATION)
    last_image = max(i for i, t in enumerate(full.input_ids) if t == processor.image_token_id)
    first_answer_end = _runs(full.labels)[0][1]
    cut = LabelEncoder(processor, max_length=last_image + 3).encode(CONVERSATION)
    assert cut.truncated and cut.input_ids == full.input_ids[: last_image + 3]
    assert cut.supervised_tokens == first_answer_end - _runs(full.labels)[0][0]
    with pytest.raises(DataError, match="media alone reach past max_length"):
        LabelEncoder(processor, max_length=last_image).encode(CONVERSATION)


def test_collator_right_pads_and_concatenates_media(processor):
    from hulumed.train.collator import HulumedCollator

    encoder = LabelEncoder(processor)
    text = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    items = []
    for conversation in (CONVERSATION, text, CONVERSATION):
        e = encoder.encode(conversation)
        item = {"input_ids": torch.tensor(e.input_ids), "labels": torch.tensor(e.labels)}
        if e.pixel_values is not None:
            item.update(pixel_values=torch.from_numpy(e.pixel_values), grid_sizes=torch.from_numpy(e.grid_sizes),
                        merge_sizes=torch.from_numpy(e.merge_sizes), modals=list(e.modals))
        items.append(item)
    batch = HulumedCollator(processor.pad_token_id, pad_to_multiple_of=8)(items)
    n = items[0]["input_ids"].shape[0]
    assert batch["input_ids"].shape == (3, -(-n // 8) * 8)
    short = items[1]["input_ids"].shape[0]
    assert batch["attention_mask"][1].tolist() == [1] * short + [0] * (batch["input_ids"].shape[1] - short)
    assert (batch["labels"][1, short:] == IGNORE_INDEX).all()
    assert torch.equal(batch["input_ids"][0, :n], items[0]["input_ids"])
    assert torch.equal(batch["pixel_values"], torch.cat([items[0]["pixel_values"], items[2]["pixel_values"]]))
    assert batch["modals"] == ["image", "video", "image", "video"]
    assert batch["grid_sizes"].shape == (4, 3)

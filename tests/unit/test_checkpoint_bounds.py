"""A checkpoint folder is untrusted input (issue: every input bounded, item 1): hostile sizes, headers,
processor settings and chat templates end in one ``CheckpointError`` naming the file and field, before anything
is allocated; honest templates render exactly as transformers renders them."""

from __future__ import annotations

import json
import re
import shutil
import struct
import time
from pathlib import Path

import pytest

from hulumed.errors import CheckpointError
from tests.conftest import GOLDEN

TINY = GOLDEN / "tiny-qwen2"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "ckpt"
    shutil.copytree(TINY, target)
    return target


def _edit(path: Path, **changes) -> None:
    raw = json.loads(path.read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            raw[outer][inner] = value
        else:
            raw[key] = value
    path.write_text(json.dumps(raw))


def _cli(*args: str) -> tuple[int, str]:
    import contextlib
    import io

    from hulumed.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, err.getvalue()


@pytest.mark.parametrize("changes, message", [
    ({"num_hidden_layers": 1_000_000}, "num_hidden_layers = 1000000 is outside 1..1,024"),
    ({"hidden_size": -64}, "hidden_size = -64 is outside"),
    ({"num_attention_heads": 0}, "num_attention_heads = 0 is outside"),
    ({"intermediate_size": "128"}, "intermediate_size must be a whole number"),
    ({"hidden_size": 16384}, "does not match the weights' embedding"),
    ({"num_hidden_layers": 7}, "num_hidden_layers 7 but the weights hold 2 decoder layers"),
    ({"num_key_value_heads": 3}, "not a multiple of num_key_value_heads 3"),
    ({"vision_encoder_config.patch_size": 0}, "vision_encoder_config: patch_size = 0"),
    ({"vision_encoder_config.hidden_size": 48}, "patch embedding has 32 channels"),
    ({"image_token_index": 10**9}, "image_token_index"),
])
@pytest.mark.parametrize("verb", ["info", "generate"])
def test_hostile_config_is_one_error_naming_the_field(folder, changes, message, verb):
    _edit(folder / "config.json", **changes)
    started = time.monotonic()
    args = ["info", str(folder)] if verb == "info" else \
        ["generate", "--model", str(folder), "--device", "cpu", "--max-new-tokens", "1", "hi"]
    code, err = _cli(*args)
    assert code == 1 and message in err and "config.json" in err, err
    assert time.monotonic() - started < 30  # before: >60 s (info) or >6 GB (generate)


def test_safetensors_header_declaring_a_trillion_elements(folder):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [10**6, 10**6]
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + length:])
    code, err = _cli("info", str(folder))
    assert code == 1 and "model.safetensors: tensor" in err and "[1000000, 1000000]" in err, err


def test_safetensors_header_longer_than_the_file(folder):
    path = folder / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    code, err = _cli("info", str(folder))
    assert code == 1 and "declares 1,000,000,000,000 bytes" in err, err


@pytest.mark.parametrize("changes, message", [
    ({"min_tokens": 10**7}, "min_tokens = 10000000 must be a whole number in 1..16,384"),
    ({"max_tokens": 10**9}, "max_tokens = 1000000000"),
    ({"patch_size": 0}, "patch_size = 0"),
    ({"image_std": [0.5, 0, 0.5]}, "image_std must be 3 finite numbers above 0"),
    ({"resample": 99}, "resample 99 is not a PIL filter"),
])
def test_hostile_preprocessor_config(folder, changes, message):
    _edit(folder / "preprocessor_config.json", **changes)
    code, err = _cli("estimate", "--model", str(folder), "--image", str(GOLDEN / "inputs" / "image_a.png"), "hi")
    assert code == 1 and "preprocessor_config.json" in err and message in err, err


# ---------------------------------------------------------------------------------------------- chat templates
HOSTILE_TEMPLATES = [
    ("{% set s = 'x' * 8000000000 %}{{ s }}", "'*' would build"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "loop steps"),
    ("{% set ns = namespace(s='xy') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
     "'~' would build"),
    ("{% set ns = namespace(s='xy') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
     "'+' would build"),
    ("{{ 'x' | center(1000000000) }}", "filter center called with 1000000000"),
    ("{{ 'x'.ljust(1000000000) }}", "a call called with 1000000000"),
    ("{{ '%999999999d' % 1 }}", "'%' format width"),
    ("{{ 10 ** 100000000 }}", "'**' would build"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion"),
    ("{% for m in messages %}{{ m.content * 100000000 }}{% endfor %}", "'*' would build"),
    ("{% for i in range(999) %}{% for m in messages %}{% for c in m.content %}{% for d in m.content %}"
     "{% endfor %}{% endfor %}{% endfor %}{% endfor %}", "loop steps"),
]


@pytest.mark.parametrize("template, message", HOSTILE_TEMPLATES)
def test_hostile_chat_template_is_refused_within_the_bounds(template, message):
    from hulumed.processing.chat_template import MAX_SECONDS, render_chat

    started = time.monotonic()
    with pytest.raises(CheckpointError, match=re.escape(message)):
        render_chat(template, [{"role": "user", "content": "y" * 2000}], add_generation_prompt=True)
    assert time.monotonic() - started < MAX_SECONDS + 5


def test_hostile_template_in_a_checkpoint_fails_estimate_cleanly(folder):
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": HOSTILE_TEMPLATES[1][0]}))
    code, err = _cli("estimate", "--model", str(folder), "hi")
    assert code == 1 and "chat_template" in err and "loop steps" in err, err


def test_a_slow_template_request_does_not_hold_other_renders(monkeypatch):
    """The deadline is per render: a render in another thread meanwhile is unaffected."""
    import threading

    from hulumed.processing import chat_template

    monkeypatch.setattr(chat_template, "MAX_LOOP_STEPS", 10**12)
    monkeypatch.setattr(chat_template, "MAX_SECONDS", 1.0)
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            chat_template.render_chat(HOSTILE_TEMPLATES[1][0], [{"role": "user", "content": "x"}])
        except CheckpointError as error:
            errors.append(error)

    thread = threading.Thread(target=slow)
    thread.start()
    assert chat_template.render_chat("{{ messages[0].content }}!", [{"role": "user", "content": "hi"}]) == "hi!"
    thread.join(10)
    assert not thread.is_alive() and "took over 1 s" in str(errors[0])


@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
@pytest.mark.parametrize("generation, system", [(True, True), (False, False), (True, False)])
def test_bounded_rendering_equals_transformers(variant, generation, system):
    from transformers import AutoProcessor

    from hulumed.registration import register_auto_classes

    register_auto_classes()
    processor = AutoProcessor.from_pretrained(GOLDEN / variant)
    conversations = [
        [{"role": "user", "content": "Hello, what is a CT?"}],
        [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Findings?"}]},
         {"role": "assistant", "content": "Normal chest."},
         {"role": "user", "content": [{"type": "video", "num_frames": 3}, {"type": "text", "text": "And this?"}]}],
        [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "image"},
                                      {"type": "text", "text": "compare"}]},
         {"role": "assistant", "content": "<think>r</think>same", "reasoning_content": "r"}],
    ]
    for conversation in conversations:
        ours = processor.apply_chat_template(conversation, add_generation_prompt=generation, add_system_prompt=system)
        theirs = processor.tokenizer.apply_chat_template(
            conversation, chat_template=processor.chat_template, tokenize=False, add_generation_prompt=generation,
            add_system_prompt=system, image_token=processor.image_token)
        assert ours == theirs

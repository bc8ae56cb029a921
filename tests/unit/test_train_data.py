"""Training data: record formats, line numbers, `hulumed data check`, and the recipe files / options.

Also home of `write_dataset`, the small synthetic dataset (text, image, volume records) the other
training tests use.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from hulumed.train.data import DataError, Record, load_examples, read_records, to_example
from tests.conftest import GOLDEN

ROOT = Path(__file__).resolve().parents[2]
INPUTS = GOLDEN / "inputs"

RECORDS = [
    {"conversation": [
        {"role": "user", "content": "What is the normal resting heart rate?"},
        {"role": "assistant", "content": "Sixty to one hundred beats per minute."},
    ]},
    {"image": "image_a.png", "conversations": [
        {"from": "human", "value": "<image>\nDescribe the image."},
        {"from": "gpt", "value": "A small test pattern."},
    ]},
    {"conversation": [
        {"role": "user", "content": [
            {"type": "3d", "3d": {"image_path": "volume.nii.gz", "nii_num_slices": 4}},
            {"type": "text", "text": "Which organ is shown?"},
        ]},
        {"role": "assistant", "content": "The liver."},
    ]},
    {"conversation": [
        {"role": "user", "content": [{"type": "image", "image": {"image_path": "image_b.png"}},
                                     {"type": "text", "text": "Any fracture?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "No fracture is seen."}]},
        {"role": "user", "content": "Are you sure?"},
        {"role": "assistant", "content": "Yes."},
    ]},
]


def write_dataset(folder: Path, records: list | None = None) -> Path:
    """A JSONL file of text, image and volume records with its media beside it; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("image_a.png", "image_b.png", "volume.nii.gz"):
        shutil.copyfile(INPUTS / name, folder / name)
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (records or RECORDS)))
    return path


def test_jsonl_and_json_records_keep_their_line_numbers(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"x": 1}\n\n{"x": 2\n[1]\n')
    records = read_records(jsonl)
    expected = [(1, {"x": 1}, True), (3, None, False), (4, [1], True)]
    assert [(r.line, r.raw, r.error is None) for r in records] == expected
    array = tmp_path / "b.json"
    array.write_text('[\n  {"a": 1},\n  {\n    "b": 2\n  },\n  [3]\n]\n')
    assert [(r.line, r.raw) for r in read_records(array)] == [(2, {"a": 1}), (3, {"b": 2}), (6, [3])]


def test_llava_record_becomes_a_processor_conversation(tmp_path):
    raw = {"image": ["a.png", "b.png"], "3d": [{"image_path": "v.nii.gz", "nii_num_slices": 8}],
           "conversations": [{"from": "human", "value": "<image>\nPrior <image>\nNow <3d>\nCompare."},
                             {"from": "gpt", "value": "Stable."}]}
    example = to_example(Record(str(tmp_path / "d.jsonl"), 7, raw=raw))
    assert example.where.endswith("d.jsonl:7")
    user, answer = example.conversation
    assert [p["type"] for p in user["content"]] == ["image", "text", "image", "text", "3d", "text"]
    assert user["content"][0]["image"] == {"image_path": str(tmp_path / "a.png")}
    assert user["content"][1]["text"] == "Prior "  # the newline after a placeholder is dropped
    assert user["content"][4]["3d"] == {"image_path": str(tmp_path / "v.nii.gz"), "nii_num_slices": 8}
    assert answer == {"role": "assistant", "content": "Stable."}


@pytest.mark.parametrize(("raw", "message"), [
    ({"image": ["a.png"], "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "x"}]},
     "0 <image> placeholder(s) but 1 'image'"),
    ({"conversations": [{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "x"}]},
     "1 <image> placeholder(s) but 0 'image'"),
    ({"conversation": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
    ({"conversation": [{"role": "doctor", "content": "hi"}]}, "role 'doctor'"),
    ({"conversation": [{"role": "user", "content": [{"type": "image"}]}, {"role": "assistant", "content": "x"}]},
     "message 0 part 0: a image part needs its options under the key 'image'"),
    ({"conversation": [{"role": "user", "content": [{"type": "image", "image": {}}]},
                       {"role": "assistant", "content": "x"}]},
     "message 0: a image part needs {'image_path': path}"),
    ({"conversation": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "audio"}]}]},
     "message 1 part 0: type must be one of"),
    ({"conversation": [{"role": ["user"], "content": "hi"}]}, "message 0 has role ['user']"),
    ({"conversation": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": 3}]},
     "message 1: content must be a string"),
    ({"conversation": [{"role": "user", "content": "hi"}, {"role": "stream", "content": "x"}]}, "role 'stream'"),
    ({"conversation": []}, "non-empty list"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "<image>"}], "image": "a.png"},
     "message 1 (assistant) has a image part; media belong in user messages"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "doctor", "value": "x"}]},
     "turn 1 has unknown 'from' 'doctor'"),
    ({"text": "hello"}, "a record must be"),
])
def test_malformed_records_say_what_is_wrong(raw, message):
    with pytest.raises(DataError, match=re.escape(message)):
        to_example(Record("d.jsonl", 1, raw=raw))


def test_media_paths_resolve_against_media_root(tmp_path):
    path = write_dataset(tmp_path / "data")
    examples = load_examples([path], media_root=INPUTS)
    assert [e.media for e in examples][1:3] == [[("image", str(INPUTS / "image_a.png"))],
                                               [("3d", str(INPUTS / "volume.nii.gz"))]]
    assert [e.where for e in examples] == [f"{path}:{n}" for n in (1, 2, 3, 4)]


def _bad_file(tmp_path: Path) -> Path:
    path = write_dataset(tmp_path / "data")
    lines = path.read_text().splitlines()
    lines.insert(1, '{"conversation": [{"role": "user", "content": "no answer"}]}')  # line 2
    lines.insert(3, "{not json")  # line 4
    lines.append(json.dumps({"image": "missing.png", "conversations": [
        {"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}]}))  # line 7
    path.write_text("\n".join(lines) + "\n")
    return path


def test_data_check_reports_bad_records_by_line(tmp_path, capsys):
    from hulumed.cli import main

    path = _bad_file(tmp_path)
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    errors = [line for line in out if ": error: " in line]
    assert [line.split(": error: ")[0] for line in errors] == [f"{path}:2", f"{path}:4", f"{path}:7"]
    assert "no assistant turn" in errors[0] and "invalid JSON" in errors[1] and "missing.png" in errors[2]
    assert f"{path}: 7 records, 3 bad" in out[-1]


def test_data_check_with_a_model_reads_media_and_counts_tokens(tmp_path, capsys):
    from hulumed.cli import main

    path = write_dataset(tmp_path / "data")
    (tmp_path / "data" / "volume.nii.gz").write_bytes(b"not a nifti file")  # line 3 becomes unreadable
    model = str(GOLDEN / "tiny-qwen2")
    assert main(["data", "check", str(path), "--model", model, "--max-length", "72"]) == 1
    out = capsys.readouterr().out
    assert f"{path}:3: error: cannot encode" in out
    assert f"{path}:4: error: 73 tokens > max length 72" in out  # the two-turn image record is longest
    assert f"{path}:1: error" not in out and f"{path}:2: error" not in out


def test_data_check_passes_a_good_file(tmp_path, capsys):
    from hulumed.cli import main

    path = write_dataset(tmp_path / "data")
    assert main(["data", "check", str(path), "--model", str(GOLDEN / "tiny-qwen3")]) == 0
    out = capsys.readouterr().out
    assert "4 records, 0 bad" in out and "3d 1" in out and "image 2" in out and "text 1" in out


# ---------------------------------------------------------------------------------------------- recipes
def test_every_shipped_recipe_parses_and_validates():
    from hulumed.train.recipe import build_recipe

    recipes = sorted((ROOT / "configs" / "train").glob("*.yaml"))
    assert len(recipes) >= 3
    for path in recipes:
        recipe = build_recipe(path, model="m", data=["d.jsonl"], output="o")
        for key in ("deepspeed", "fsdp_config"):
            if getattr(recipe, key):
                assert (ROOT / getattr(recipe, key)).is_file(), f"{path.name}: {key} file missing"


def test_cli_options_override_the_recipe_file(tmp_path):
    from hulumed.cli import build_parser
    from hulumed.train.commands import recipe_from_args

    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("model: base\ndata: a.jsonl\noutput: out\nlr: 1e-4\nmax_steps: 100\nvision: full\n")
    args = build_parser().parse_args(["train", "--config", str(recipe_file), "--max-steps", "5", "--lora"])
    recipe = recipe_from_args(args)
    got = (recipe.lr, recipe.max_steps, recipe.vision, recipe.llm, recipe.data)
    assert got == (1e-4, 5, "full", "lora", ["a.jsonl"])
    assert recipe.part_lr("projector") == 1e-4


def test_recipe_errors_are_clear(tmp_path):
    from hulumed.train.recipe import RecipeError, build_recipe

    bad = tmp_path / "r.yaml"
    bad.write_text("modle: x\n")
    with pytest.raises(RecipeError, match="unknown key.*modle"):
        build_recipe(bad)
    with pytest.raises(RecipeError, match="no training data"):
        build_recipe(model="m", output="o")
    with pytest.raises(RecipeError, match="every part is frozen"):
        build_recipe(model="m", data=["d"], output="o", llm="frozen", projector="frozen")
    assert build_recipe(model="m", data=["d"], output="o", qlora=True).llm == "lora"


def test_training_guide_commands_parse():
    """Every train / data / merge-lora command in docs/training.md is accepted by the CLI (docs cannot drift)."""
    import re
    import shlex

    from hulumed.cli import build_parser

    guide = (ROOT / "docs" / "training.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", guide, re.DOTALL)
    commands = []
    for line in (line.split("#")[0].strip() for block in blocks for line in block.splitlines()):
        words = shlex.split(line)
        if "hulumed" in words:
            rest = words[words.index("hulumed") + 1:]
            if rest and rest[0] in ("train", "data", "merge-lora"):
                commands.append(rest)
    assert len(commands) >= 8
    parser = build_parser()
    for words in commands:
        args = parser.parse_args(words)
        for path in [getattr(args, "config", None)] + [w for w in words if w.startswith("configs/")]:
            if path:
                assert (ROOT / path).is_file(), path

"""Batch lines, training records and recipes are untrusted input: a bad line is an error record for that line,
never the end of the run (issue: every input bounded, item 4)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hulumed.errors import DataError, RecipeError
from hulumed.json_input import MAX_DEPTH, check_value, loads, read_lines

DEEP = "[" * 100_000 + "]" * 100_000
BIG_INT = '{"id": "big", "prompt": "x", "max_new_tokens": ' + "9" * 5000 + "}"
SURROGATE = '{"id": "sur", "prompt": "bad \\ud800 text"}'


@pytest.mark.parametrize("text, reason", [
    (DEEP, "nested too deeply"),
    ('{"a": ' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "}", "nested too deeply"),
    (BIG_INT, "unreadable JSON value"),
    (SURROGATE, "surrogate"),
    ('{"key\\udc80": 1}', "surrogate"),
    ("{not json", "malformed JSON"),
])
def test_loads_turns_every_hostile_line_into_one_data_error(text, reason):
    with pytest.raises(DataError, match=reason) as caught:
        loads(text, where="f.jsonl:3")
    assert str(caught.value).startswith("f.jsonl:3: ")


def test_check_value_accepts_an_honest_conversation():
    check_value({"conversation": [{"role": "user", "content": [{"type": "text", "text": "é ✓ 中文"}]}]})


def test_read_lines_skips_an_over_long_line_without_holding_it(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n' + b"x" * 5000 + b"\n" + b'\xff\xfe\n' + b'{"b": 2}')
    got = list(read_lines(path, max_line_bytes=1000))
    assert [n for n, _ in got] == [1, 2, 3, 4]
    assert got[0][1] == '{"a": 1}\n' and got[3][1] == '{"b": 2}'
    assert isinstance(got[1][1], DataError) and "longer than" in str(got[1][1])
    assert isinstance(got[2][1], DataError) and "not UTF-8" in str(got[2][1])


# ---------------------------------------------------------------------------------------------- hulumed batch
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    import hulumed
    from hulumed.tiny import make_tiny_checkpoint

    path = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "q3", "qwen3", seed=1)
    engine = hulumed.load(path, device="cpu", batch_size=4)
    yield engine
    engine.close()


def test_batch_hostile_lines_become_error_records_and_the_rest_is_answered(engine, tmp_path):
    from hulumed.batch_job import run_batch_job
    from hulumed.generation import GenerationParams

    long_prompt = "word " * 40_000  # ~40k tokens: over the 32k default, refused before tokenising it all
    lines = [
        json.dumps({"id": "ok1", "prompt": "hi"}),
        DEEP,
        BIG_INT,
        SURROGATE,
        json.dumps({"id": "long", "prompt": long_prompt}),
        json.dumps({"id": "typo", "prompt": "hi", "temprature": 0.5}),
        json.dumps({"id": "imgs-str", "prompt": "hi", "images": "x.png"}),
        json.dumps({"id": "img-list", "prompt": "hi", "image": ["a.png", "b.png"]}),
        json.dumps({"id": "vid-list", "prompt": "hi", "video": ["a.mp4"]}),
        json.dumps({"id": "ok2", "prompt": "hello"}),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    counts = run_batch_job(engine, source, out, defaults=GenerationParams(max_new_tokens=3), progress=False)
    records = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert counts == {"skipped": 0, "answered": 2, "errors": 8}
    assert "text" in records["ok1"] and "text" in records["ok2"]
    assert "nested too deeply" in records["line-2"]["error"]
    assert "unreadable JSON value" in records["line-3"]["error"]
    assert "surrogate" in records["line-4"]["error"]
    assert "more than 32768 text tokens" in records["long"]["error"] and "line 5" in records["long"]["error"]
    assert "'temprature'" in records["typo"]["error"]
    for key in ("imgs-str", "img-list"):
        assert "'images' is a list of paths" in records[key]["error"]
    assert "'video' is one path string" in records["vid-list"]["error"]


def test_batch_over_long_line_is_an_error_record(engine, tmp_path, monkeypatch):
    from hulumed import json_input
    from hulumed.batch_job import run_batch_job
    from hulumed.generation import GenerationParams

    monkeypatch.setattr(json_input, "MAX_LINE_BYTES", 4096)
    source = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": "huge", "prompt": "x" * 10_000}), json.dumps({"id": "ok", "prompt": "hi"})]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    counts = run_batch_job(engine, source, out, defaults=GenerationParams(max_new_tokens=2), progress=False)
    records = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert counts["answered"] == 1 and "longer than" in records["line-1"]["error"]


# ---------------------------------------------------------------------------------------------- training data
def _record(image: str) -> str:
    return json.dumps({"conversation": [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Findings?"}]},
        {"role": "assistant", "content": "Normal."}]})


def test_data_check_names_hostile_records_by_line(tmp_path):
    from hulumed.train.data import check_file, load_examples

    (tmp_path / "folder.png").mkdir()
    os.mkfifo(tmp_path / "fifo.png")
    from PIL import Image

    Image.new("RGB", (28, 28)).save(tmp_path / "ok.png")
    lines = [_record("ok.png"), _record("folder.png"), _record("fifo.png"), DEEP, SURROGATE.replace('"prompt"', '"x"')]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = check_file(data)
    assert report.records == 5 and report.bad_records == 4
    problems = "\n".join(report.problems)
    assert f"{data}:2: error: image is a folder, not a file" in problems
    assert f"{data}:3: error: image: " in problems and "not a regular file" in problems
    assert f"{data}:4: error: JSON nested too deeply" in problems
    assert f"{data}:5: error:" in problems and "surrogate" in problems
    with pytest.raises(DataError, match="4 bad record") as caught:
        load_examples([data])  # training refuses up front, naming the records, instead of a traceback mid-epoch
    assert "fifo.png" in str(caught.value)


def test_json_array_data_with_a_deep_record_is_an_error_not_a_recursion(tmp_path):
    from hulumed.train.data import read_records

    data = tmp_path / "train.json"
    data.write_text("[" + _record("a.png") + ",\n" + DEEP + "]", encoding="utf-8")
    records = read_records(data)
    assert records[0].error is None and "nested too deeply" in records[1].error and records[1].line == 2


# ---------------------------------------------------------------------------------------------- recipes
BASE = "model: m\noutput: o\ndata: d.jsonl\n"


@pytest.mark.parametrize("body, reason", [
    ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n", "aliases"),
    ("max_steps: {a: 1}\n", "max_steps: .* is not a valid int"),
    ("max_steps: 2.5\n", "max_steps: 2.5 is not a valid int"),
    ("report_to: [a, b]\n", "report_to: .* is not a valid str"),
    ("shuffle: maybe\n", "shuffle: 'maybe' is not a valid bool"),
    ("data: [1, 2]\n", "data: .* is not a list of strings"),
    ("lr: [1]\n", "lr: .* is not a valid float"),
    ("seed: 1e400\n", "seed: .* is not a valid int"),
])
def test_recipe_refuses_bombs_and_wrong_types(tmp_path, body, reason):
    from hulumed.train.recipe import build_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(BASE + body, encoding="utf-8")
    with pytest.raises(RecipeError, match=reason):
        build_recipe(path)


def test_recipe_still_takes_yaml_numbers_as_strings(tmp_path):
    from hulumed.train.recipe import build_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(BASE + "lr: 1e-5\nmax_steps: '10'\nwarmup: 3\nshuffle: 'no'\n", encoding="utf-8")
    recipe = build_recipe(path)
    assert (recipe.lr, recipe.max_steps, recipe.warmup, recipe.shuffle) == (1e-5, 10, 3.0, False)


def test_recipe_file_too_large(tmp_path):
    from hulumed.train.recipe import build_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(BASE + "# " + "x" * 300_000 + "\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="is over 256 KiB"):
        build_recipe(Path(path))

"""Every registered benchmark loads a few rows written here in its published format."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from hulumed.eval.benchmarks import BENCHMARKS, KINDS, get_benchmark
from hulumed.eval.commands import list_benchmarks


def _png(path: Path, shade: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 28), (shade, shade, shade)).save(path)
    return path


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (30, 30), (10, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _medqa(root: Path) -> int:
    rows = [{"question": f"Q{i}: which drug?", "answer": "Heparin", "answer_idx": "B",
             "options": {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Insulin"}, "meta_info": "step1"}
            for i in range(3)]
    _jsonl(root / "test.jsonl", rows)
    _jsonl(root / "train.jsonl", rows[:1])  # other splits are ignored
    return 3


def _medmcqa(root: Path) -> int:
    rows = [{"id": f"m{i}", "question": "Which vitamin?", "opa": "A", "opb": "B12", "opc": "C", "opd": "D",
             "cop": 1, "subject_name": "Biochemistry"} for i in range(3)]
    _jsonl(root / "data" / "validation.jsonl", rows)
    return 3


def _pubmedqa(root: Path) -> int:
    rows = [{"id": i, "data": {"Question": "Does X cause Y?", "Options": {"A": "yes", "B": "no", "C": "maybe"},
                               "Context": ["Background.", "Results."], "Correct Answer": "yes",
                               "Correct Option": "A"}} for i in range(3)]
    (root).mkdir(parents=True, exist_ok=True)
    (root / "test.json").write_text(json.dumps(rows))
    return 3


def _vqa_rad(root: Path) -> int:
    rows = [{"image": {"bytes": _png_bytes(), "path": None}, "question": "is there a fracture?", "answer": "yes"},
            {"image": {"bytes": _png_bytes(), "path": None}, "question": "what organ?", "answer": "liver"},
            {"image": {"bytes": _png_bytes(), "path": None}, "question": "is it normal?", "answer": "no"}]
    (root / "data").mkdir(parents=True, exist_ok=True)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # the JSONL form of the same rows (bytes as a file path)
        _png(root / "img.png")
        _jsonl(root / "data" / "test.jsonl", [{**r, "image": {"bytes": None, "path": "img.png"}} for r in rows])
        return 3
    pq.write_table(pa.Table.from_pylist(rows), root / "data" / "test-00000-of-00001.parquet")
    return 3


def _slake(root: Path) -> int:
    _png(root / "imgs" / "xmlab1" / "source.jpg")
    rows = [
        {"qid": 1, "img_name": "xmlab1/source.jpg", "question": "Is this a CT?", "answer": "Yes",
         "answer_type": "CLOSED", "q_lang": "en"},
        {"qid": 2, "img_name": "xmlab1/source.jpg", "question": "Which plane?", "answer": "Transverse Plane",
         "answer_type": "CLOSED", "q_lang": "en"},
        {"qid": 3, "img_name": "xmlab1/source.jpg", "question": "What organ is abnormal?", "answer": "Lung",
         "answer_type": "OPEN", "q_lang": "en"},
        {"qid": 4, "img_name": "xmlab1/source.jpg", "question": "这是什么?", "answer": "肺", "answer_type": "OPEN",
         "q_lang": "zh"},
    ]
    (root / "test.json").write_text(json.dumps(rows, ensure_ascii=False))
    return 3


def _pmc_vqa(root: Path) -> int:
    _png(root / "figures" / "PMC1_F1.jpg")
    root.mkdir(parents=True, exist_ok=True)
    with (root / "test_2.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "Figure_path", "Caption", "Question", "Choice A", "Choice B", "Choice C",
                         "Choice D", "Answer", "split"])
        for i in range(3):
            writer.writerow([i, "PMC1_F1.jpg", "A CT scan.", "Which plane?", " A:Axial ", " B:Coronal ",
                             " C:Sagittal ", " D:Oblique ", "A", "test"])
    return 3


def _m3d(root: Path) -> int:
    for k in range(2):
        _png(root / "slices" / "case1" / f"{k:03d}.png", shade=40 * k)
    rows = [
        {"conversations": [{"from": "human", "value": "<image>\nWhich plane? A. axial B. coronal C. sagittal"},
                           {"from": "gpt", "value": "A. axial"}],
         "video": ["slices/case1"], "Question_Type": "CLOSE", "type": 1},
        {"conversations": [{"from": "human", "value": "<video>\nWhat organ is shown?"},
                           {"from": "gpt", "value": "The liver."}],
         "video": ["slices/case1"], "Question_Type": "OPEN", "type": 3},
    ]
    (root / "M3D_test.json").write_text(json.dumps(rows))
    return 2


def _iu_xray(root: Path) -> int:
    _png(root / "images" / "CXR1_1.png")
    _png(root / "images" / "CXR1_2.png", 150)
    rows = [{"id": "CXR1", "image": ["images/CXR1_1.png", "images/CXR1_2.png"],
             "conversations": [{"from": "human", "value": "<image>\nreport"},
                               {"from": "gpt",
                                "value": "Findings: The heart is normal. Impression: No acute disease."}]}]
    (root / "iu_xray_test.json").write_text(json.dumps(rows))
    return 1


#: Writers of a few published-format rows, one per registered benchmark; returns the expected sample count.
WRITERS: dict[str, Callable[[Path], int]] = {
    "MedQA_USMLE": _medqa, "MedMCQA": _medmcqa, "PubMedQA": _pubmedqa, "VQA_RAD": _vqa_rad, "SLAKE": _slake,
    "PMC_VQA": _pmc_vqa, "M3D": _m3d, "IU_XRAY": _iu_xray,
}


def write_release(data_dir: Path, name: str) -> int:
    return WRITERS[name](data_dir / name)


def test_registry_is_complete_and_unique() -> None:
    names = [b.name for b in BENCHMARKS]
    assert len(set(names)) == len(names)
    assert set(WRITERS) == set(names), "every benchmark needs sample rows in WRITERS"
    for benchmark in BENCHMARKS:
        assert benchmark.version and benchmark.layout and benchmark.modality in ("text", "2d", "3d", "report")
        assert benchmark.name in list_benchmarks()


@pytest.mark.parametrize("name", [b.name for b in BENCHMARKS])
def test_benchmark_loads_published_rows(tmp_path: Path, name: str) -> None:
    expected = write_release(tmp_path, name)
    benchmark = get_benchmark(name)
    samples = benchmark.loader(tmp_path / name)
    assert len(samples) == expected
    assert len({s.id for s in samples}) == len(samples)
    for sample in samples:
        assert sample.kind in KINDS
        assert sample.prompt and sample.answer
        conversation = sample.conversation()
        assert conversation[0]["content"][-1]["text"] == sample.prompt
        if benchmark.modality == "2d" or benchmark.modality == "report":
            assert any(part["type"] == "image" for part in conversation[0]["content"])


def test_prompts_follow_upstream_templates(tmp_path: Path) -> None:
    write_release(tmp_path, "MedQA_USMLE")
    [first, *_] = get_benchmark("medqa-usmle").loader(tmp_path / "MedQA_USMLE")
    assert first.prompt == ("\nQuestion: Q0: which drug?\nOptions: \nA. Aspirin\nB. Heparin\nC. Warfarin\n"
                            "D. Insulin\nAnswer with the option's letter from the given choices directly.")
    write_release(tmp_path, "SLAKE")
    closed, _, open_ = get_benchmark("slake").loader(tmp_path / "SLAKE")
    assert closed.prompt == "Is this a CT?\nAnswer the question using a single word or phrase."
    assert open_.prompt == "What organ is abnormal?\nPlease answer the question concisely."
    write_release(tmp_path, "M3D")
    close, _ = get_benchmark("M3D").loader(tmp_path / "M3D")
    assert close.prompt.startswith("Which plane?") and close.group == "Plane"


def test_names_match_loosely_and_unknown_names_fail() -> None:
    assert get_benchmark("vqa-rad").name == "VQA_RAD"
    with pytest.raises(ValueError, match="known"):
        get_benchmark("nope")

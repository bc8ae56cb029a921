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


def _table(path: Path, rows: list[dict], image_root: Path) -> None:
    """Rows as a hub parquet shard at ``path`` (.parquet); without pyarrow, as JSONL with the images as files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        converted = []
        for k, row in enumerate(rows):
            row = dict(row)
            for key, value in row.items():
                if isinstance(value, dict) and value.get("bytes"):
                    name = f"img_{path.stem}_{k}_{key}.png"
                    (image_root / name).write_bytes(value["bytes"])
                    row[key] = {"bytes": None, "path": name}
            converted.append(row)
        _jsonl(path.with_suffix(".jsonl"), converted)
        return
    pq.write_table(pa.Table.from_pylist(rows), path)


def _mmlu_medical(root: Path) -> int:
    for subject in ("anatomy", "virology"):
        rows = [{"question": f"{subject} q{i}?", "subject": subject, "choices": ["w", "x", "y", "z"], "answer": 2}
                for i in range(2)]
        _table(root / subject / "test-00000-of-00001.parquet", rows, root / subject)
        _table(root / subject / "dev-00000-of-00001.parquet", rows[:1], root / subject)  # other splits ignored
    rows = [{"question": "Which layer?", "subject": "nutrition", "choices": ["a", "b", "c", "d"], "answer": 0},
            {"question": "Not medical", "subject": "astronomy", "choices": ["a", "b", "c", "d"], "answer": 1}]
    _table(root / "all" / "test-00000-of-00001.parquet", rows, root / "all")  # subjects without a folder
    return 5


def _mmlu_pro(root: Path) -> int:
    rows = [{"problem": f"Which hormone {i}?", "choices": {"A": "Insulin", "B": "Glucagon", "C": "Cortisol"},
             "answer": "B"} for i in range(2)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "mmlu_pro_test.json").write_text(json.dumps(rows))
    return 2


def _medbullets(options: str) -> Callable[[Path], int]:
    def write(root: Path) -> int:
        rows = [{"question": f"A 40-year-old man {i}...", **{f"op{x}": f"choice {x}" for x in options},
                 "answer_idx": "C", "answer": "choice c", "explanation": "..."} for i in range(2)]
        _table(root / "data" / "train-00000-of-00001.parquet", rows, root)
        return 2
    return write


def _supergpqa(root: Path) -> int:
    rows = [{"uuid": f"u{i}", "question": "Which nerve?", "options": ["Vagus", "Facial", "Optic", "Ulnar"],
             "answer": "Facial", "answer_letter": "B", "discipline": discipline, "field": "Clinical Medicine",
             "subfield": "Neurology", "difficulty": "easy", "is_calculation": False}
            for i, discipline in enumerate(["Medicine", "Medicine", "Engineering"])]
    _jsonl(root / "SuperGPQA-all.jsonl", rows)
    return 2


def _medxpertqa(subset: str) -> Callable[[Path], int]:
    def write(root: Path) -> int:
        images = ["MM-1-a.jpeg"] if subset == "MM" else []
        for name in images:
            _png(root / "images" / name)
        rows = [{"id": f"{subset}-{i}", "question": "A patient presents... Answer Choices: (A) x (B) y (C) z "
                 "(D) w (E) v", "options": {"A": "x", "B": "y", "C": "z", "D": "w", "E": "v"}, "label": "D",
                 "images": images, "medical_task": "Diagnosis", "body_system": "Cardiovascular",
                 "question_type": "Reasoning"} for i in range(2)]
        _jsonl(root / subset / "test.jsonl", rows)
        _jsonl(root / subset / "dev.jsonl", rows[:1])
        return 2
    return write


def _path_vqa(root: Path) -> int:
    rows = [{"image": {"bytes": _png_bytes(), "path": None}, "question": "is this malignant?", "answer": "no"},
            {"image": {"bytes": _png_bytes(), "path": None}, "question": "what tissue?", "answer": "liver"}]
    _table(root / "data" / "test-00000-of-00001.parquet", rows, root)
    return 2


def _omnimedvqa(root: Path) -> int:
    _png(root / "Images" / "ACRIMA" / "Im001.png")
    rows = [{"dataset": "ACRIMA", "question_id": f"ACRIMA_{i}", "question_type": "Disease Diagnosis",
             "question": "What is shown?", "gt_answer": "Glaucoma", "image_path": "Images/ACRIMA/Im001.png",
             "option_A": "Normal", "option_B": "Glaucoma", "modality_type": "Fundus Photography"} for i in range(2)]
    folder = root / "QA_information" / "Open-access"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ACRIMA.json").write_text(json.dumps(rows))
    return 2


def _mmmu(root: Path) -> int:
    from hulumed.eval.media_benchmarks import MMMU_MEDICAL

    count = 0
    for subject in MMMU_MEDICAL:
        rows = [{"id": f"validation_{subject}_1", "question": "<image 1> Which stain?",
                 "options": "['H&E', 'PAS', 'Gram', 'Silver']", "explanation": "", "answer": "A",
                 "question_type": "multiple-choice", "image_1": {"bytes": _png_bytes(), "path": None},
                 "image_2": None, "img_type": "['Microscopy']", "topic_difficulty": "Easy", "subfield": "x"}]
        if subject == "Pharmacy":
            rows.append({**rows[0], "id": f"validation_{subject}_2", "question": "Dose in mg?", "options": "[]",
                         "answer": "5", "question_type": "open"})
        _table(root / subject / "validation-00000-of-00001.parquet", rows, root / subject)
        count += len(rows)
    return count


def _mmmu_test(root: Path) -> int:
    """MMMU's test split: the same columns, answers hidden ("?")."""
    from hulumed.eval.media_benchmarks import MMMU_MEDICAL

    for subject in MMMU_MEDICAL:
        rows = [{"id": f"test_{subject}_1", "question": "<image 1> Which stain?",
                 "options": "['H&E', 'PAS', 'Gram', 'Silver']", "explanation": "", "answer": "?",
                 "question_type": "multiple-choice", "image_1": {"bytes": _png_bytes(), "path": None},
                 "image_2": None, "img_type": "['Microscopy']", "topic_difficulty": "Easy", "subfield": "x"},
                {"id": f"test_{subject}_2", "question": "Dose in mg?", "options": "[]", "explanation": "",
                 "answer": "?", "question_type": "open", "image_1": {"bytes": _png_bytes(), "path": None},
                 "image_2": None, "img_type": "[]", "topic_difficulty": "Easy", "subfield": "x"}]
        _table(root / subject / "test-00000-of-00001.parquet", rows, root / subject)
    return 2 * len(MMMU_MEDICAL)


def _medmnist(root: Path) -> int:
    """MedUniEval's medminist_test.json layout (rows constructed here)."""
    _png(root / "images" / "pathmnist_0.png")
    _png(root / "images" / "bloodmnist_0.png", 150)
    rows = [{"id": f"mnist{i}", "split": split, "answer": "B", "images": [f"images/{split}_0.png"],
             "conversations": [{"from": "human", "value": "<image>\nWhich tissue type is shown?\nA. adipose\n"
                                                         "B. mucus\nC. stroma"},
                               {"from": "gpt", "value": "B"}]}
            for i, split in enumerate(["pathmnist", "bloodmnist"])]
    root.mkdir(parents=True, exist_ok=True)
    (root / "medminist_test.json").write_text(json.dumps(rows))
    return 2


def _medframeqa(root: Path) -> int:
    rows = [{"question_id": f"f{i}", "question": "Across these frames, where is the lesion?",
             "options": ["Liver", "Spleen", "Kidney", "Pancreas"], "correct_answer": "C",
             "image_1": {"bytes": _png_bytes(), "path": None}, "image_2": {"bytes": _png_bytes(), "path": None},
             "image_3": None, "image_4": None, "image_5": None, "modality": "CT"} for i in range(2)]
    _table(root / "data" / "test-00000-of-00001.parquet", rows, root)
    return 2


def _nifti(path: Path) -> bool:
    """A small CT-like NIfTI volume; False when nibabel is missing."""
    try:
        import nibabel
        import numpy as np
    except ImportError:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    volume = np.random.default_rng(0).normal(0, 300, (24, 20, 3)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), str(path))
    return True


def _rad3d(root: Path) -> int:
    for k in range(2):
        _png(root / "slices" / "case1" / f"{k:03d}.png", shade=40 * k)
    volume = "volumes/case2.nii.gz" if _nifti(root / "volumes" / "case2.nii.gz") else "slices/case1"
    rows = [
        {"conversations": [{"from": "human", "value": "<image>\nIs the image clear? A. yes B. no"},
                           {"from": "gpt", "value": "A. yes"}],
         "video": ["slices/case1"], "Question_Type": "CLOSE", "type": "Image_Quality", "sub-type": "q"},
        {"conversations": [{"from": "human", "value": "<video>\nWhich organ is enlarged?"},
                           {"from": "gpt", "value": "The spleen."}],
         "video": [volume], "Question_Type": "OPEN", "type": "Organ_Identification", "sub-type": "o"},
    ]
    (root / "Rad3D_test.json").write_text(json.dumps(rows))
    return 2


def _amos(root: Path) -> int:
    for k in range(2):
        _png(root / "slices" / "amos_0001" / f"{k:03d}.png", shade=40 * k)
    rows = [{"id": "amos_0001", "video": ["slices/amos_0001"],
             "conversations": [{"from": "human", "value": "<video>\nreport"},
                               {"from": "gpt", "value": "Findings: Liver normal. Impression: No abnormality."}]}]
    (root / "amos_val.json").write_text(json.dumps(rows))
    return 1


def _report_json(file_name: str, images: int) -> Callable[[Path], int]:
    def write(root: Path) -> int:
        paths = [f"files/p10/s1/view{k}.jpg" for k in range(images)]
        for k, path in enumerate(paths):
            _png(root / path, 60 * k)
        rows = [{"id": f"s{i}", "image": paths,
                 "conversations": [{"from": "human", "value": "<image>\nreport"},
                                   {"from": "gpt", "value": "Findings: Clear lungs. Impression: Normal."}]}
                for i in range(2)]
        root.mkdir(parents=True, exist_ok=True)
        (root / file_name).write_text(json.dumps(rows))
        return 2
    return write


# The Chinese sets and MMLU-all: rows constructed here in each release's published layout (field names and
# nesting as the hub files have them; the text is ours, not taken from the releases).
def _mmlu_all(root: Path) -> int:
    rows = [{"question": f"Q{i}?", "subject": subject, "choices": ["a", "b", "c", "d"], "answer": 2}
            for i, subject in enumerate(["astronomy", "virology", "law"])]
    _jsonl(root / "all" / "test.jsonl", rows)
    return 3


def _cmb(root: Path) -> int:
    folder = root / "CMB-Exam" / "CMB-test"
    folder.mkdir(parents=True)
    rows = [{"id": i, "exam_type": "医师考试", "exam_class": "执业医师", "exam_subject": "内科",
             "question": f"第{i}题：以下哪项正确？", "question_type": kind,
             "option": {"A": "甲", "B": "乙", "C": "丙", "D": "丁", "E": ""}}
            for i, kind in enumerate(["单项选择题", "多项选择题", "单项选择题"])]
    (folder / "CMB-test-choice-question-merge.json").write_text(json.dumps(rows, ensure_ascii=False))
    answers = [{"id": i, "answer": "B"} for i in range(3)]  # answers published in their own file
    (folder / "CMB-test-choice-answer.json").write_text(json.dumps(answers))
    return 2  # the multi-answer question is skipped, as upstream


def _cmexam(root: Path) -> int:
    root.mkdir(parents=True)
    with (root / "test.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["Question", "Options", "Answer", "Explanation"])
        writer.writeheader()
        for i in range(2):
            writer.writerow({"Question": f"问题{i}", "Options": "A 发热\nB 咳嗽\nC 头痛\nD 乏力", "Answer": "C",
                             "Explanation": "解析"})
    return 2


def _cmmlu(root: Path) -> int:
    (root / "test").mkdir(parents=True)
    for subject in ("anatomy", "virology", "law"):  # law is not a medical subject: skipped
        with (root / "test" / f"{subject}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, ["", "Question", "A", "B", "C", "D", "Answer"])
            writer.writeheader()
            writer.writerow({"": 0, "Question": f"{subject}问题", "A": "一", "B": "二", "C": "三", "D": "四",
                             "Answer": "D"})
    return 2


def _medqa_mcmle(root: Path) -> int:
    options = {"A": "肺炎", "B": "哮喘", "C": "结核", "D": "肺癌", "E": "气胸"}
    rows = [{"question": f"患者{i}，诊断为？", "options": options, "answer_idx": "A", "answer": "肺炎"}
            for i in range(3)]
    _jsonl(root / "data" / "train.jsonl", rows)
    return 3


def _healthbench(root: Path) -> int:
    """simple-evals' HealthBench JSONL layout (rows constructed here): a multi-turn prompt, rubrics, tags."""
    def row(i: int) -> dict:
        return {"prompt_id": f"p{i}", "example_tags": ["theme:emergency_referrals"], "canary": "x",
                "prompt": [{"role": "user", "content": "I have had a headache for two days."},
                           {"role": "assistant", "content": "Any fever or stiff neck?"},
                           {"role": "user", "content": f"Yes, a fever of 39.{i} C. What should I do?"}],
                "rubrics": [{"criterion": "Advises urgent medical evaluation for fever with headache", "points": 5,
                             "tags": ["axis:completeness"]},
                            {"criterion": "Asks about the duration of the fever", "points": 3,
                             "tags": ["axis:context_awareness"]},
                            {"criterion": "Recommends a dangerous dose of a medicine", "points": -8,
                             "tags": ["axis:accuracy"]}]}
    _jsonl(root / "2025-05-07-06-14-12_oss_eval.jsonl", [row(0), row(1)])
    _jsonl(root / "hard_2025-05-08-21-00-10.jsonl", [row(2)])
    return 3


#: Writers of a few published-format rows, one per registered benchmark; returns the expected sample count.
WRITERS: dict[str, Callable[[Path], int]] = {
    "MedQA_USMLE": _medqa, "MedMCQA": _medmcqa, "PubMedQA": _pubmedqa, "VQA_RAD": _vqa_rad, "SLAKE": _slake,
    "PMC_VQA": _pmc_vqa, "M3D": _m3d, "IU_XRAY": _iu_xray, "MMLU-medical": _mmlu_medical, "MMLU_Pro": _mmlu_pro,
    "Medbullets_op4": _medbullets("abcd"), "Medbullets_op5": _medbullets("abcde"), "SuperGPQA": _supergpqa,
    "MedXpertQA-Text": _medxpertqa("Text"), "MedXpertQA-MM": _medxpertqa("MM"), "PATH_VQA": _path_vqa,
    "OmniMedVQA": _omnimedvqa, "MMMU-Medical-val": _mmmu, "MedFrameQA": _medframeqa, "3DRad": _rad3d,
    "Amos": _amos, "MIMIC_CXR": _report_json("mimic_test.json", 2),
    "CheXpert_Plus": _report_json("chexpert_val.json", 2), "HealthBench": _healthbench,
    "MMMU-Medical-test": _mmmu_test, "Medmnist": _medmnist, "MMLU-all": _mmlu_all, "CMB": _cmb, "CMExam": _cmexam,
    "CMMLU": _cmmlu, "MedQA_MCMLE": _medqa_mcmle,
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
        assert conversation[-1]["content"][-1]["text"] == sample.prompt  # the last (user) turn holds it
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


def test_new_benchmark_prompts_and_answers(tmp_path: Path) -> None:
    write_release(tmp_path, "MMLU-medical")
    mmlu = get_benchmark("mmlu_medical").loader(tmp_path / "MMLU-medical")
    assert [s.group for s in mmlu] == ["anatomy", "anatomy", "nutrition", "virology", "virology"]
    assert mmlu[0].prompt == ("\nQuestion: anatomy q0?\nOptions: \nA. w\nB. x\nC. y\nD. z\n"
                              "Answer with the option's letter from the given choices directly.")
    assert mmlu[0].answer == "C" and mmlu[2].answer == "A"
    write_release(tmp_path, "MMLU_Pro")
    [pro, _] = get_benchmark("mmlu-pro").loader(tmp_path / "MMLU_Pro")
    assert pro.prompt == ("Which hormone 0?\nA. Insulin\nB. Glucagon\nC. Cortisol\n"
                          "Answer with the option's letter from the given choices directly.") and pro.answer == "B"
    write_release(tmp_path, "MedFrameQA")
    frame = get_benchmark("MedFrameQA").loader(tmp_path / "MedFrameQA")[0]
    assert "\nA.Liver\nB.Spleen\n" in frame.prompt and len(frame.images) == 2 and frame.answer == "C"
    write_release(tmp_path, "MedXpertQA-MM")
    xpert = get_benchmark("medxpertqa-mm").loader(tmp_path / "MedXpertQA-MM")[0]
    assert "Answer Choices" not in xpert.prompt and "\nE. v\n" in xpert.prompt and xpert.answer == "D"
    write_release(tmp_path, "Medbullets_op5")
    bullets = get_benchmark("medbullets_op5").loader(tmp_path / "Medbullets_op5")[0]
    assert bullets.choices[-1] == "choice e" and bullets.answer == "C"
    write_release(tmp_path, "SuperGPQA")
    assert {s.answer for s in get_benchmark("SuperGPQA").loader(tmp_path / "SuperGPQA")} == {"B"}
    write_release(tmp_path, "OmniMedVQA")
    omni = get_benchmark("OmniMedVQA").loader(tmp_path / "OmniMedVQA")[0]
    assert omni.answer == "B" and omni.choices == ["Normal", "Glaucoma"]
    assert omni.groups == {"question_type": "Disease Diagnosis", "modality_type": "Fundus Photography"}
    assert omni.group == "Disease Diagnosis"
    assert frame.groups == {"modality": "CT", "frames": "2"} and frame.group == "CT"
    assert xpert.groups == {"question_type": "Reasoning", "medical_task": "Diagnosis"}
    write_release(tmp_path, "MMMU-Medical-val")
    kinds = {s.kind for s in get_benchmark("MMMU-Medical-val").loader(tmp_path / "MMMU-Medical-val")}
    assert kinds == {"mmmu_mc", "mmmu_open"}


def test_3d_items_accept_nifti_volumes(tmp_path: Path) -> None:
    pytest.importorskip("nibabel")
    write_release(tmp_path, "3DRad")
    folder, volume = get_benchmark("3D-RAD").loader(tmp_path / "3DRad")
    assert folder.frames and folder.volume is None and folder.group == "Image_Quality"
    assert volume.volume and volume.volume.endswith(".nii.gz") and volume.frames is None
    parts = volume.conversation()[0]["content"]
    assert parts[0] == {"type": "3d", "3d": {"image_path": volume.volume, "nii_axis": 2}}
    assert volume.prompt == "Which organ is enlarged?\nPlease answer the question concisely."


def test_missing_release_says_what_to_do(tmp_path: Path) -> None:
    from hulumed.eval.data_files import DataError

    with pytest.raises(DataError, match="cais/mmlu"):
        get_benchmark("MMLU-medical").loader(tmp_path)
    with pytest.raises(DataError, match="OmniMedVQA"):
        get_benchmark("OmniMedVQA").loader(tmp_path)


def test_docs_table_lists_every_benchmark() -> None:
    rows = (Path(__file__).parents[2] / "docs" / "eval.md").read_text()
    assert all(f"| {b.name} |" in rows for b in BENCHMARKS)


def test_chinese_sets_use_meduniepvals_chinese_template(tmp_path: Path) -> None:
    """get_multiple_choice_prompt(question, choices, lang="zh") text, character for character."""
    write_release(tmp_path, "CMB")
    [first, _] = get_benchmark("CMB").loader(tmp_path / "CMB", "upstream")
    assert first.prompt == ("\n问题： 第0题：以下哪项正确？\n选项： \nA.甲\nB.乙\nC.丙\nD.丁\n"
                            "请直接使用给定选项中的选项字母来回答该问题。")
    assert first.answer == "B" and first.choices == ["A.甲", "B.乙", "C.丙", "D.丁"]
    write_release(tmp_path, "CMExam")
    sample = get_benchmark("CMExam").loader(tmp_path / "CMExam")[0]
    assert "\nA.发热\nB.咳嗽\n" in sample.prompt and sample.answer == "C" and sample.choices[2] == "头痛"
    write_release(tmp_path, "MedQA_MCMLE")
    upstream = get_benchmark("MedQA_MCMLE").loader(tmp_path / "MedQA_MCMLE", "upstream")[0]
    fixed = get_benchmark("MedQA_MCMLE").loader(tmp_path / "MedQA_MCMLE", "fixed")[0]
    assert "\n肺炎\n哮喘\n" in upstream.prompt and "\nA.肺炎\nB.哮喘\n" in fixed.prompt  # upstream: no letters
    write_release(tmp_path, "CMMLU")
    assert {s.group for s in get_benchmark("CMMLU").loader(tmp_path / "CMMLU")} == {"anatomy", "virology"}
    write_release(tmp_path, "MMLU-all")
    assert len({s.group for s in get_benchmark("MMLU-all").loader(tmp_path / "MMLU-all")}) == 3


def test_medmnist_prompt_and_choices_as_upstream(tmp_path: Path) -> None:
    write_release(tmp_path, "Medmnist")
    first = get_benchmark("Medmnist").loader(tmp_path / "Medmnist")[0]
    assert first.prompt == ("Which tissue type is shown?\nA. adipose\nB. mucus\nC. stroma\n"
                            "Answer with the option's letter from the given choices directly.")
    assert first.choices == ["adipose", "mucus", "stroma"] and first.group == "pathmnist"
    assert Path(first.images[0]).is_file()


def test_healthbench_keeps_the_conversation_and_upstream_the_first_message(tmp_path: Path) -> None:
    write_release(tmp_path, "HealthBench")
    fixed = get_benchmark("HealthBench").loader(tmp_path / "HealthBench", "fixed")
    upstream = get_benchmark("HealthBench").loader(tmp_path / "HealthBench", "upstream")
    assert [s.group for s in fixed] == ["normal", "normal", "hard"]
    turns = fixed[0].conversation()
    assert [t["role"] for t in turns] == ["user", "assistant", "user"] and "39.0 C" in fixed[0].prompt
    assert upstream[0].conversation()[0]["content"][-1]["text"] == "I have had a headache for two days."
    assert len(upstream[0].conversation()) == 1 and len(upstream[0].graded_messages) == 3  # the judge sees all
    assert fixed[0].prompt_hash() != upstream[0].prompt_hash()

"""Loaders of the image, 3-D and report benchmarks (UPSTREAM.md §9.3), plus MedXpertQA (Text and MM share one
release). Each reads the public release as published under ``D/<name>`` and returns ``Sample``s with MedUniEval's
prompts (§9.2). Image paths in a release are relative to its root unless said otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .data_files import DataError, read_rows, read_split
from .samples import (
    MC_INSTRUCTION,
    NIFTI_SUFFIXES,
    OPEN_INSTRUCTION,
    REPORT_PROMPT,
    Sample,
    closed_prompt,
    image_cell,
    letter_of,
    lettered,
    mc_prompt,
    open_prompt,
    option_list,
)


def _yes_no(answer: str) -> bool:
    return answer.strip().lower() in ("yes", "no")


# --------------------------------------------------------------------------------------------------- 2-D VQA
def load_vqa_rad(root: Path) -> list[Sample]:
    """flaviagiammarino/vqa-rad and /path-vqa (same columns): yes/no answers -> closed prompt, else open."""
    samples = []
    for i, row in enumerate(read_split(root, "test")):
        closed = _yes_no(str(row["answer"]))
        prompt = closed_prompt(row["question"]) if closed else open_prompt(row["question"])
        samples.append(Sample(str(i), "judgement" if closed else "open", prompt, str(row["answer"]),
                              images=[image_cell(row["image"], root)], group="closed" if closed else "open",
                              question=row["question"]))
    return samples


def load_slake(root: Path) -> list[Sample]:
    samples = []
    for row in read_split(root, None, ("test.json",)):
        if row.get("q_lang", "en") != "en":
            continue  # upstream skips the Chinese questions
        answer, closed = str(row["answer"]), row["answer_type"].upper() == "CLOSED"
        kind = ("judgement" if _yes_no(answer) else "closed") if closed else "open"
        prompt = closed_prompt(row["question"]) if closed else open_prompt(row["question"])
        samples.append(Sample(str(row.get("qid", len(samples))), kind, prompt, answer,
                              images=[str(root / "imgs" / row["img_name"])], group=row["answer_type"].upper(),
                              question=row["question"]))
    return samples


def load_pmc_vqa(root: Path) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_split(root, None, ("test_2.csv",))):
        choices = [row[f"Choice {letter}"].strip() for letter in "ABCD"]
        image = root / "figures" / row["Figure_path"]
        samples.append(Sample(str(row.get("index", i)), "mc", mc_prompt(row["Question"], choices),
                              row["Answer"].strip(), choices=choices, images=[str(image)]))
    return samples


def load_omnimedvqa(root: Path) -> list[Sample]:
    """OmniMedVQA: ``QA_information/Open-access/*.json`` (lists of rows); image_path relative to the root."""
    folder = root / "QA_information" / "Open-access"
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise DataError(f"no {folder}/*.json (OmniMedVQA layout) found")
    samples = []
    for path in files:
        for row in read_rows(path):
            texts = [str(row[f"option_{x}"]) for x in "ABCDEF" if row.get(f"option_{x}") not in (None, "")]
            samples.append(Sample(str(row.get("question_id", len(samples))), "mc",
                                  mc_prompt(row["question"], lettered(texts)), letter_of(row["gt_answer"], texts),
                                  choices=texts, images=[str(root / row["image_path"])],
                                  groups={"question_type": row.get("question_type"),
                                          "modality_type": row.get("modality_type")}))
    return samples


#: MMMU subjects upstream counts as medical.
MMMU_MEDICAL = ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine", "Pharmacy",
                "Public_Health")


def load_mmmu_medical_val(root: Path) -> list[Sample]:
    """MMMU/MMMU ``<Subject>/validation-*.parquet`` for the five medical subjects; only ``image_1`` is shown.

    Multiple choice is scored with MMMU's ``parse_multi_choice_response``, open questions with MMMU's open-answer
    parsing and matching (scoring.judge_mmmu_open; accuracy only)."""
    samples = []
    for subject in MMMU_MEDICAL:
        for row in read_split(root / subject, "validation"):
            image = [image_cell(row["image_1"], root / subject)] if row.get("image_1") else []
            if row.get("question_type") == "multiple-choice":
                texts = option_list(row["options"])
                samples.append(Sample(str(row["id"]), "mmmu_mc", mc_prompt(row["question"], lettered(texts)),
                                      str(row["answer"]).strip(), choices=texts, images=image, group=subject))
            else:
                samples.append(Sample(str(row["id"]), "mmmu_open", closed_prompt(row["question"]), str(row["answer"]),
                                      images=image, group=subject, question=row["question"]))
    return samples


def _load_medxpertqa(root: Path, subset: str) -> list[Sample]:
    rows = read_split(root, None, (f"{subset}/test.jsonl", "test.jsonl"))
    samples = []
    for i, row in enumerate(rows):
        texts = option_list(row["options"])
        question = str(row["question"]).split("Answer Choices:")[0].strip()
        images = [str(root / "images" / name) for name in row.get("images") or []]
        samples.append(Sample(str(row.get("id", i)), "mc", mc_prompt(question, lettered(texts)),
                              letter_of(row["label"], texts), choices=texts, images=images,
                              groups={"question_type": row.get("question_type"),
                                      "medical_task": row.get("medical_task")}))
    return samples


def load_medxpertqa_text(root: Path) -> list[Sample]:
    return _load_medxpertqa(root, "Text")


def load_medxpertqa_mm(root: Path) -> list[Sample]:
    return _load_medxpertqa(root, "MM")


def load_medframeqa(root: Path) -> list[Sample]:
    """SuhaoYu1020/MedFrameQA test split: question, options, correct_answer, image_1..image_5, modality."""
    samples = []
    for i, row in enumerate(read_split(root, "test")):
        texts = option_list(row["options"])
        prompt = row["question"] + "\n" + "\n".join(lettered(texts, ".")) + "\n" + MC_INSTRUCTION
        images = [image_cell(row[f"image_{k}"], root) for k in range(1, 6) if row.get(f"image_{k}")]
        samples.append(Sample(str(row.get("question_id", i)), "mc", prompt, letter_of(row["correct_answer"], texts),
                              choices=texts, images=images, group=row.get("modality"),
                              groups={"modality": row.get("modality"), "frames": str(len(images))}))
    return samples


# ------------------------------------------------------------------------------------------------------ 3-D
_M3D_TYPES = {"1": "Plane", "2": "Phase", "3": "Organ", "4": "Abnormality", "5": "Location"}


def _media_3d(root: Path, row: dict[str, Any]) -> dict[str, str]:
    """The ``video`` entry of a 3-D row: a slice folder (frames, as upstream) or a NIfTI volume."""
    entry = row["video"][0] if isinstance(row["video"], list) else row["video"]
    path = str(root / entry)
    return {"volume": path} if path.lower().endswith(NIFTI_SUFFIXES) else {"frames": path}


def _load_3d_vqa(root: Path, file_name: str) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_split(root, None, (file_name,))):
        turns = row["conversations"]
        question = re.sub(r"<image>\n|<video>\n", "", turns[0]["value"])
        closed = str(row["Question_Type"]).upper() == "CLOSE"
        prompt = question + "\n" + (MC_INSTRUCTION if closed else OPEN_INSTRUCTION)
        kind, group = ("3d_close" if closed else "3d_open"), str(row.get("type"))
        samples.append(Sample(str(row.get("id", i)), kind, prompt, turns[1]["value"], group=_M3D_TYPES.get(group, group),
                              question=question, **_media_3d(root, row)))
    return samples


def load_m3d(root: Path) -> list[Sample]:
    return _load_3d_vqa(root, "M3D_test.json")


def load_3drad(root: Path) -> list[Sample]:
    return _load_3d_vqa(root, "Rad3D_test.json")


# -------------------------------------------------------------------------------------------------- reports
def _report(row: dict[str, Any]) -> str:
    if row.get("conversations"):
        return next(t["value"] for t in row["conversations"] if t.get("from") in ("gpt", "assistant"))
    if row.get("report"):
        return str(row["report"])
    if row.get("findings") or row.get("impression"):
        return f"Findings: {row.get('findings') or ''} Impression: {row.get('impression') or ''}"
    raise DataError("a report row needs conversations (gpt turn), report, or findings/impression")


def _load_reports(root: Path, file_name: str, first_image_only: bool = False) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_split(root, None, (file_name,))):
        images = row["image"] if isinstance(row["image"], list) else [row["image"]]
        images = images[:1] if first_image_only else images
        samples.append(Sample(str(row.get("id", row.get("study_id", i))), "report", REPORT_PROMPT, _report(row),
                              images=[str(root / p) for p in images]))
    return samples


def load_iu_xray(root: Path) -> list[Sample]:
    return _load_reports(root, "iu_xray_test.json")


def load_mimic_cxr(root: Path) -> list[Sample]:
    return _load_reports(root, "mimic_test.json")


def load_chexpert_plus(root: Path) -> list[Sample]:
    return _load_reports(root, "chexpert_val.json", first_image_only=True)


def load_amos(root: Path) -> list[Sample]:
    """3D-AMOS-MM ``amos_val.json``: ``video``: [slice folder or NIfTI], conversations[1] = the report."""
    samples = []
    for i, row in enumerate(read_split(root, None, ("amos_val.json",))):
        samples.append(Sample(str(row.get("id", i)), "report", REPORT_PROMPT, row["conversations"][1]["value"],
                              **_media_3d(root, row)))
    return samples



"""Loaders of the image, 3-D and report benchmarks of MedUniEval's `benchmarks.py`, plus MedXpertQA (Text and MM
share one release). Each reads the public release as published under ``D/<name>`` and returns ``Sample``s with
MedUniEval's prompts (`question_formats.py`). Image paths in a release are relative to its root unless said otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data_files import DataError, cache_root, find_files, media_folder, read_release, read_rows, split_patterns
from .samples import (
    MC_INSTRUCTION,
    NIFTI_SUFFIXES,
    OPEN_INSTRUCTION,
    REPORT_PROMPT,
    Sample,
    closed_prompt,
    image_cell,
    lettered,
    mc_prompt,
    open_prompt,
    option_list,
    reference_letter,
)


def _yes_no(answer: str) -> bool:
    return answer.strip().lower() in ("yes", "no")


# --------------------------------------------------------------------------------------------------- 2-D VQA
def load_vqa_rad(root: Path, mode: str = "fixed") -> list[Sample]:
    """flaviagiammarino/vqa-rad and /path-vqa (same columns): yes/no answers -> closed prompt, else open."""
    samples = []
    for i, row in enumerate(read_release(root, split_patterns("test"))):
        closed = _yes_no(str(row["answer"]))
        prompt = closed_prompt(row["question"]) if closed else open_prompt(row["question"])
        samples.append(Sample(str(i), "judgement" if closed else "open", prompt, str(row["answer"]),
                              images=[image_cell(row["image"], root)], group="closed" if closed else "open",
                              question=row["question"]))
    return samples


def load_slake(root: Path, mode: str = "fixed") -> list[Sample]:
    """BoKelvin/SLAKE: ``test.json`` + ``imgs/`` (the release's ``imgs.zip``, extracted on first use)."""
    rows = read_release(root, ("test.json",))
    images = media_folder(root, "imgs", "imgs.zip")
    samples = []
    for row in rows:
        if row.get("q_lang", "en") == "zh":
            continue  # upstream skips the Chinese questions
        answer, opened = str(row["answer"]), row["answer_type"] == "OPEN"
        kind = "open" if opened else ("judgement" if _yes_no(answer) else "closed")
        prompt = open_prompt(row["question"]) if opened else closed_prompt(row["question"])
        samples.append(Sample(str(row.get("qid", len(samples))), kind, prompt, answer,
                              images=[str(images / row["img_name"])], group=str(row["answer_type"]).upper(),
                              question=row["question"]))
    return samples


def _pmc_figures(root: Path) -> Path:
    """PMC-VQA's test figures: ``figures/`` (``images_2.zip`` extracted), else ``images/`` as upstream falls back."""
    if not (root / "figures").is_dir() and (root / "images").is_dir():
        return root / "images"
    return media_folder(root, "figures", "images_2.zip")


def load_pmc_vqa(root: Path, mode: str = "fixed") -> list[Sample]:
    """RadGenome/PMC-VQA ``test_2.csv``: the choice strings exactly as stored (``A:text``), as upstream."""
    rows = read_release(root, ("test_2.csv",))
    figures = _pmc_figures(root)
    samples = []
    for i, row in enumerate(rows):
        choices = [row[f"Choice {letter}"] for letter in "ABCD"]
        samples.append(Sample(str(row.get("index", i)), "mc", mc_prompt(row["Question"], choices),
                              row["Answer"], choices=choices, images=[str(figures / row["Figure_path"])]))
    return samples


def _omnimedvqa_root(root: Path) -> Path:
    """The folder holding ``QA_information``: the release folder, its ``OmniMedVQA/`` (the zip's top folder), or
    ``OmniMedVQA.zip`` extracted on first use."""
    if (root / "QA_information").is_dir():
        return root
    return media_folder(root, "OmniMedVQA", "OmniMedVQA.zip")


def load_omnimedvqa(root: Path, mode: str = "fixed") -> list[Sample]:
    """OmniMedVQA: ``QA_information/Open-access/*.json``; options A-D as upstream (``A. text``); image_path
    relative to the release root; ``gt_answer`` (an option text) becomes its letter."""
    base = _omnimedvqa_root(root)
    files = find_files(base, ("QA_information/Open-access/*.json",))
    samples = []
    for path in files:
        for row in read_rows(path):
            letters = [x for x in "ABCD" if f"option_{x}" in row]
            texts = [str(row[f"option_{x}"]) for x in letters]
            samples.append(Sample(str(row.get("question_id", len(samples))), "mc",
                                  mc_prompt(row["question"], [f"{x}. {t}" for x, t in zip(letters, texts)]),
                                  reference_letter(row["gt_answer"], texts, letter_field=False), choices=texts,
                                  images=[str(base / row["image_path"])],
                                  groups={"question_type": row.get("question_type"),
                                          "modality_type": row.get("modality_type")}))
    return samples


#: MMMU subjects upstream counts as medical.
MMMU_MEDICAL = ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine", "Pharmacy",
                "Public_Health")


def load_mmmu_medical_val(root: Path, mode: str = "fixed") -> list[Sample]:
    """MMMU/MMMU ``<Subject>/validation-*.parquet`` for the five medical subjects; only ``image_1`` is shown.

    Multiple choice is scored with MMMU's ``parse_multi_choice_response``, open questions with MMMU's open-answer
    parsing and matching (scoring.judge_mmmu_open; accuracy only)."""
    samples = []
    for subject in MMMU_MEDICAL:
        for row in read_release(root / subject, split_patterns("validation")):
            image = [image_cell(row["image_1"], root / subject)] if row.get("image_1") else []
            if row.get("question_type") == "multiple-choice":
                texts = option_list(row["options"])
                samples.append(Sample(str(row["id"]), "mmmu_mc", mc_prompt(row["question"], lettered(texts)),
                                      str(row["answer"]).strip(), choices=texts, images=image, group=subject))
            else:
                samples.append(Sample(str(row["id"]), "mmmu_open", closed_prompt(row["question"]), str(row["answer"]),
                                      images=image, group=subject, question=row["question"]))
    return samples


def load_mmmu_medical_test(root: Path, mode: str = "fixed") -> list[Sample]:
    """MMMU/MMMU ``<Subject>/test-*.parquet`` for the five medical subjects, prompts as the validation set. The
    test answers are not public: the run writes MMMU's submission file (``{id: letter or answer}``) for eval.ai
    instead of a score, as MedUniEval's ``eval_MMMU_test``."""
    samples = []
    for subject in MMMU_MEDICAL:
        for row in read_release(root / subject, split_patterns("test")):
            image = [image_cell(row["image_1"], root / subject)] if row.get("image_1") else []
            hidden = str(row.get("answer") or "?")
            if row.get("question_type") == "multiple-choice":
                texts = option_list(row["options"])
                samples.append(Sample(str(row["id"]), "mmmu_mc", mc_prompt(row["question"], lettered(texts)),
                                      hidden, choices=texts, images=image, group=subject))
            else:
                samples.append(Sample(str(row["id"]), "mmmu_open", closed_prompt(row["question"]), hidden,
                                      images=image, group=subject, question=row["question"]))
    return samples


MEDMNIST_FILES = ("medminist_test.json", "medmnist_test.json")  # MedUniEval's file name has the typo


def load_medmnist(root: Path, mode: str = "fixed") -> list[Sample]:
    """MedUniEval's ``medminist_test.json``: rows with ``conversations[0].value`` (``<image>`` + the question and
    its ``A.`` options), ``images[0]`` (relative to the release folder), ``answer`` and ``split``. Prompt as
    upstream: the value without ``<image>`` + the multiple-choice instruction; options parsed from the value; per
    split."""
    import re

    rows = read_release(root, MEDMNIST_FILES)
    samples = []
    for i, row in enumerate(rows):
        value = str(row["conversations"][0]["value"])
        raw = re.findall(r"\n([A-Z]\..*?)(?=\n[A-Z]\.|\Z)", value, re.DOTALL)
        texts = [choice.split(".", 1)[1].strip() for choice in raw]
        prompt = (value + "\n" + MC_INSTRUCTION).replace("<image>\n", "").replace("<image>", "")
        image = Path(str(row["images"][0]))
        samples.append(Sample(str(row.get("id", i)), "mc", prompt, str(row["answer"]), choices=texts,
                              images=[str(image if image.is_absolute() else root / image)],
                              group=row.get("split")))
    return samples


def _load_medxpertqa(root: Path, subset: str) -> list[Sample]:
    """One ``TsinghuaC3I/MedXpertQA`` folder holds both subsets: ``Text/test.jsonl``, ``MM/test.jsonl`` and
    ``images/`` (``images.zip`` extracted on first use, MM only). Options ``A. text`` in stored order."""
    rows = read_release(root, (f"{subset}/test.jsonl", *split_patterns(f"{subset}/test")))
    images_root = media_folder(root, "images", "images.zip") if any(r.get("images") for r in rows) else root
    samples = []
    for i, row in enumerate(rows):
        options = row["options"] if isinstance(row["options"], dict) else dict(zip("ABCDEFGHIJ",
                                                                                    option_list(row["options"])))
        options = {k: v for k, v in options.items() if v is not None}
        texts = [str(v) for v in options.values()]
        question = str(row["question"]).split("Answer Choices:")[0].strip()
        images = [str(images_root / name) for name in row.get("images") or []]
        prompt = mc_prompt(question, [f"{k}. {v}" for k, v in options.items()])
        samples.append(Sample(str(row.get("id", i)), "mc", prompt, reference_letter(row["label"], texts),
                              choices=texts, images=images,
                              groups={"question_type": row.get("question_type"),
                                      "medical_task": row.get("medical_task")}))
    return samples


def load_medxpertqa_text(root: Path, mode: str = "fixed") -> list[Sample]:
    return _load_medxpertqa(root, "Text")


def load_medxpertqa_mm(root: Path, mode: str = "fixed") -> list[Sample]:
    return _load_medxpertqa(root, "MM")


#: MedFrameQA's reported modalities; every other one is counted as "Other" (upstream's cal_metrics).
MEDFRAMEQA_MODALITIES = ("CT", "MRI", "ultrasound", "X-ray")


def load_medframeqa(root: Path, mode: str = "fixed") -> list[Sample]:
    """SuhaoYu1020/MedFrameQA test split: MedUniEval's multiple-choice prompt with ``A.text`` options; up to five
    frames; grouped by modality (CT / MRI / ultrasound / X-ray / Other) and frame count."""
    samples = []
    for i, row in enumerate(read_release(root, split_patterns("test"))):
        texts = option_list(row["options"])
        prompt = mc_prompt(row["question"], lettered(texts, "."))
        images = [image_cell(row[f"image_{k}"], root) for k in range(1, 6) if row.get(f"image_{k}")]
        modality = row.get("modality") if row.get("modality") in MEDFRAMEQA_MODALITIES else "Other"
        samples.append(Sample(str(row.get("question_id", i)), "mc", prompt,
                              reference_letter(row["correct_answer"], texts), choices=texts, images=images,
                              group=modality, groups={"modality": modality, "frames": str(len(images))}))
    return samples


# ------------------------------------------------------------------------------------------------------ 3-D
_M3D_TYPES = {"1": "Plane", "2": "Phase", "3": "Organ", "4": "Abnormality", "5": "Location"}
#: the public GoodBaiBai88/M3D-VQA test CSVs, and where the M3D-Cap volumes they name may sit under D/M3D.
M3D_CSV_FILES = ("M3D_VQA_test.csv", "M3D_VQA_test5k.csv")
M3D_VOLUME_ROOTS = ("", "M3D_Cap", "M3D_Cap_npy", "M3D-Cap")


def npy_slices(path: Path) -> Path:
    """An M3D-Cap ``.npy`` volume (1 x D x H x W, values in [0, 1]) as a folder of 8-bit PNG slices in the cache
    (written on first use), which is how the 3-D benchmarks are read (a slice folder, as upstream)."""
    import hashlib

    import numpy as np
    from PIL import Image

    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    folder = cache_root() / "npy-slices" / f"{path.stem}-{digest}"
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    try:
        volume = np.load(path)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .npy volume ({error})") from error
    volume = np.squeeze(volume)
    if volume.ndim != 3:
        raise DataError(f"{path}: expected a 3-D volume (D x H x W), got shape {volume.shape}")
    if volume.max() <= 1.0:
        volume = volume * 255.0
    staging = folder.with_name(folder.name + ".tmp")
    staging.mkdir(parents=True, exist_ok=True)
    for k, plane in enumerate(np.clip(volume, 0, 255).astype(np.uint8)):
        Image.fromarray(plane).save(staging / f"{k:03d}.png")
    staging.replace(folder)
    return folder


def _media_3d(root: Path, entry: str) -> dict[str, str]:
    """A 3-D row's media: a slice folder (frames, as upstream), a NIfTI volume, or an M3D-Cap ``.npy`` volume."""
    path = root / entry
    if entry.lower().endswith(NIFTI_SUFFIXES):
        return {"volume": str(path)}
    if entry.lower().endswith(".npy"):
        return {"frames": str(npy_slices(path)) if path.is_file() else str(path)}
    return {"frames": str(path)}


def _video_entry(row: dict[str, Any]) -> str:
    return str(row["video"][0] if isinstance(row["video"], list) else row["video"])


def m3d_question(text: str) -> str:
    """Upstream's clean-up of a 3-D question: the ``<image>\n`` / ``<video>\n`` tags removed, then stripped."""
    return text.replace("<image>\n", "").replace("<video>\n", "").strip()


def _load_3d_vqa(root: Path, file_name: str) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_release(root, (file_name,))):
        turns = row["conversations"]
        question = m3d_question(turns[0]["value"])
        closed = str(row.get("Question_Type", "OPEN")).upper() in ("CLOSE", "CLOSED")
        prompt = question + "\n" + (MC_INSTRUCTION if closed else OPEN_INSTRUCTION)
        kind, group = ("3d_close" if closed else "3d_open"), str(row.get("type"))
        samples.append(Sample(str(row.get("id", i)), kind, prompt, turns[1]["value"],
                              group=_M3D_TYPES.get(group, group), question=question,
                              **_media_3d(root, _video_entry(row))))
    return samples


def _m3d_volume(root: Path, image_path: str) -> str:
    for base in M3D_VOLUME_ROOTS:
        if (root / base / image_path).exists():
            return str(Path(base) / image_path)
    return image_path


def _load_m3d_csv(root: Path) -> list[Sample]:
    """GoodBaiBai88/M3D-VQA ``M3D_VQA_test.csv`` (Image Path, Question Type 1-5, Question, Choice A-D, Answer,
    Answer Choice): each row is asked twice, closed (``Question Choices: A. … B. … C. … D. …``, reference
    ``<letter>. <answer>``) and open (reference ``Answer``), as M3D's own evaluation does."""
    samples = []
    for i, row in enumerate(read_release(root, M3D_CSV_FILES)):
        media = _media_3d(root, _m3d_volume(root, row["Image Path"]))
        group = _M3D_TYPES.get(str(row.get("Question Type")), str(row.get("Question Type")))
        question = m3d_question(row["Question"])
        choices = " ".join(f"{x}. {row[f'Choice {x}']}" for x in "ABCD" if row.get(f"Choice {x}") not in (None, ""))
        closed = f"{question} Choices: {choices}"
        samples.append(Sample(f"{i}-close", "3d_close", closed + "\n" + MC_INSTRUCTION,
                              f"{row['Answer Choice']}. {row['Answer']}", group=group, question=closed, **media))
        samples.append(Sample(f"{i}-open", "3d_open", question + "\n" + OPEN_INSTRUCTION, str(row["Answer"]),
                              group=group, question=question, **media))
    return samples


def load_m3d(root: Path, mode: str = "fixed") -> list[Sample]:
    """MedUniEval's ``M3D_test.json`` when present, else the public M3D-VQA CSV + M3D-Cap volumes."""
    if (root / "M3D_test.json").is_file():
        return _load_3d_vqa(root, "M3D_test.json")
    return _load_m3d_csv(root)


def load_3drad(root: Path, mode: str = "fixed") -> list[Sample]:
    return _load_3d_vqa(root, "Rad3D_test.json")


# -------------------------------------------------------------------------------------------------- reports
def _report(row: dict[str, Any]) -> str:
    if row.get("conversations"):
        return next(t["value"] for t in row["conversations"] if t.get("from") in ("gpt", "assistant"))
    if row.get("report"):
        return str(row["report"])
    raise DataError("a report row needs conversations (gpt turn) or report")


def _load_reports(root: Path, file_name: str, first_image_only: bool = False) -> list[Sample]:
    """MedUniEval's own JSON (``image``: [paths relative to the release root], conversations[1] = report), else
    MedEvalKit's layout: ``test.json`` (image names, findings, impression) + ``images/``; rows with neither
    findings nor impression are skipped and the reference is ``Findings: {f} Impression: {i}.`` as there."""
    if not (root / file_name).is_file() and (root / "test.json").is_file():
        return _load_medevalkit_reports(root, first_image_only)
    samples = []
    for i, row in enumerate(read_release(root, (file_name, "test.json"))):
        images = row["image"] if isinstance(row["image"], list) else [row["image"]]
        images = images[:1] if first_image_only else images
        samples.append(Sample(str(row.get("id", row.get("study_id", i))), "report", REPORT_PROMPT, _report(row),
                              images=[str(root / p) for p in images]))
    return samples


def _load_medevalkit_reports(root: Path, first_image_only: bool) -> list[Sample]:
    rows = read_release(root, ("test.json",))
    images_root = media_folder(root, "images", "images.zip")
    samples = []
    for i, row in enumerate(rows):
        findings, impression = str(row.get("findings") or ""), str(row.get("impression") or "")
        if not findings.strip() and not impression.strip():
            continue
        images = row["image"] if isinstance(row["image"], list) else [row["image"]]
        images = images[:1] if first_image_only else images
        samples.append(Sample(str(row.get("id", i)), "report", REPORT_PROMPT,
                              f"Findings: {findings} Impression: {impression}.",
                              images=[str(images_root / p) for p in images]))
    return samples


def load_iu_xray(root: Path, mode: str = "fixed") -> list[Sample]:
    return _load_reports(root, "iu_xray_test.json")


def load_mimic_cxr(root: Path, mode: str = "fixed") -> list[Sample]:
    return _load_reports(root, "mimic_test.json")


def load_chexpert_plus(root: Path, mode: str = "fixed") -> list[Sample]:
    return _load_reports(root, "chexpert_val.json", first_image_only=True)


def load_amos(root: Path, mode: str = "fixed") -> list[Sample]:
    """3D-AMOS-MM ``amos_val.json``: ``video``: [slice folder or NIfTI], conversations[1] = the report."""
    samples = []
    for i, row in enumerate(read_release(root, ("amos_val.json",))):
        samples.append(Sample(str(row.get("id", i)), "report", REPORT_PROMPT, row["conversations"][1]["value"],
                              **_media_3d(root, _video_entry(row))))
    return samples

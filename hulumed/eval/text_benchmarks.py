"""Loaders of the text-only multiple-choice benchmarks (UPSTREAM.md §9.3): each reads the public release as
published under ``D/<name>`` and returns ``Sample``s with MedUniEval's multiple-choice prompt (§9.2).

MedQA-USMLE, MedMCQA, PubMedQA, MMLU (medical subjects), MMLU-Pro (health), Medbullets op4/op5, SuperGPQA
(medicine). MedXpertQA-Text lives with MedXpertQA-MM in media_benchmarks.py (one release, one loader).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .data_files import DataError, find_files, read_rows, read_split
from .samples import MC_INSTRUCTION, Sample, letter_of, lettered, mc_prompt, option_list


def read_split_or_any(root: Path, split: str, names: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The rows of ``split`` (or of a file in ``names``); if no file is named after the split, every data file."""
    try:
        return read_split(root, split, names)
    except DataError:
        if not root.is_dir():
            raise
        return [row for path in find_files(root) for row in read_rows(path)]


def load_medqa(root: Path) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_split(root, "test")):
        options = row["options"]
        if isinstance(options, str):
            options = json.loads(options)
        texts = [options[k] for k in sorted(options)]
        choices = lettered(texts)
        samples.append(Sample(str(row.get("id", i)), "mc", mc_prompt(row["question"], choices),
                              row["answer_idx"], choices=texts))
    return samples


def load_medmcqa(root: Path) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_split(root, "validation")):
        texts = [row["opa"], row["opb"], row["opc"], row["opd"]]
        answer = "ABCD"[int(row["cop"])]
        samples.append(Sample(str(row.get("id", i)), "mc", mc_prompt(row["question"], lettered(texts)),
                              answer, choices=texts, group=row.get("subject_name")))
    return samples


def load_pubmedqa(root: Path) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_split(root, "test")):
        data = row["data"] if isinstance(row.get("data"), dict) else row
        options = data["Options"]
        texts = [options[k] for k in sorted(options)]
        context = data.get("Context", "")
        context = "\n".join(context) if isinstance(context, list) else str(context)
        prompt = f"Context: {context}\n" + mc_prompt(data["Question"], lettered(texts))
        samples.append(Sample(str(row.get("id", i)), "mc", prompt, data["Correct Option"], choices=texts))
    return samples


#: upstream's MMLU "medical" subset (UPSTREAM.md §9.3).
MMLU_MEDICAL = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                "professional_medicine", "nutrition", "virology", "high_school_biology")


def load_mmlu_medical(root: Path) -> list[Sample]:
    """cais/mmlu: ``<subject>/test-*.parquet`` per subject, or ``all/test-*.parquet`` filtered by ``subject``.

    Upstream's loader is broken (an undefined ``context`` and the four choices joined into one string); this one
    uses the multiple-choice template with one ``A. …`` line per choice, like MedQA.
    """
    samples = []
    combined = None
    for subject in MMLU_MEDICAL:
        if (root / subject).is_dir():
            rows = read_split(root / subject, "test")
        else:
            if combined is None:
                if not (root / "all").is_dir():
                    raise DataError(f"{root}: neither {subject}/ nor all/ (cais/mmlu layout) found")
                combined = read_split(root / "all", "test")
            rows = [r for r in combined if r.get("subject") == subject]
        for i, row in enumerate(rows):
            texts = option_list(row["choices"])
            samples.append(Sample(f"{subject}-{i}", "mc", mc_prompt(row["question"], lettered(texts)),
                                  letter_of(row["answer"], texts), choices=texts, group=subject))
    return samples


def load_mmlu_pro(root: Path) -> list[Sample]:
    """Upstream's bundled ``mmlu_pro_test.json`` (818 health items: problem, choices {A: …}, answer letter), or
    TIGER-Lab/MMLU-Pro ``data/test-*.parquet`` restricted to ``category == "health"``."""
    if (root / "mmlu_pro_test.json").is_file():
        rows = read_rows(root / "mmlu_pro_test.json")
        items = [(str(r.get("id", i)), r["problem"], option_list(r["choices"]), r["answer"])
                 for i, r in enumerate(rows)]
    else:
        rows = [r for r in read_split(root, "test") if str(r.get("category", "")).lower() == "health"]
        items = [(str(r.get("question_id", i)), r["question"], option_list(r["options"]), r["answer"])
                 for i, r in enumerate(rows)]
    samples = []
    for sample_id, problem, texts, answer in items:
        prompt = problem + "\n" + "\n".join(lettered(texts)) + "\n" + MC_INSTRUCTION
        samples.append(Sample(sample_id, "mc", prompt, letter_of(answer, texts), choices=texts))
    return samples


def _medbullets_options(row: dict[str, Any]) -> list[str]:
    if row.get("options") is not None:
        return option_list(row["options"])
    return [str(row[key]) for key in ("opa", "opb", "opc", "opd", "ope") if row.get(key) not in (None, "")]


def load_medbullets(root: Path) -> list[Sample]:
    """tuenguyen/Medical-Eval-MedBullets_op4, LangAGI-Lab/medbullets_op5: the train split; question, opa..ope
    (or an ``options`` dict/list), answer_idx (a letter; else ``answer``)."""
    samples = []
    for i, row in enumerate(read_split_or_any(root, "train")):
        texts = _medbullets_options(row)
        answer = row.get("answer_idx") if row.get("answer_idx") not in (None, "") else row["answer"]
        samples.append(Sample(str(row.get("id", i)), "mc", mc_prompt(row["question"], lettered(texts)),
                              letter_of(answer, texts), choices=texts))
    return samples


def load_supergpqa(root: Path) -> list[Sample]:
    """m-a-p/SuperGPQA (``SuperGPQA-all.jsonl`` or the train split), the ``discipline == "Medicine"`` rows."""
    rows = read_split_or_any(root, "train", ("SuperGPQA-all.jsonl",))
    samples = []
    for i, row in enumerate(r for r in rows if r.get("discipline") == "Medicine"):
        texts = option_list(row["options"])
        answer = row.get("answer_letter") or row["answer"]
        samples.append(Sample(str(row.get("uuid", i)), "mc", mc_prompt(row["question"], lettered(texts)),
                              letter_of(answer, texts), choices=texts, group=row.get("field")))
    return samples

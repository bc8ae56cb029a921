"""The benchmark registry: each entry reads its public release from ``--data-dir D/<name>`` into ``Sample``s.

A ``Benchmark`` is a name (as upstream spells it), a version (bumped whenever its prompt, parsing or metric
changes, so numbers from different versions are never mixed), the published layout it reads (shown by
``hulumed eval --list``), a loader ``Path -> list[Sample]`` (text_benchmarks.py, media_benchmarks.py), which
samples the optional LLM judge re-scores (upstream's choice per benchmark) and whether upstream's overall score
is the average over categories (M3D). Prompts are MedUniEval's ``question_formats.py`` templates (samples.py,
UPSTREAM.md §9.2). To add a benchmark: write a loader, add a ``Benchmark`` to ``BENCHMARKS``, and add a few rows
in its published format to tests/unit/test_eval_benchmarks.py (the registry completeness test fails until you do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import media_benchmarks as media
from . import text_benchmarks as text
from .samples import (  # noqa: F401  (re-exported: the registry's public names)
    CLOSED_INSTRUCTION,
    KINDS,
    MC_INSTRUCTION,
    OPEN_INSTRUCTION,
    REPORT_PROMPT,
    Sample,
    closed_prompt,
    mc_prompt,
    open_prompt,
)

JUDGE_SCOPES = ("none", "open", "all")


@dataclass(frozen=True)
class Benchmark:
    name: str  # as upstream spells it
    version: str  # prompt + parsing + metric version
    modality: str  # text | 2d | 3d | report
    layout: str  # what it reads under D/<name>
    loader: Callable[[Path], list[Sample]]
    judge: str = "none"  # with --judge-url: "open" re-scores open questions, "all" every non-MC question
    category_average: bool = False  # upstream's overall = mean of the per-category scores (eval_3d)


BENCHMARKS: tuple[Benchmark, ...] = (
    # ---------------------------------------------------------------------------------------- text MC
    Benchmark("MedQA_USMLE", "1", "text", "GBaker/MedQA-USMLE-4-options: test split (data/test-*.parquet or "
              "test.jsonl); question, options {A..D}, answer_idx", text.load_medqa),
    Benchmark("MedMCQA", "1", "text", "openlifescienceai/medmcqa: validation split (data/validation-*.parquet or "
              "validation.json[l]); question, opa..opd, cop (0-3)", text.load_medmcqa),
    Benchmark("PubMedQA", "1", "text", "openlifescienceai/pubmedqa: test split (test*.parquet/json[l]); "
              "data.{Question, Options, Context, Correct Option}", text.load_pubmedqa),
    Benchmark("MMLU-medical", "1", "text", "cais/mmlu: <subject>/test-*.parquet for anatomy, clinical_knowledge, "
              "college_biology, college_medicine, medical_genetics, professional_medicine, nutrition, virology, "
              "high_school_biology (or all/test-*.parquet filtered by subject); question, choices, answer (0-3)",
              text.load_mmlu_medical),
    Benchmark("MMLU_Pro", "1", "text", "upstream's mmlu_pro_test.json (problem, choices {A..}, answer), else "
              "TIGER-Lab/MMLU-Pro data/test-*.parquet with category == health", text.load_mmlu_pro),
    Benchmark("Medbullets_op4", "1", "text", "tuenguyen/Medical-Eval-MedBullets_op4: train split; question, "
              "opa..opd (or options), answer_idx", text.load_medbullets),
    Benchmark("Medbullets_op5", "1", "text", "LangAGI-Lab/medbullets_op5: train split; question, opa..ope (or "
              "options), answer_idx", text.load_medbullets),
    Benchmark("SuperGPQA", "1", "text", "m-a-p/SuperGPQA: SuperGPQA-all.jsonl (or train split), rows with "
              "discipline == Medicine; question, options, answer_letter, field", text.load_supergpqa),
    Benchmark("MedXpertQA-Text", "2", "text", "TsinghuaC3I/MedXpertQA: Text/test.jsonl; question (cut at 'Answer "
              "Choices:'), options {A..}, label, question_type, medical_task", media.load_medxpertqa_text),
    # ---------------------------------------------------------------------------------------- 2-D VQA
    Benchmark("VQA_RAD", "2", "2d", "flaviagiammarino/vqa-rad: data/test-*.parquet; image {bytes,path}, question, "
              "answer (yes/no -> closed prompt, else open)", media.load_vqa_rad, judge="open"),
    Benchmark("SLAKE", "2", "2d", "BoKelvin/SLAKE: test.json + imgs/; img_name, question, answer, answer_type, "
              "q_lang (zh skipped)", media.load_slake, judge="all"),
    Benchmark("PATH_VQA", "2", "2d", "flaviagiammarino/path-vqa: data/test-*.parquet; image, question, answer "
              "(yes/no -> closed prompt, else open)", media.load_vqa_rad, judge="all"),
    Benchmark("PMC_VQA", "1", "2d", "RadGenome/PMC-VQA: test_2.csv (Figure_path, Question, Choice A-D, Answer) + "
              "figures/", media.load_pmc_vqa),
    Benchmark("OmniMedVQA", "2", "2d", "OmniMedVQA: QA_information/Open-access/*.json (image_path, question, "
              "gt_answer, option_A..D, question_type, modality_type) + the image folders; per question_type and modality_type", media.load_omnimedvqa),
    Benchmark("MMMU-Medical-val", "3", "2d", "MMMU/MMMU: <Subject>/validation-*.parquet for Basic_Medical_Science, "
              "Clinical_Medicine, Diagnostics_and_Laboratory_Medicine, Pharmacy, Public_Health; question, options, "
              "answer, question_type, image_1", media.load_mmmu_medical_val),
    Benchmark("MedXpertQA-MM", "2", "2d", "TsinghuaC3I/MedXpertQA: MM/test.jsonl + images/ (images.zip extracted); "
              "question, options {A..E}, label, images, question_type, medical_task", media.load_medxpertqa_mm),
    Benchmark("MedFrameQA", "2", "2d", "SuhaoYu1020/MedFrameQA: data/test-*.parquet; question, options, "
              "correct_answer, image_1..image_5, modality; per modality and frame count", media.load_medframeqa),
    # -------------------------------------------------------------------------------------------- 3-D
    Benchmark("M3D", "3", "3d", "M3D_test.json (conversations, video: [slice folder or .nii/.nii.gz], "
              "Question_Type CLOSE/OPEN, type 1-5) + the slice folders or volumes", media.load_m3d,
              category_average=True),
    Benchmark("3DRad", "2", "3d", "Rad3D_test.json (conversations, video: [slice folder or .nii/.nii.gz], "
              "Question_Type, type, sub-type) + the slice folders or volumes", media.load_3drad,
              category_average=True),
    Benchmark("Amos", "2", "3d", "3D-AMOS-MM amos_val.json (video: [slice folder or .nii/.nii.gz], conversations[1] "
              "= report) + the slice folders or volumes", media.load_amos),
    # ---------------------------------------------------------------------------------------- reports
    Benchmark("IU_XRAY", "2", "report", "iu_xray_test.json (image: [paths], conversations with the report) + images",
              media.load_iu_xray),
    Benchmark("MIMIC_CXR", "2", "report", "mimic_test.json (image: [paths], conversations with the report) + images",
              media.load_mimic_cxr),
    Benchmark("CheXpert_Plus", "2", "report", "chexpert_val.json (image: [paths], first one used; conversations "
              "with the report) + images", media.load_chexpert_plus),
)


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def get_benchmark(name: str) -> Benchmark:
    """A benchmark by name, case-insensitive, ignoring '-' and '_'."""
    for benchmark in BENCHMARKS:
        if _key(benchmark.name) == _key(name):
            return benchmark
    raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(b.name for b in BENCHMARKS)}")

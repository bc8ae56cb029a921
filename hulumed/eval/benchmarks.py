"""The benchmark registry: each entry reads its public release from ``--data-dir D/<name>`` into ``Sample``s.

A ``Benchmark`` is a name (as upstream spells it), a version (bumped whenever its prompt, parsing or metric
changes, so numbers from different versions are never mixed), the published layout it reads (shown by
``hulumed eval --list``), a loader ``(Path, mode) -> list[Sample]`` (text_benchmarks.py, media_benchmarks.py),
the folder names it is found under (``D/<name>`` or an alias: upstream's folder name, the hub repo's name; case,
'-' and '_' ignored), which samples the optional LLM judge re-scores (upstream's choice per benchmark), whether
upstream's overall score is the average over categories (M3D) and the ``hf download`` command of the release.
Prompts are MedUniEval's ``question_formats.py`` templates (samples.py). To add a benchmark:
write a loader, add a ``Benchmark`` to ``BENCHMARKS``, and add a few rows
in its published format to tests/unit/test_eval_benchmarks.py (the registry completeness test fails until you do).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import media_benchmarks as media
from . import text_benchmarks as text
from .data_files import DataError, collect_row_errors, confine_media, release_folder
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


@dataclass(frozen=True)
class Benchmark:
    name: str  # as upstream spells it
    version: str  # prompt + parsing + metric version
    modality: str  # text | 2d | 3d | report
    layout: str  # what it reads under D/<name>
    loader: Callable[[Path, str], list[Sample]]
    judge: str = "none"  # with --judge-url: "open" re-scores open questions, "all" every non-MC question;
    # "rubric": graded only by the judge, rubric item by rubric item (HealthBench; --judge-url required)
    category_average: bool = False  # upstream's overall = mean of the per-category scores (eval_3d)
    aliases: tuple[str, ...] = ()  # other folder names: upstream's (D/MMMU, D/MedXpertQA), the hub repo's
    download: str = ""  # the `hf download` command that fetches the release (docs/eval.md has the details)
    submission: str = ""  # answers not public: the run writes submission.json for this leaderboard, no score

    def folder(self, data_dir: Path) -> Path:
        """The release folder under ``data_dir``: ``<name>`` or an alias, case, '-' and '_' ignored."""
        return release_folder(data_dir, (self.name, *self.aliases))

    def load(self, data_dir: Path, mode: str = "fixed", row_errors: list[dict[str, Any]] | None = None
             ) -> list[Sample]:
        """Every sample of the release found under ``data_dir``, with the prompts of scoring ``mode``. A row
        without a field the layout needs is one ``DataError`` naming the field and the layout. Rows that cannot be
        read at all (not an object, malformed or hostile JSON, an over-long CSV field) are skipped and appended
        to ``row_errors`` (printed when it is None)."""
        folder = self.folder(data_dir)
        try:
            with collect_row_errors() as skipped:
                samples = self.loader(folder, mode)
            skipped.sort(key=lambda error: (error["file"], error["row"]))
            if row_errors is not None:
                row_errors.extend({"benchmark": self.name, **error} for error in skipped)
            else:
                for error in skipped:
                    print(f"hulumed eval: {self.name}: skipped {error['file']} row {error['row']}: {error['error']}",
                          file=sys.stderr)
        except (KeyError, IndexError, TypeError, StopIteration) as error:
            raise DataError(f"{folder}: a row is not in the {self.name} layout ({type(error).__name__}: {error}); "
                            f"expected {self.layout}") from error
        confine_media(self.name, folder, samples)
        return samples


def _hf(repo: str, name: str, extra: str = "") -> str:
    return f"hf download {repo} --repo-type dataset --local-dir D/{name}{extra}"


BENCHMARKS: tuple[Benchmark, ...] = (
    # ---------------------------------------------------------------------------------------- text MC
    Benchmark("MedQA_USMLE", "2", "text", "GBaker/MedQA-USMLE-4-options: phrases_no_exclude_test.jsonl (else "
              "test.jsonl, data/test-*.parquet); question, options {A..D}, answer_idx", text.load_medqa,
              aliases=("MedQA-USMLE-4-options", "MedQA"), download=_hf("GBaker/MedQA-USMLE-4-options", "MedQA_USMLE")),
    Benchmark("MedMCQA", "1", "text", "openlifescienceai/medmcqa: data/validation-*.parquet (or validation.json[l]); "
              "question, opa..opd, cop (0-3)", text.load_medmcqa,
              download=_hf("openlifescienceai/medmcqa", "MedMCQA")),
    Benchmark("PubMedQA", "2", "text", "openlifescienceai/pubmedqa: data/test-*.parquet (or test.json[l]); "
              "data.{Question, Options, Context, Correct Option}", text.load_pubmedqa,
              download=_hf("openlifescienceai/pubmedqa", "PubMedQA")),
    Benchmark("MMLU-medical", "1", "text", "cais/mmlu: <subject>/test-*.parquet for anatomy, clinical_knowledge, "
              "college_biology, college_medicine, medical_genetics, professional_medicine, nutrition, virology, "
              "high_school_biology (or all/test-*.parquet filtered by subject); question, choices, answer (0-3)",
              text.load_mmlu_medical, aliases=("MMLU",), download=_hf("cais/mmlu", "MMLU-medical")),
    Benchmark("MMLU_Pro", "2", "text", "upstream's mmlu_pro_test.json (problem, choices {A..}, answer), else "
              "TIGER-Lab/MMLU-Pro data/test-*.parquet with category == health", text.load_mmlu_pro,
              aliases=("MMLU-Pro",), download=_hf("TIGER-Lab/MMLU-Pro", "MMLU_Pro")),
    Benchmark("Medbullets_op4", "2", "text", "tuenguyen/Medical-Eval-MedBullets_op4: data/train-*.parquet; "
              "question, options {A..D} (or opa..opd), answer_idx", text.load_medbullets,
              aliases=("Medical-Eval-MedBullets_op4",),
              download=_hf("tuenguyen/Medical-Eval-MedBullets_op4", "Medbullets_op4")),
    Benchmark("Medbullets_op5", "2", "text", "LangAGI-Lab/medbullets_op5: data/train-*.parquet; question, opa..ope "
              "(or options), answer_idx", text.load_medbullets,
              download=_hf("LangAGI-Lab/medbullets_op5", "Medbullets_op5")),
    Benchmark("SuperGPQA", "2", "text", "m-a-p/SuperGPQA: SuperGPQA-all.jsonl (or the train split), rows with "
              "discipline == Medicine; question, options, answer_letter, field", text.load_supergpqa,
              download=_hf("m-a-p/SuperGPQA", "SuperGPQA")),
    Benchmark("MMLU-all", "1", "text", "cais/mmlu: all/test-*.parquet (or one folder per subject), all 57 "
              "subjects; question, choices, answer (0-3), subject", text.load_mmlu_all, aliases=("MMLU",),
              download=_hf("cais/mmlu", "MMLU-all")),
    Benchmark("HealthBench", "1", "text", "openai/healthbench (simple-evals) JSONL: *oss_eval.jsonl, "
              "consensus_*.jsonl, hard_*.jsonl; prompt (conversation), rubrics {criterion, points, tags}, "
              "example_tags; graded by the LLM judge (--judge-url)", text.load_healthbench, judge="rubric",
              download="mkdir -p D/HealthBench && cd D/HealthBench && for f in 2025-05-07-06-14-12_oss_eval "
                       "hard_2025-05-08-21-00-10 consensus_2025-05-09-20-00-46; do curl -LO "
                       "https://openaipublic.blob.core.windows.net/simple-evals/healthbench/$f.jsonl; done"),
    # -------------------------------------------------------------------------------- Chinese text MC
    Benchmark("CMB", "1", "text", "FreedomIntelligence/CMB: CMB-Exam/CMB-test/CMB-test-choice-question-merge.json "
              "(question, option, question_type, exam_type; answer, or CMB-test-choice-answer.json beside it); "
              "single-answer questions", text.load_cmb, download=_hf("FreedomIntelligence/CMB", "CMB")),
    Benchmark("CMExam", "1", "text", "fzkuji/CMExam: the test split (data/test-*.parquet, test.json[l] or the "
              "original test.csv); Question, Options, Answer", text.load_cmexam,
              download=_hf("fzkuji/CMExam", "CMExam")),
    Benchmark("CMMLU", "1", "text", "haonan-li/cmmlu: test/<subject>.csv (cmmlu_v1_0_1.zip, extracted on first "
              "use) for anatomy, clinical_knowledge, college_medicine, genetics, traditional_chinese_medicine, "
              "nutrition, virology; Question, A-D, Answer", text.load_cmmlu,
              download=_hf("haonan-li/cmmlu", "CMMLU")),
    Benchmark("MedQA_MCMLE", "1", "text", "shuyuej/MedQA-MCMLE-Benchmark: the train split (data/train-*.parquet "
              "or train.json[l]); question, options {A..}, answer_idx", text.load_medqa_mcmle,
              aliases=("MedQA-MCMLE-Benchmark",),
              download=_hf("shuyuej/MedQA-MCMLE-Benchmark", "MedQA_MCMLE")),
    Benchmark("MedXpertQA-Text", "3", "text", "TsinghuaC3I/MedXpertQA: Text/test.jsonl; question (cut at 'Answer "
              "Choices:'), options {A..}, label, question_type, medical_task", media.load_medxpertqa_text,
              aliases=("MedXpertQA",), download=_hf("TsinghuaC3I/MedXpertQA", "MedXpertQA")),
    # ---------------------------------------------------------------------------------------- 2-D VQA
    Benchmark("VQA_RAD", "2", "2d", "flaviagiammarino/vqa-rad: data/test-*.parquet; image {bytes,path}, question, "
              "answer (yes/no -> closed prompt, else open)", media.load_vqa_rad, judge="open",
              download=_hf("flaviagiammarino/vqa-rad", "VQA_RAD")),
    Benchmark("SLAKE", "3", "2d", "BoKelvin/SLAKE: test.json + imgs/ (imgs.zip, extracted on first use); img_name, "
              "question, answer, answer_type, q_lang (zh skipped)", media.load_slake, judge="all",
              download=_hf("BoKelvin/SLAKE", "SLAKE")),
    Benchmark("PATH_VQA", "2", "2d", "flaviagiammarino/path-vqa: data/test-*.parquet; image, question, answer "
              "(yes/no -> closed prompt, else open)", media.load_vqa_rad, judge="all",
              download=_hf("flaviagiammarino/path-vqa", "PATH_VQA")),
    Benchmark("PMC_VQA", "2", "2d", "RadGenome/PMC-VQA: test_2.csv (Figure_path, Question, Choice A-D, Answer) + "
              "figures/ (images_2.zip, extracted on first use)", media.load_pmc_vqa,
              download=_hf("RadGenome/PMC-VQA", "PMC_VQA")),
    Benchmark("OmniMedVQA", "3", "2d", "foreverbeliever/OmniMedVQA: OmniMedVQA.zip (extracted on first use) -> "
              "QA_information/Open-access/*.json (image_path, question, gt_answer, option_A..D, question_type, "
              "modality_type) + Images/; per question_type and modality_type", media.load_omnimedvqa,
              download=_hf("foreverbeliever/OmniMedVQA", "OmniMedVQA")),
    Benchmark("MMMU-Medical-val", "3", "2d", "MMMU/MMMU: <Subject>/validation-*.parquet for Basic_Medical_Science, "
              "Clinical_Medicine, Diagnostics_and_Laboratory_Medicine, Pharmacy, Public_Health; question, options, "
              "answer, question_type, image_1", media.load_mmmu_medical_val, aliases=("MMMU",),
              download=_hf("MMMU/MMMU", "MMMU")),
    Benchmark("MMMU-Medical-test", "1", "2d", "MMMU/MMMU: <Subject>/test-*.parquet for the five medical subjects "
              "(answers hidden); writes submission.json for eval.ai", media.load_mmmu_medical_test,
              aliases=("MMMU",), download=_hf("MMMU/MMMU", "MMMU"),
              submission="https://eval.ai/web/challenges/challenge-page/2179"),
    Benchmark("Medmnist", "1", "2d", "MedUniEval's medminist_test.json (conversations[0].value with <image> and A. "
              "options, images [path relative to the folder], answer, split) + the images", media.load_medmnist,
              aliases=("MedMNIST",)),
    Benchmark("MedXpertQA-MM", "3", "2d", "TsinghuaC3I/MedXpertQA: MM/test.jsonl + images/ (images.zip, extracted "
              "on first use); question, options {A..E}, label, images, question_type, medical_task",
              media.load_medxpertqa_mm, aliases=("MedXpertQA",), download=_hf("TsinghuaC3I/MedXpertQA", "MedXpertQA")),
    Benchmark("MedFrameQA", "3", "2d", "SuhaoYu1020/MedFrameQA: data/test-*.parquet; question, options, "
              "correct_answer, image_1..image_5, modality; per modality (CT/MRI/ultrasound/X-ray/Other) and frame "
              "count", media.load_medframeqa, download=_hf("SuhaoYu1020/MedFrameQA", "MedFrameQA")),
    # -------------------------------------------------------------------------------------------- 3-D
    Benchmark("M3D", "4", "3d", "MedUniEval's M3D_test.json (conversations, video: [slice folder or .nii/.nii.gz], "
              "Question_Type CLOSE/OPEN, type 1-5) + the slice folders or volumes; else the public GoodBaiBai88/"
              "M3D-VQA M3D_VQA_test.csv + the M3D-Cap .npy volumes it names (each row asked closed and open)",
              media.load_m3d, category_average=True, aliases=("M3D-VQA",),
              download=_hf("GoodBaiBai88/M3D-VQA", "M3D")),
    Benchmark("3DRad", "2", "3d", "Rad3D_test.json (conversations, video: [slice folder or .nii/.nii.gz], "
              "Question_Type, type, sub-type) + the slice folders or volumes", media.load_3drad,
              category_average=True, aliases=("3D-RAD", "Rad3D")),
    Benchmark("Amos", "2", "3d", "3D-AMOS-MM amos_val.json (video: [slice folder or .nii/.nii.gz], conversations[1] "
              "= report) + the slice folders or volumes", media.load_amos, aliases=("3D-AMOS-MM", "AMOS-MM")),
    # ---------------------------------------------------------------------------------------- reports
    Benchmark("IU_XRAY", "3", "report", "MedEvalKit's test.json (id, image [names], findings, impression) + images/; "
              "or MedUniEval's iu_xray_test.json (image: [paths], conversations with the report)", media.load_iu_xray,
              aliases=("IU-Xray", "iu_xray")),
    Benchmark("MIMIC_CXR", "3", "report", "MedEvalKit's test.json (image [names], findings, impression) + images/; "
              "or MedUniEval's mimic_test.json (image: [paths], conversations)", media.load_mimic_cxr,
              aliases=("MIMIC-CXR",)),
    Benchmark("CheXpert_Plus", "3", "report", "MedEvalKit's test.json (image name, findings, impression) + images/; "
              "or MedUniEval's chexpert_val.json (image: [paths], first one used; conversations)",
              media.load_chexpert_plus, aliases=("CheXpert-Plus",)),
)


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def get_benchmark(name: str) -> Benchmark:
    """A benchmark by name, case-insensitive, ignoring '-' and '_'."""
    for benchmark in BENCHMARKS:
        if _key(benchmark.name) == _key(name):
            return benchmark
    raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(b.name for b in BENCHMARKS)}")

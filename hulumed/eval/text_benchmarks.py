"""Loaders of the text-only multiple-choice benchmarks of MedUniEval's `benchmarks.py`: each reads the public release as
published under ``D/<name>`` and returns ``Sample``s with MedUniEval's multiple-choice prompt.

MedQA-USMLE, MedMCQA, PubMedQA, MMLU (medical subjects, and all 57), MMLU-Pro (health), Medbullets op4/op5,
SuperGPQA (medicine); the Chinese sets CMB, CMExam, CMMLU (medical subjects) and MedQA-MCMLE with MedUniEval's
Chinese template. MedXpertQA-Text lives with MedXpertQA-MM in media_benchmarks.py (one release, one loader).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .data_files import DataError, media_folder, read_release, read_rows, split_patterns
from .samples import MC_INSTRUCTION, Sample, lettered, mc_prompt, mc_prompt_zh, option_list, reference_letter

#: where each release keeps its test rows (tried in order; the first that exists is read, nothing else).
MEDQA_FILES = ("phrases_no_exclude_test.jsonl", *split_patterns("test"))
MEDMCQA_FILES = split_patterns("validation")
PUBMEDQA_FILES = split_patterns("test")
MEDBULLETS_FILES = split_patterns("train")
SUPERGPQA_FILES = ("SuperGPQA-all.jsonl", *split_patterns("train"))
MMLU_PRO_FILES = ("mmlu_pro_test.json",)
MMLU_PRO_HUB_FILES = split_patterns("test")
CMB_FILES = ("CMB-Exam/CMB-test/CMB-test-choice-question-merge.json", "CMB-test/CMB-test-choice-question-merge.json",
             "CMB-test-choice-question-merge.json", *split_patterns("test"))
CMB_ANSWER_FILES = ("CMB-Exam/CMB-test/CMB-test-choice-answer.json", "CMB-test/CMB-test-choice-answer.json",
                    "CMB-test-choice-answer.json")
CMB_SINGLE_CHOICE = "单项选择题"  # upstream keeps single-answer questions only
CMEXAM_FILES = (*split_patterns("test"), "data/test.csv")
MCMLE_FILES = split_patterns("train")
#: MedUniEval's CMMLU medical subjects
CMMLU_MEDICAL = ("anatomy", "clinical_knowledge", "college_medicine", "genetics", "traditional_chinese_medicine",
                 "nutrition", "virology")


def _options_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value)


def load_medqa(root: Path, mode: str = "fixed") -> list[Sample]:
    """GBaker/MedQA-USMLE-4-options: ``phrases_no_exclude_test.jsonl`` (the hub's file), ``A. text`` options."""
    samples = []
    for i, row in enumerate(read_release(root, MEDQA_FILES)):
        options = _options_dict(row["options"])
        texts = [str(v) for v in options.values()]
        choices = [f"{k}. {v}" for k, v in options.items()]
        samples.append(Sample(str(row.get("id", i)), "mc", mc_prompt(row["question"], choices),
                              reference_letter(row["answer_idx"], texts), choices=texts))
    return samples


def load_medmcqa(root: Path, mode: str = "fixed") -> list[Sample]:
    samples = []
    for i, row in enumerate(read_release(root, MEDMCQA_FILES)):
        texts = [str(row["opa"]), str(row["opb"]), str(row["opc"]), str(row["opd"])]
        answer = "ABCD"[int(row["cop"])]
        samples.append(Sample(str(row.get("id", i)), "mc", mc_prompt(row["question"], lettered(texts)),
                              answer, choices=texts, group=row.get("subject_name")))
    return samples


def load_pubmedqa(root: Path, mode: str = "fixed") -> list[Sample]:
    """openlifescienceai/pubmedqa test: ``Context: …`` + the multiple-choice prompt with ``A.yes`` options."""
    samples = []
    for i, row in enumerate(read_release(root, PUBMEDQA_FILES)):
        data = row["data"] if isinstance(row.get("data"), dict) else row
        options = _options_dict(data["Options"])
        texts = [str(options[k]) for k in ("A", "B", "C")]
        context = data.get("Context", "")
        context = "\n".join(context) if isinstance(context, list) else str(context)
        prompt = f"Context: {context}\n" + mc_prompt(data["Question"], lettered(texts, "."))
        samples.append(Sample(str(row.get("id", i)), "mc", prompt, reference_letter(data["Correct Option"], texts),
                              choices=texts))
    return samples


#: upstream's MMLU "medical" subset.
MMLU_MEDICAL = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                "professional_medicine", "nutrition", "virology", "high_school_biology")


def load_mmlu_medical(root: Path, mode: str = "fixed") -> list[Sample]:
    """cais/mmlu: ``<subject>/test-*.parquet`` per subject, or ``all/test-*.parquet`` filtered by ``subject``.

    Upstream's loader is broken (an undefined ``context`` and the four choices joined into one string); this one
    uses the multiple-choice template with one ``A. …`` line per choice, like MedQA.
    """
    samples = []
    combined = None
    for subject in MMLU_MEDICAL:
        if (root / subject).is_dir():
            rows = read_release(root / subject, split_patterns("test"))
        else:
            if combined is None:
                if not (root / "all").is_dir():
                    raise DataError(f"{root}: neither {subject}/ nor all/ (cais/mmlu layout) found")
                combined = read_release(root / "all", split_patterns("test"))
            rows = [r for r in combined if r.get("subject") == subject]
        for i, row in enumerate(rows):
            texts = option_list(row["choices"])
            samples.append(Sample(f"{subject}-{i}", "mc", mc_prompt(row["question"], lettered(texts)),
                                  reference_letter(row["answer"], texts), choices=texts, group=subject))
    return samples


def _padded_choices(rows: list[dict[str, Any]]) -> list[str]:
    """Every option letter of the file in order of first appearance: the struct column ``datasets`` builds when
    it loads the JSON (rows lacking a letter get ``None`` there, which upstream prints as ``H. None``)."""
    letters: dict[str, None] = {}
    for row in rows:
        letters.update(dict.fromkeys(_options_dict(row["choices"])))
    return list(letters)


def load_mmlu_pro(root: Path, mode: str = "fixed") -> list[Sample]:
    """Upstream's bundled ``mmlu_pro_test.json`` (818 health items: problem, choices {A: …}, answer letter), or
    TIGER-Lab/MMLU-Pro ``data/test-*.parquet`` restricted to ``category == "health"``.

    Prompt: ``problem\nA. …\n…`` + the instruction. Upstream (``datasets`` 3.6.0) pads every item to the file's
    ten letters with ``None`` (``H. None`` … ``J. None``); ``mode="upstream"`` reproduces it, ``fixed`` lists
    only the item's own options.
    """
    if (root / MMLU_PRO_FILES[0]).is_file():
        rows = read_rows(root / MMLU_PRO_FILES[0])
        items = [(str(r.get("question_id", i)), r["problem"], _options_dict(r["choices"]), r["answer"])
                 for i, r in enumerate(rows)]
        letters = _padded_choices(rows)
    else:
        rows = [r for r in read_release(root, MMLU_PRO_HUB_FILES) if str(r.get("category", "")).lower() == "health"]
        items = [(str(r.get("question_id", i)), r["question"], dict(zip("ABCDEFGHIJ", option_list(r["options"]))),
                  r["answer"]) for i, r in enumerate(rows)]
        letters = list("ABCDEFGHIJ")
    samples = []
    for sample_id, problem, options, answer in items:
        if mode == "upstream":
            options = {letter: options.get(letter) for letter in letters}
        texts = [str(v) for v in options.values()]
        prompt = problem + "\n" + "\n".join(f"{k}. {v}" for k, v in options.items()) + "\n" + MC_INSTRUCTION
        samples.append(Sample(sample_id, "mc", prompt, reference_letter(answer, texts), choices=texts))
    return samples


def load_medbullets(root: Path, mode: str = "fixed") -> list[Sample]:
    """tuenguyen/Medical-Eval-MedBullets_op4 (an ``options`` dict) and LangAGI-Lab/medbullets_op5 (opa..ope): the
    train split; ``A.text`` options as upstream; answer_idx is the letter."""
    samples = []
    for i, row in enumerate(read_release(root, MEDBULLETS_FILES)):
        if row.get("options") is not None:
            options = _options_dict(row["options"])
            choices = [f"{k}.{v}" for k, v in options.items()]
            texts = [str(v) for v in options.values()]
        else:
            texts = [str(row.get(key)) for key in ("opa", "opb", "opc", "opd", "ope")]
            choices = lettered(texts, ".")
        letter = row.get("answer_idx") not in (None, "")
        answer = row["answer_idx"] if letter else row["answer"]
        samples.append(Sample(str(row.get("id", i)), "mc", mc_prompt(row["question"], choices),
                              reference_letter(answer, texts, letter_field=letter), choices=texts))
    return samples


def load_supergpqa(root: Path, mode: str = "fixed") -> list[Sample]:
    """m-a-p/SuperGPQA ``SuperGPQA-all.jsonl`` (or the train split), the ``discipline == "Medicine"`` rows;
    ``A.text`` options and ``answer_letter`` as upstream."""
    samples = []
    for i, row in enumerate(r for r in read_release(root, SUPERGPQA_FILES) if r.get("discipline") == "Medicine"):
        texts = option_list(row["options"])
        letter = bool(row.get("answer_letter"))
        answer = row["answer_letter"] if letter else row["answer"]
        samples.append(Sample(str(row.get("uuid", i)), "mc", mc_prompt(row["question"], lettered(texts, ".")),
                              reference_letter(answer, texts, letter_field=letter), choices=texts,
                              group=row.get("field")))
    return samples


def load_mmlu_all(root: Path, mode: str = "fixed") -> list[Sample]:
    """cais/mmlu, all 57 subjects: ``all/test-*.parquet`` (or one folder per subject). Upstream's MMLU prompt is
    broken (an undefined ``context``); the template of MMLU-medical is used."""
    if (root / "all").is_dir():
        rows = read_release(root / "all", split_patterns("test"))
    else:
        rows = [dict(r, subject=folder.name) for folder in sorted(p for p in root.iterdir() if p.is_dir())
                if any(folder.glob("test-*.parquet")) for r in read_release(folder, split_patterns("test"))]
        if not rows:
            raise DataError(f"{root}: neither all/ nor per-subject folders (cais/mmlu layout) found")
    samples = []
    for i, row in enumerate(rows):
        texts = option_list(row["choices"])
        subject = row.get("subject") or None
        samples.append(Sample(f"{subject or 'all'}-{i}", "mc", mc_prompt(row["question"], lettered(texts)),
                              reference_letter(row["answer"], texts), choices=texts, group=subject))
    return samples


def _key_value_options(value: Any) -> list[tuple[str, str]]:
    """Options as (letter, text): a {letter: text} dict, a list of {"key", "value"} (what ``datasets`` makes of
    the dict), or CMExam's CSV string ``"A 文本\nB 文本"``."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith(("{", "[")):
            return _key_value_options(json.loads(stripped))
        pairs = []
        for line in stripped.splitlines():
            line = line.strip()
            if line:
                pairs.append((line[0], line[1:].lstrip(" .、:：")))
        return pairs
    if isinstance(value, dict):
        return [(str(k), str(v)) for k, v in value.items() if v not in (None, "")]
    return [(str(item["key"]), str(item["value"])) for item in value]


def _chinese_mc(sample_id: str, question: str, pairs: list[tuple[str, str]], answer: Any, mode: str,
                group: str | None = None) -> Sample:
    """MedUniEval's Chinese sets: ``A.文本`` options in the Chinese template; the answer is a letter."""
    shown = [f"{k}.{v}" for k, v in pairs]
    texts = [v for _, v in pairs]
    return Sample(sample_id, "mc", mc_prompt_zh(question, shown), reference_letter(str(answer).strip(), texts),
                  choices=shown if mode == "upstream" else texts, group=group)


def load_cmb(root: Path, mode: str = "fixed") -> list[Sample]:
    """FreedomIntelligence/CMB, CMB-Exam test: ``CMB-test-choice-question-merge.json`` (question, option,
    answer, question_type, exam_type); answers from ``CMB-test-choice-answer.json`` (id, answer) when the
    questions file has none. Single-answer questions only (``question_type == 单项选择题``), as upstream."""
    rows = read_release(root, CMB_FILES)
    answers: dict[str, Any] = {}
    if any(not row.get("answer") for row in rows):
        answer_files = [root / name for name in CMB_ANSWER_FILES if (root / name).is_file()]
        if not answer_files:
            raise DataError(f"{root}: the CMB questions have no answers and no CMB-test-choice-answer.json is there")
        answers = {str(r["id"]): r["answer"] for r in read_rows(answer_files[0])}
    samples = []
    for i, row in enumerate(rows):
        if row.get("question_type") != CMB_SINGLE_CHOICE:
            continue
        answer = row.get("answer") or answers.get(str(row.get("id")))
        if not answer:
            raise DataError(f"{root}: CMB question {row.get('id', i)} has no answer")
        samples.append(_chinese_mc(str(row.get("id", i)), row["question"], _key_value_options(row["option"]), answer,
                                   mode, group=row.get("exam_type")))
    return samples


def load_cmexam(root: Path, mode: str = "fixed") -> list[Sample]:
    """fzkuji/CMExam test split (parquet / JSON / the original ``test.csv``): Question, Options (key/value list
    or ``"A 文本\nB 文本"``), Answer (a letter; multi-answer rows, e.g. ``"AB"``, scored as upstream)."""
    samples = []
    for i, row in enumerate(read_release(root, CMEXAM_FILES)):
        samples.append(_chinese_mc(str(row.get("id", i)), row["Question"], _key_value_options(row["Options"]),
                                   row["Answer"], mode))
    return samples


def load_cmmlu(root: Path, mode: str = "fixed") -> list[Sample]:
    """haonan-li/cmmlu: ``test/<subject>.csv`` (Question, A-D, Answer; ``cmmlu_v1_0_1.zip`` extracted on first
    use) for MedUniEval's seven medical subjects, or rows with ``task`` / ``question`` / ``A``-``D`` /
    ``answer`` (the converted form MedUniEval loads)."""
    if (root / "test").is_dir() or (root / "cmmlu_v1_0_1.zip").is_file():
        folder = media_folder(root, "test", archive="cmmlu_v1_0_1.zip")
        rows = []
        for subject in CMMLU_MEDICAL:
            if (folder / f"{subject}.csv").is_file():
                rows += [dict(r, task=subject) for r in read_rows(folder / f"{subject}.csv")]
    else:
        rows = [r for r in read_release(root, (*split_patterns("train"), *split_patterns("test")))
                if r.get("task") in CMMLU_MEDICAL]
    samples = []
    for i, row in enumerate(rows):
        question = row.get("question", row.get("Question"))
        answer = row.get("answer", row.get("Answer"))
        pairs = [(letter, str(row[letter])) for letter in "ABCD"]
        samples.append(_chinese_mc(f"{row['task']}-{i}", question, pairs, answer, mode, group=row["task"]))
    return samples


def load_medqa_mcmle(root: Path, mode: str = "fixed") -> list[Sample]:
    """shuyuej/MedQA-MCMLE-Benchmark (train split): question, options {A: …}, answer_idx. Upstream lists the
    option texts without their letters yet asks for a letter; ``mode="upstream"`` reproduces that, ``fixed``
    shows ``A.文本``."""
    samples = []
    for i, row in enumerate(read_release(root, MCMLE_FILES)):
        pairs = _key_value_options(row["options"])
        texts = [v for _, v in pairs]
        shown = texts if mode == "upstream" else [f"{k}.{v}" for k, v in pairs]
        samples.append(Sample(str(row.get("id", i)), "mc", mc_prompt_zh(row["question"], shown),
                              reference_letter(row["answer_idx"], texts), choices=texts))
    return samples


#: simple-evals' HealthBench files (the oss_eval set, its consensus and hard subsets), by their published names
HEALTHBENCH_FILES = {"normal": ("*oss_eval.jsonl",), "consensus": ("consensus_*.jsonl",), "hard": ("hard_*.jsonl",)}


def load_healthbench(root: Path, mode: str = "fixed") -> list[Sample]:
    """OpenAI's HealthBench JSONL files as MedUniEval reads them (``2025-05-07-06-14-12_oss_eval.jsonl``,
    ``consensus_2025-05-09-20-00-46.jsonl``, ``hard_2025-05-08-21-00-10.jsonl``; those present): ``prompt`` (a
    multi-turn conversation), ``rubrics``, ``example_tags``, ``prompt_id``. The model answers the whole
    conversation; ``mode="upstream"`` gives it only the first message, as MedUniEval does (its judge still sees
    the whole conversation). Graded by the LLM judge (rubric.py): ``hulumed eval`` needs ``--judge-url``."""
    from .data_files import find_files

    samples = []
    for kind, patterns in HEALTHBENCH_FILES.items():
        try:
            files = find_files(root, patterns)
        except DataError:
            continue
        for path in files:
            for i, row in enumerate(read_rows(path)):
                messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in row["prompt"]]
                shown = messages[:1] if mode == "upstream" else messages
                if not shown or shown[-1]["role"] != "user":
                    raise DataError(f"{path}: row {i} does not end with a user turn")
                samples.append(Sample(f"{kind}-{row.get('prompt_id', i)}", "rubric", shown[-1]["content"], "-",
                                      history=shown[:-1], rubrics=list(row["rubrics"]), graded_messages=messages,
                                      example_tags=list(row.get("example_tags") or []), group=kind))
    if not samples:
        raise DataError(f"{root}: no HealthBench file (*oss_eval.jsonl, consensus_*.jsonl, hard_*.jsonl) found")
    return samples

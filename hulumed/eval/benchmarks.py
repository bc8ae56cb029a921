"""The benchmark registry: each entry reads its public release from ``--data-dir D/<name>`` into ``Sample``s.

A ``Benchmark`` is a name (as upstream spells it), a version (bumped whenever its prompt, parsing or metric
changes, so numbers from different versions are never mixed), the published layout it reads (shown by
``hulumed eval --list``) and a loader ``Path -> list[Sample]``. Prompts are MedUniEval's
``question_formats.py`` templates (UPSTREAM.md §9.2). To add a benchmark: write a loader below, add a
``Benchmark`` to ``BENCHMARKS``, and add a few rows in its published format to tests/unit/test_eval_benchmarks.py
(the registry completeness test fails until you do).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conversation import Conversation
from .data_files import DataError, read_split

MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
CLOSED_INSTRUCTION = "Answer the question using a single word or phrase."
OPEN_INSTRUCTION = "Please answer the question concisely."
REPORT_PROMPT = (
    "You are a helpful assistant. Please generate a report for the given images, including both findings and "
    "impressions. Return the report in the following format: Findings: {} Impression: {}."
)
KINDS = ("mc", "closed", "judgement", "open", "3d_close", "3d_open", "report")


@dataclass
class Sample:
    """One benchmark question, ready to become a conversation."""

    id: str
    kind: str  # one of KINDS: which judge scores it
    prompt: str
    answer: str
    choices: list[str] = field(default_factory=list)  # multiple choice: option strings as shown
    images: list[str | bytes] = field(default_factory=list)  # image files, or encoded image bytes (parquet)
    frames: str | None = None  # a folder of slices (3-D benchmarks, read as frames as upstream does)
    group: str | None = None  # category for per-group metrics

    def conversation(self, blank_images: bool = False) -> Conversation:
        """The user turn: images (or a frame folder) first, then the prompt (upstream's order)."""
        from PIL import Image

        content: list[dict[str, Any]] = []
        for image in self.images:
            picture = Image.open(io.BytesIO(image) if isinstance(image, bytes) else image).convert("RGB")
            if blank_images:
                picture = Image.new("RGB", picture.size, (0, 0, 0))
            content.append({"type": "image", "image": {"image_path": picture}})
        if self.frames is not None:
            content.append({"type": "video", "video": {"video_path": self.frames, "fps": 1, "max_frames": 1800}})
        content.append({"type": "text", "text": self.prompt})
        return [{"role": "user", "content": content}]

    def prompt_hash(self) -> str:
        """sha256 of the prompt and the media it shows (first 16 hex digits)."""
        digest = hashlib.sha256(self.prompt.encode())
        for image in self.images:
            digest.update(image if isinstance(image, bytes) else str(image).encode())
        digest.update(str(self.frames).encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Benchmark:
    name: str  # as upstream spells it
    version: str  # prompt + parsing + metric version
    modality: str  # text | 2d | 3d | report
    layout: str  # what it reads under D/<name>
    loader: Callable[[Path], list[Sample]]


# ------------------------------------------------------------------------------------------------ prompts
def mc_prompt(question: str, options: list[str]) -> str:
    return "\nQuestion: " + question + "\nOptions: \n" + "\n".join(options) + "\n" + MC_INSTRUCTION


def closed_prompt(question: str) -> str:
    return question + "\n" + CLOSED_INSTRUCTION


def open_prompt(question: str) -> str:
    return question + "\n" + OPEN_INSTRUCTION


def _lettered(options: list[str]) -> list[str]:
    return [f"{chr(ord('A') + i)}. {text}" for i, text in enumerate(options)]


def _image_bytes(value: Any, root: Path) -> str | bytes:
    """A parquet image cell ({'bytes', 'path'}) or a path relative to ``root``."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        value = value.get("path")
    if not value:
        raise DataError(f"a row under {root} has no image")
    return str(root / value)


# ------------------------------------------------------------------------------------------------ loaders
def load_medqa(root: Path) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_split(root, "test")):
        options = row["options"]
        if isinstance(options, str):
            options = json.loads(options)
        texts = [options[k] for k in sorted(options)]
        choices = _lettered(texts)
        samples.append(Sample(str(row.get("id", i)), "mc", mc_prompt(row["question"], choices),
                              row["answer_idx"], choices=texts))
    return samples


def load_medmcqa(root: Path) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_split(root, "validation")):
        texts = [row["opa"], row["opb"], row["opc"], row["opd"]]
        answer = "ABCD"[int(row["cop"])]
        samples.append(Sample(str(row.get("id", i)), "mc", mc_prompt(row["question"], _lettered(texts)),
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
        prompt = f"Context: {context}\n" + mc_prompt(data["Question"], _lettered(texts))
        samples.append(Sample(str(row.get("id", i)), "mc", prompt, data["Correct Option"], choices=texts))
    return samples


def _yes_no(answer: str) -> bool:
    return answer.strip().lower() in ("yes", "no")


def load_vqa_rad(root: Path) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_split(root, "test")):
        closed = _yes_no(str(row["answer"]))
        prompt = closed_prompt(row["question"]) if closed else open_prompt(row["question"])
        samples.append(Sample(str(i), "judgement" if closed else "open", prompt, str(row["answer"]),
                              images=[_image_bytes(row["image"], root)], group="closed" if closed else "open"))
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
                              images=[str(root / "imgs" / row["img_name"])], group=row["answer_type"].upper()))
    return samples


def load_pmc_vqa(root: Path) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_split(root, None, ("test_2.csv",))):
        choices = [row[f"Choice {letter}"].strip() for letter in "ABCD"]
        image = root / "figures" / row["Figure_path"]
        samples.append(Sample(str(row.get("index", i)), "mc", mc_prompt(row["Question"], choices),
                              row["Answer"].strip(), choices=choices, images=[str(image)]))
    return samples


_M3D_TYPES = {"1": "Plane", "2": "Phase", "3": "Organ", "4": "Abnormality", "5": "Location"}


def load_m3d(root: Path) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_split(root, None, ("M3D_test.json",))):
        turns = row["conversations"]
        question = re.sub(r"<image>\n|<video>\n", "", turns[0]["value"])
        closed = str(row["Question_Type"]).upper() == "CLOSE"
        prompt = question + "\n" + (MC_INSTRUCTION if closed else OPEN_INSTRUCTION)
        frames = row["video"][0] if isinstance(row["video"], list) else row["video"]
        kind, group = ("3d_close" if closed else "3d_open"), str(row.get("type"))
        samples.append(Sample(str(row.get("id", i)), kind, prompt, turns[1]["value"], frames=str(root / frames),
                              group=_M3D_TYPES.get(group, group)))
    return samples


def load_iu_xray(root: Path) -> list[Sample]:
    samples = []
    for i, row in enumerate(read_split(root, None, ("iu_xray_test.json",))):
        images = row["image"] if isinstance(row["image"], list) else [row["image"]]
        report = next(t["value"] for t in row["conversations"] if t.get("from") in ("gpt", "assistant"))
        samples.append(Sample(str(row.get("id", i)), "report", REPORT_PROMPT, report,
                              images=[str(root / p) for p in images]))
    return samples


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("MedQA_USMLE", "1", "text", "GBaker/MedQA-USMLE-4-options: test split (data/test-*.parquet or "
              "test.jsonl); question, options {A..D}, answer_idx", load_medqa),
    Benchmark("MedMCQA", "1", "text", "openlifescienceai/medmcqa: validation split (data/validation-*.parquet or "
              "validation.json[l]); question, opa..opd, cop (0-3)", load_medmcqa),
    Benchmark("PubMedQA", "1", "text", "openlifescienceai/pubmedqa: test split (test*.parquet/json[l]); "
              "data.{Question, Options, Context, Correct Option}", load_pubmedqa),
    Benchmark("VQA_RAD", "1", "2d", "flaviagiammarino/vqa-rad: data/test-*.parquet; image {bytes,path}, question, "
              "answer (yes/no -> closed prompt, else open)", load_vqa_rad),
    Benchmark("SLAKE", "1", "2d", "BoKelvin/SLAKE: test.json + imgs/; img_name, question, answer, answer_type, "
              "q_lang (zh skipped)", load_slake),
    Benchmark("PMC_VQA", "1", "2d", "RadGenome/PMC-VQA: test_2.csv (Figure_path, Question, Choice A-D, Answer) + "
              "figures/", load_pmc_vqa),
    Benchmark("M3D", "1", "3d", "M3D_test.json (conversations, video: [slice folder], Question_Type CLOSE/OPEN, "
              "type 1-5) + the slice folders", load_m3d),
    Benchmark("IU_XRAY", "1", "report", "iu_xray_test.json (image: [paths], conversations with the report) + images",
              load_iu_xray),
)


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def get_benchmark(name: str) -> Benchmark:
    """A benchmark by name, case-insensitive, ignoring '-' and '_'."""
    for benchmark in BENCHMARKS:
        if _key(benchmark.name) == _key(name):
            return benchmark
    raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(b.name for b in BENCHMARKS)}")

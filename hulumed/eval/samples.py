"""What a benchmark loader produces: ``Sample`` (one question, ready to become a conversation) and the prompt
templates of MedUniEval's ``question_formats.py`` shared by every loader.

A sample's ``kind`` picks its judge in runner.score (``KINDS``). Media are image files or encoded image bytes
(parquet cells), a folder of slices (3-D, read as frames as upstream does) or a NIfTI volume (read as a ``3d``
part).
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conversation import Conversation
from ..errors import MediaError
from .data_files import DataError

MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
MC_INSTRUCTION_ZH = "请直接使用给定选项中的选项字母来回答该问题。"  # MedUniEval's lang="zh" instruction
CLOSED_INSTRUCTION = "Answer the question using a single word or phrase."
OPEN_INSTRUCTION = "Please answer the question concisely."
REPORT_PROMPT = (
    "You are a helpful assistant. Please generate a report for the given images, including both findings and "
    "impressions. Return the report in the following format: Findings: {} Impression: {}."
)
KINDS = ("mc", "mmmu_mc", "mmmu_open", "closed", "judgement", "open", "3d_close", "3d_open", "report", "rubric")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


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
    volume: str | None = None  # a NIfTI file (3-D benchmarks released as volumes)
    group: str | None = None  # category for per-group metrics (metrics.json accuracy_by_group)
    question: str | None = None  # the bare question, for the LLM judge (defaults to the prompt)
    #: every grouping dimension upstream reports, {dimension: value} (metrics.json ``groups``); None values are
    #: dropped. ``group`` defaults to the first dimension's value.
    groups: dict[str, str] = field(default_factory=dict)
    #: earlier turns of a multi-turn conversation ({"role", "content"} strings); the prompt is the last user turn
    history: list[dict[str, str]] = field(default_factory=list)
    #: rubric items ({"criterion", "points", "tags"}) an LLM judge grades the answer on (HealthBench)
    rubrics: list[dict[str, Any]] = field(default_factory=list)
    #: the conversation the judge sees, when it is not the one the model saw (HealthBench upstream mode)
    graded_messages: list[dict[str, str]] = field(default_factory=list)
    example_tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.groups = {str(k): str(v) for k, v in self.groups.items() if v is not None and v != ""}
        if self.group is None and self.groups:
            self.group = next(iter(self.groups.values()))

    def conversation(self, blank_images: bool = False) -> Conversation:
        """The user turn: images (or a frame folder / volume) first, then the prompt (upstream's order)."""
        from PIL import Image

        content: list[dict[str, Any]] = []
        for number, image in enumerate(self.images):
            try:
                picture = Image.open(io.BytesIO(image) if isinstance(image, bytes) else image).convert("RGB")
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
                raise MediaError(f"sample {self.id}: image {number} is not a readable image "
                                 f"({type(error).__name__}: {str(error)[:120]})") from None
            if blank_images:
                picture = Image.new("RGB", picture.size, (0, 0, 0))
            content.append({"type": "image", "image": {"image_path": picture}})
        if self.frames is not None:
            content.append({"type": "video", "video": {"video_path": self.frames, "fps": 1, "max_frames": 1800}})
        if self.volume is not None:
            content.append({"type": "3d", "3d": {"image_path": self.volume, "nii_axis": 2}})
        content.append({"type": "text", "text": self.prompt})
        return [*(dict(turn) for turn in self.history), {"role": "user", "content": content}]

    def media_paths(self) -> list[str]:
        """Every file or folder this sample reads from disk (encoded image bytes excluded)."""
        paths = [str(image) for image in self.images if not isinstance(image, bytes)]
        return paths + [p for p in (self.frames, self.volume) if p is not None]

    def prompt_hash(self) -> str:
        """sha256 of the prompt and the media it shows (first 16 hex digits)."""
        digest = hashlib.sha256(self.prompt.encode())
        for turn in self.history:
            digest.update(f"{turn['role']}\0{turn['content']}".encode())
        for image in self.images:
            digest.update(image if isinstance(image, bytes) else str(image).encode())
        digest.update(str(self.frames).encode())
        if self.volume is not None:
            digest.update(self.volume.encode())
        return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ prompts
def mc_prompt(question: str, options: list[str]) -> str:
    return "\nQuestion: " + question + "\nOptions: \n" + "\n".join(options) + "\n" + MC_INSTRUCTION


def mc_prompt_zh(question: str, options: list[str]) -> str:
    """MedUniEval's Chinese multiple-choice template (``get_multiple_choice_prompt(..., lang="zh")``)."""
    return "\n问题： " + question + "\n选项： \n" + "\n".join(options) + "\n" + MC_INSTRUCTION_ZH


def closed_prompt(question: str) -> str:
    return question + "\n" + CLOSED_INSTRUCTION


def open_prompt(question: str) -> str:
    return question + "\n" + OPEN_INSTRUCTION


def lettered(options: list[str], separator: str = ". ") -> list[str]:
    return [f"{chr(ord('A') + i)}{separator}{text}" for i, text in enumerate(options)]


def image_cell(value: Any, root: Path) -> str | bytes:
    """A parquet image cell ({'bytes', 'path'}) or a path relative to ``root``."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        value = value.get("path")
    if not value:
        raise DataError(f"a row under {root} has no image")
    return str(root / value)


def option_list(value: Any) -> list[str]:
    """Options stored as a list, a JSON / Python-literal list string, or a {letter: text} dict (in stored order,
    as ``dict.items()`` gives them upstream; ``None`` values dropped)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = ast.literal_eval(value)
    if isinstance(value, dict):
        return [str(v) for v in value.values() if v is not None]
    return [str(v) for v in value]


def letter_of(answer: Any, options: list[str], letter_field: bool = False) -> str | None:
    """The reference as an upper-case letter, or None when it names no option.

    Tried in order: the text of an option (so ``'2'`` among options ``['1', '2', '3']`` is ``B``), a letter in
    range, then an integer index (an ``int`` cell, or a digit string that is no option's text). With
    ``letter_field`` (the release documents the column as a letter: answer_idx, label, answer_letter…) a letter in
    range is taken first, so options that are themselves letters cannot shift it. A reference that matches
    nothing is returned as None: the loader keeps the raw answer and that sample scores wrong.
    """
    if isinstance(answer, bool) or answer is None:
        return None
    if isinstance(answer, int):
        return chr(ord("A") + answer) if 0 <= answer < len(options) else None
    text = str(answer).strip()
    in_range = len(text) == 1 and text.isalpha() and 0 <= ord(text.upper()) - ord("A") < len(options)
    if letter_field and in_range:
        return text.upper()
    for i, option in enumerate(options):
        if option.strip().lower() == text.lower():
            return chr(ord("A") + i)
    if in_range:
        return text.upper()
    if text.isdigit() and int(text) < len(options):
        return chr(ord("A") + int(text))
    return None


def reference_letter(answer: Any, options: list[str], letter_field: bool = True) -> str:
    """The reference's letter for a column the release documents as a letter (``letter_field``) or as an option
    text; falls back to the raw answer (which then matches no option and scores wrong)."""
    return letter_of(answer, options, letter_field) or str(answer)

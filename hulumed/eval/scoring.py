"""Answer extraction and per-sample scoring: MedUniEval's rules, in two modes.

``mode="upstream"`` reproduces MedUniEval's ``utils/utils.py`` exactly, bugs included, so
numbers are comparable with published ones. ``mode="fixed"`` (the default) keeps the same rules with the bugs
of upstream's known scoring bugs fixed; every difference is listed in ``FIXES`` and docs/eval.md.

Each judge takes the model's answer text and the reference and returns a ``Verdict``: the parsed answer
(``None`` when nothing could be parsed — counted as unparsable, scored wrong), whether it is correct, and any
continuous metrics (BLEU, ROUGE, F1…).
"""

from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass, field

from ..think import answer_text
from .text_metrics import bleu, meteor, overlap_metrics, upstream_tokens, word_f1

MODES = ("fixed", "upstream")

#: What ``fixed`` does differently from ``upstream`` (shown in docs/eval.md and ``hulumed eval --list``).
FIXES: tuple[str, ...] = (
    ("multiple choice: an answer that names no option is unparsable and wrong (upstream picks the most "
    "difflib-similar option, which inflates accuracy)"),
    ("multiple choice: '(B)', '[B]', '**B**', 'B)' and 'Option B' are read as letters (upstream falls back to "
    "similarity for them)"),
    "yes/no: 'yes'/'no' are matched as words (upstream matches substrings, so 'normal' or 'know' count as 'no')",
    ("closed/yes-no/open: surrounding whitespace and a trailing full stop are ignored (upstream compares "
    "' yes' left by 'answer:' with 'yes')"),
    ("open VQA: precision/recall/F1 in the right order (upstream's calculate_f1 returns (f1, p, r) and is "
    "unpacked as (p, r, f1)); empty answers score 0 (upstream crashes)"),
    "<think> blocks are removed before parsing (upstream's Hulu-Med wrapper keeps them)",
    ("MMMU multiple choice: a response naming no option is unparsable and wrong (MMMU's parser picks a random "
    "letter; in upstream mode the pick is seeded by the response so reruns agree)"),
    ("MMLU-Pro: an item with fewer than ten options lists only its own (upstream, through datasets 3.6.0's struct "
    "column, pads every item to A..J, printing 'H. None' ... 'J. None' for 221 of the 818 items)"),
    ("M3D / 3D-RAD: the headline accuracy is the plain average over questions; upstream's average over "
    "categories is reported beside it as accuracy_category_averaged (and is the headline in upstream mode)"),
)

_MARKERS = ("**answer**:", "**answer**", "*answer*:", "**answer:**", "answer is", "answer:", "答案:",
            "final answer", "final answer is")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass
class Verdict:
    """The outcome of scoring one response."""

    parsed: str | None  # the extracted answer (a letter for multiple choice); None = unparsable
    correct: bool | None  # None: not decided by a rule (rubric grading by the judge, hidden answers)
    metrics: dict[str, float] = field(default_factory=dict)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"scoring mode must be one of {MODES}, not {mode!r}")


# ----------------------------------------------------------------------------------------------- parsing
def extract_boxed(text: str) -> str:
    """mathruler's ``extract_boxed_content``: the brace-balanced content of the last ``\\boxed{``, else "None"."""
    start = text.rfind("\\boxed{")
    if start == -1:
        return "None"
    content, depth = text[start + len("\\boxed{") :], 0
    for i, char in enumerate(content):
        depth += 1 if char == "{" else -1 if char == "}" else 0
        if depth == -1:
            return content[:i].strip()
    return "None"


def parse_response(response: str) -> str:
    """MedUniEval's ``parse_response``: lowercase; boxed / <answer> content; text after each answer marker."""
    response = response.lower()
    if "boxed" in response:
        response = extract_boxed(response)
    elif "<answer>" in response:
        found = " ".join(m for m in _ANSWER_TAG.findall(response)).strip()  # upstream's extract(): all tags
        response = found or response
    for marker in _MARKERS:
        if marker in response:
            response = response.split(marker)[-1]
    return response


def _letters(n: int) -> list[str]:
    return [chr(ord("a") + i) for i in range(n)]


# ---------------------------------------------------------------------------------------- multiple choice
def _upstream_multi_choice(choices: list[str], answer: str, response: str) -> Verdict:
    alphas = _letters(len(choices))
    response = response.lower()
    if response.split("\n\n")[0] in alphas:
        response = response.split("\n\n")[0]
    elif response.split("\n\n")[-1].split(".")[0] in alphas:
        response = response.split("\n\n")[-1].split(".")[0]
    response = parse_response(response)
    lowered = [c.lower() for c in choices]
    response = response.strip().lower().replace("\n", "")
    split = response.split(".")[0].split(":")[-1]
    answer = answer.strip().lower()
    if split == answer:
        return Verdict(split, True)
    if split in alphas:
        return Verdict(split, lowered[ord(split) - ord("a")] == answer)
    if split in lowered:
        return Verdict(split, answer in alphas and split == lowered[ord(answer) - ord("a")])
    best, best_ratio = 0, 0.0  # similarity fallback: always "answers"; parsed None marks it as a guess
    for i, choice in enumerate(lowered):
        ratio = difflib.SequenceMatcher(None, choice, response).ratio()
        if ratio > best_ratio:
            best, best_ratio = i, ratio
    return Verdict(None, alphas[best] == answer or lowered[best] == answer)


_BARE_LETTER = re.compile(r"^(?:option\s+)?[\(\[\*]*([a-z])[\)\]\*]*[.:)]?(?:\s|$)")
_CHOICE_PREFIX = re.compile(r"^\s*\(?[a-z][.:)]\s*")


def _fixed_letter(choices: list[str], response: str) -> str | None:
    alphas = _letters(len(choices))
    text = answer_text(response).lower()
    if not text:
        return None
    first = text.split("\n\n")[0].strip()
    last = text.split("\n\n")[-1].split(".")[0].strip()
    for candidate in (first, last):
        if candidate in alphas:
            return candidate
    text = parse_response(text).replace("\n", " ").replace("**", "").strip()
    text = text.strip(" :")
    match = _BARE_LETTER.match(text)
    if match and match.group(1) in alphas:
        return match.group(1)
    plain = text.rstrip(".").strip()
    for letter, choice in zip(alphas, choices):
        choice = choice.lower().strip()
        if plain and plain in (choice, _CHOICE_PREFIX.sub("", choice).rstrip(".")):
            return letter
    return None


def answer_letter(choices: list[str], answer: str) -> str | None:
    """The reference's letter: ``answer`` itself if it is a letter in range, else the option equal to it."""
    answer = answer.strip().lower()
    alphas = _letters(len(choices))
    if answer in alphas:
        return answer
    for letter, choice in zip(alphas, choices):
        if choice.strip().lower() in (answer,) or _CHOICE_PREFIX.sub("", choice.lower()).strip() == answer:
            return letter
    return None


def judge_multi_choice(choices: list[str], answer: str, response: str, mode: str = "fixed") -> Verdict:
    """Multiple choice. ``choices`` are the option strings as shown, ``answer`` a letter or an option text."""
    _check_mode(mode)
    if mode == "upstream":
        return _upstream_multi_choice(choices, answer, response)
    letter = _fixed_letter(choices, response)
    return Verdict(letter, letter is not None and letter == answer_letter(choices, answer))


# --------------------------------------------------------------------------------------------- closed VQA
def _clean(text: str) -> str:
    return text.lower().replace("\n", "").replace(".", "").replace("-", " ")


def judge_close_end_vqa(answer: str, response: str, mode: str = "fixed") -> Verdict:
    """Closed-ended (non yes/no) VQA: exact match after parsing."""
    _check_mode(mode)
    if mode == "upstream":
        parsed = parse_response(response).replace("\n", "").replace(".", "").replace("-", " ")
        return Verdict(parsed, parsed == _clean(answer))
    parsed = " ".join(_clean(parse_response(answer_text(response))).split())
    return Verdict(parsed or None, bool(parsed) and parsed == " ".join(_clean(answer).split()))


def judge_judgement(answer: str, response: str, mode: str = "fixed") -> Verdict:
    """Yes/no questions: correct iff exactly one of yes/no is said and it is the reference."""
    _check_mode(mode)
    gold = _clean(answer)
    if mode == "upstream":
        text = parse_response(response).replace("\n", "").replace(".", "").replace("-", " ")
        one = ("yes" in text) ^ ("no" in text)
        return Verdict(text if one else None, one and gold in text)
    words = set(re.findall(r"[a-z]+", parse_response(answer_text(response))))
    said = [w for w in ("yes", "no") if w in words]
    parsed = said[0] if len(said) == 1 else None
    return Verdict(parsed, parsed is not None and parsed == gold.strip())


# ----------------------------------------------------------------------------------------------- open VQA
def judge_open_end_vqa(answer: str, response: str, mode: str = "fixed", *, smoothing: str | None = None) -> Verdict:
    """Open-ended VQA: exact match decides ``correct``; BLEU-1..4, ROUGE-1/2/L, precision/recall/F1 as metrics."""
    _check_mode(mode)
    answer = answer.lower()
    if mode == "upstream":
        parsed = parse_response(response)
        metrics = overlap_metrics(parsed, answer, smoothing=smoothing) if parsed.strip() else _zero_overlap()
        precision, recall, f1 = word_f1(parsed, answer)
        # upstream: calculate_f1 returns (f1, precision, recall), unpacked as (precision, recall, f1)
        metrics.update(precision=f1, recall=precision, f1=recall, em=float(parsed == answer))
        return Verdict(parsed, parsed == answer, metrics)
    parsed = parse_response(answer_text(response)).strip().rstrip(".").strip()
    gold = answer.strip().rstrip(".").strip()
    metrics = overlap_metrics(parsed, gold, smoothing=smoothing) if parsed else _zero_overlap()
    precision, recall, f1 = word_f1(parsed, gold)
    metrics.update(precision=precision, recall=recall, f1=f1, em=float(parsed == gold))
    return Verdict(parsed or None, bool(parsed) and parsed == gold, metrics)


def _zero_overlap() -> dict[str, float]:
    return {name: 0.0 for name in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougel")}


# ------------------------------------------------------------------------------------------------- 3-D
_FIRST_LETTER = re.compile(r"^([a-d])[.):]?")


def judge_3d_close(answer: str, response: str, mode: str = "fixed") -> Verdict:
    """M3D / 3D-RAD closed questions: the first letter of the response against the reference's letter."""
    _check_mode(mode)
    text = response if mode == "upstream" else answer_text(response)
    found, gold = _FIRST_LETTER.match(text.strip().lower()), _FIRST_LETTER.match(answer.strip().lower())
    parsed = found.group(1) if found else None
    return Verdict(parsed, parsed is not None and gold is not None and parsed == gold.group(1))


def judge_3d_open(answer: str, response: str, mode: str = "fixed") -> Verdict:
    """M3D / 3D-RAD open questions: the open-VQA metrics with BLEU smoothing method1, and METEOR on the
    lowercased texts split on spaces (upstream's eval_3d; 0 for an empty answer)."""
    verdict = judge_open_end_vqa(answer, response, mode, smoothing="method1")
    prediction = (verdict.parsed or "").lower().strip()
    verdict.metrics["meteor"] = meteor(answer.lower().strip().split(), prediction.split()) if prediction else 0.0
    return verdict


# ------------------------------------------------------------------------------------------------ reports
_REPORT_LABELS = re.compile(r"\b(findings|impression)\s*:", re.IGNORECASE)


def report_text(text: str) -> str:
    """A report with its Findings: / Impression: labels removed and whitespace collapsed."""
    return " ".join(_REPORT_LABELS.sub(" ", text).split())


def judge_report(reference: str, response: str, mode: str = "fixed") -> Verdict:
    """Report generation: BLEU-1..4 and ROUGE-1/2/L after removing Findings:/Impression: labels; never 'correct'.

    The prediction is truncated to 2048 characters for ROUGE as upstream does.
    """
    _check_mode(mode)
    text = response if mode == "upstream" else answer_text(response)
    prediction = report_text(text)
    gold = report_text(reference)
    if not prediction:
        return Verdict(None, False, _zero_overlap())
    hyp, ref = upstream_tokens(prediction), upstream_tokens(gold)
    metrics = {f"bleu{n}": bleu(ref, hyp, n) for n in (1, 2, 3, 4)}
    rouge = overlap_metrics(prediction[:2048], gold)
    metrics.update({k: rouge[k] for k in ("rouge1", "rouge2", "rougel")})
    # upstream's cal_report_metrics: the BLEU tokens without empty strings
    metrics["meteor"] = meteor([t for t in ref if t], [t for t in hyp if t])
    return Verdict(prediction, False, metrics)


# ------------------------------------------------------------------------------------------ MMMU multiple choice
def _mmmu_parse(choices: list[str], response: str) -> str | None:
    """MMMU's ``parse_multi_choice_response`` up to its random fallback: an upper-case letter or None."""
    letters = [chr(ord("A") + i) for i in range(len(choices))]
    for char in (",", ".", "!", "?", ";", ":", "'"):
        response = response.strip(char)
    response = " " + response + " "
    candidates, bracketed, by_index = [], False, True
    for letter in letters:
        if f"({letter})" in response:
            candidates.append(letter)
            bracketed = True
    if not candidates:
        candidates = [letter for letter in letters if f" {letter} " in response]
    if not candidates and len(response.split()) > 5:
        candidates = [letter for letter, text in zip(letters, choices) if text.lower() in response.lower()]
        by_index = False
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if by_index:
        starts = [response.rfind(f"({c})" if bracketed else f" {c} ") for c in candidates]
    else:
        starts = [response.lower().rfind(choices[ord(c) - ord("A")].lower()) for c in candidates]
    return candidates[starts.index(max(starts))]


def judge_mmmu_multi_choice(choices: list[str], answer: str, response: str, mode: str = "fixed") -> Verdict:
    """MMMU multiple choice (MMMU's own parser). Upstream falls back to a random letter when nothing parses."""
    _check_mode(mode)
    text = response if mode == "upstream" else answer_text(response)
    parsed = _mmmu_parse(choices, text)
    gold = answer.strip().upper()
    if parsed is None:
        if mode == "upstream":  # random.choice(all_choices), seeded by the response for reproducibility
            guess = random.Random(text).choice([chr(ord("A") + i) for i in range(len(choices))])
            return Verdict(None, guess == gold)
        return Verdict(None, False)
    return Verdict(parsed.lower(), parsed == gold)


# ---------------------------------------------------------------------------------------- MMMU open questions
# MMMU's open-answer evaluation (its ``parse_open_response`` / ``eval_open``), written from the algorithm:
# split the response into sentences, keep the shortest text after a key phrase in each, add every number found,
# normalise (numbers -> float rounded to 2 places, text -> lowercase) and call it correct when a normalised
# reference number equals a predicted number, or a normalised reference string occurs inside a predicted string.
_MMMU_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_MMMU_SENTENCES = re.compile(r"\.\s(?=[A-Z])|\n")
_NUMBER_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUMBER_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUMBER_PLAIN = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+)(?![eE][+-]?\d+)(?![,\d])")
_PUNCTUATION = (":", ",", ".", "!", "?", ";", "'")


def mmmu_is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def mmmu_normalize(text: str) -> list[str | float]:
    """A number -> [its value rounded to 2 places]; text -> [lowercase] (one letter -> [" x", "x "], as MMMU)."""
    text = text.strip()
    if mmmu_is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def mmmu_numbers(text: str) -> list[str]:
    """Every number written in ``text``: with thousands commas, in scientific notation, or plain."""
    return _NUMBER_COMMAS.findall(text) + _NUMBER_SCIENTIFIC.findall(text) + _NUMBER_PLAIN.findall(text)


def mmmu_key_responses(response: str) -> list[str]:
    """Per sentence the shortest text after a key phrase ('is', 'therefore', ...; '=' too in the last sentence);
    the whole response when no sentence has one."""
    response = response.strip().strip(".").lower()
    sentences = _MMMU_SENTENCES.split(response)
    keys = []
    for index, sentence in enumerate(sentences):
        indicators = _MMMU_INDICATORS + (("=",) if index == len(sentences) - 1 else ())
        shortest = None
        for indicator in indicators:
            if indicator in sentence:
                candidate = sentence.split(indicator)[-1].strip()
                if shortest is None or len(candidate) < len(shortest):
                    shortest = candidate
        if shortest and shortest not in _PUNCTUATION:
            keys.append(shortest)
    return keys or [response]


def mmmu_parse_open(response: str) -> list[str | float]:
    """MMMU's open-response predictions: key sub-responses and the numbers in them, normalised, deduplicated."""
    keys = mmmu_key_responses(response)
    found: list[str] = list(keys)
    for key in keys:
        found.extend(mmmu_numbers(key))
    out: list[str | float] = []
    for item in found:
        for value in mmmu_normalize(item):
            if value not in out:
                out.append(value)
    return out


def _mmmu_references(answer: str) -> list[str]:
    """The reference(s): MMMU stores several acceptable answers as a list literal, e.g. "['1.5', '3/2']"."""
    text = answer.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            import ast

            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, list) and value:
            return [str(v) for v in value]
    return [text]


def mmmu_eval_open(answer: str, predictions: list[str | float]) -> bool:
    """MMMU's ``eval_open``: a predicted string containing a normalised reference string, or equal numbers."""
    references = [n for ref in _mmmu_references(answer) for n in mmmu_normalize(ref)]
    for prediction in predictions:
        if isinstance(prediction, str):
            if any(isinstance(ref, str) and ref in prediction for ref in references):
                return True
        elif prediction in references:
            return True
    return False


def judge_mmmu_open(answer: str, response: str, mode: str = "fixed") -> Verdict:
    """MMMU open question: MMMU's open parsing and matching; ``parsed`` is the first key sub-response."""
    _check_mode(mode)
    text = response if mode == "upstream" else answer_text(response)
    if not text.strip():
        return Verdict(None, False)
    predictions = mmmu_parse_open(text)
    return Verdict(mmmu_key_responses(text)[0], mmmu_eval_open(answer, predictions))

"""Text-overlap metrics for open VQA and report generation: BLEU, ROUGE-1/2/L, set-of-words F1, exact match.

The one place that computes text metrics. BLEU and ROUGE come from the libraries upstream MedUniEval uses
(``pip install 'hulumed[eval]'``), so the numbers are theirs:

* BLEU: ``nltk.translate.bleu_score.sentence_bleu`` with one reference, cumulative uniform weights 1/n, no
  smoothing (nltk's default: a zero higher-order precision gives a score of ~1e-154, effectively 0) or
  ``SmoothingFunction().method1`` (M3D / 3D-RAD); tokens from :func:`upstream_tokens`.
* ROUGE-1/2/L F: the ``rouge`` package (pltrdy, PyPI ``rouge``), ``Rouge().get_scores(hypothesis, reference)``.
  It splits sentences on "." (ROUGE-L is summary-level LCS), counts *distinct* n-grams, and adds 1e-8 to the
  F denominator (an exact match scores 0.99999999…). It raises ``ValueError`` on an empty hypothesis or
  reference (also one of only dots/whitespace); that pair scores 0 for all three, as an empty answer should.

METEOR (nltk's ``meteor_score``) needs the WordNet corpus, a separate download, and is not computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

ROUGE_KEYS = {"rouge1": "rouge-1", "rouge2": "rouge-2", "rougel": "rouge-l"}


def _missing(package: str, error: ImportError) -> ImportError:
    return ImportError(f"text metrics need {package}: pip install 'hulumed[eval]' ({error})")


def upstream_tokens(text: str) -> list[str]:
    """MedUniEval's BLEU tokenisation: lowercase, "." becomes " .", split on single spaces."""
    return text.lower().replace(".", " .").split(" ")


def bleu(reference: Sequence[str], hypothesis: Sequence[str], n: int = 4, smoothing: str | None = None) -> float:
    """Cumulative BLEU-n of one hypothesis against one reference: nltk ``sentence_bleu``, weights 1/n.

    ``smoothing=None`` is nltk's default; ``"method1"`` is ``SmoothingFunction().method1`` (epsilon 0.1).
    """
    if smoothing not in (None, "method1"):
        raise ValueError(f"smoothing must be None or 'method1', not {smoothing!r}")
    try:
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    except ImportError as error:
        raise _missing("nltk", error) from error
    function = SmoothingFunction().method1 if smoothing == "method1" else None
    with warnings.catch_warnings():  # nltk warns on every zero n-gram overlap
        warnings.simplefilter("ignore")
        return float(sentence_bleu([list(reference)], list(hypothesis), weights=[1 / n] * n,
                                   smoothing_function=function))


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F-measures from the ``rouge`` package: ``{"rouge1", "rouge2", "rougel"}``; 0 when either is empty."""
    try:
        from rouge import Rouge
    except ImportError as error:
        raise _missing("rouge", error) from error
    try:
        scores = Rouge().get_scores(prediction, reference)[0]
    except ValueError:  # "Hypothesis is empty." / "Reference is empty."
        return dict.fromkeys(ROUGE_KEYS, 0.0)
    return {ours: float(scores[theirs]["f"]) for ours, theirs in ROUGE_KEYS.items()}


def word_f1(prediction: str, ground_truth: str) -> tuple[float, float, float]:
    """(precision, recall, f1) over the *sets* of lowercase whitespace tokens; all 0 if either side is empty."""
    pred, gold = set(prediction.lower().split()), set(ground_truth.lower().split())
    common = pred & gold
    if not pred or not gold or not common:
        return 0.0, 0.0, 0.0
    precision, recall = len(common) / len(pred), len(common) / len(gold)
    return precision, recall, 2 * precision * recall / (precision + recall)


def overlap_metrics(prediction: str, reference: str, *, smoothing: str | None = None) -> dict[str, float]:
    """BLEU-1..4 (upstream tokenisation) and ROUGE-1/2/L (``rouge`` package, lowercased text) of one pair."""
    hyp, ref = upstream_tokens(prediction), upstream_tokens(reference)
    scores = {f"bleu{n}": bleu(ref, hyp, n, smoothing) for n in (1, 2, 3, 4)}
    scores.update(rouge(prediction.lower(), reference.lower()))
    return scores

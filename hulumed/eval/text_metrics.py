"""Text-overlap metrics for open VQA and report generation: BLEU, ROUGE-N/L, set-of-words F1, exact match.

Pure Python so that scoring needs no downloads: ``bleu`` equals ``nltk.translate.bleu_score.sentence_bleu`` with
one reference (no smoothing, or ``SmoothingFunction().method1``; a unit test checks it against nltk where nltk is
installed); ``rouge_n`` / ``rouge_l`` are the standard F-measures on whitespace tokens (upstream uses the ``rouge``
package, which splits sentences for ROUGE-L — identical on single-sentence answers). METEOR needs WordNet data and
is not computed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def upstream_tokens(text: str) -> list[str]:
    """MedUniEval's BLEU tokenisation: lowercase, "." becomes " .", split on single spaces."""
    return text.lower().replace(".", " .").split(" ")


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(reference: Sequence[str], hypothesis: Sequence[str], n: int = 4, smoothing: str | None = None) -> float:
    """Cumulative BLEU-n of one hypothesis against one reference (uniform weights 1/n).

    ``smoothing=None`` is nltk's default (a zero n-gram precision makes the score 0); ``"method1"`` adds
    epsilon 0.1 to zero numerators (nltk ``SmoothingFunction().method1``).
    """
    if smoothing not in (None, "method1"):
        raise ValueError(f"smoothing must be None or 'method1', not {smoothing!r}")
    hyp_len, ref_len = len(hypothesis), len(reference)
    numerators, denominators = [], []
    for order in range(1, n + 1):
        hyp, ref = _ngrams(hypothesis, order), _ngrams(reference, order)
        numerators.append(sum(min(count, ref[gram]) for gram, count in hyp.items()))
        denominators.append(max(1, sum(hyp.values())))
    if numerators[0] == 0:
        return 0.0
    if smoothing is None and any(num == 0 for num in numerators):
        return 0.0
    precisions = [(num if num else 0.1) / den for num, den in zip(numerators, denominators)]
    brevity = 1.0 if hyp_len > ref_len else (math.exp(1 - ref_len / hyp_len) if hyp_len else 0.0)
    return brevity * math.exp(sum(math.log(p) / n for p in precisions))


def _f_measure(overlap: int, hyp_count: int, ref_count: int) -> float:
    if overlap == 0 or hyp_count == 0 or ref_count == 0:
        return 0.0
    precision, recall = overlap / hyp_count, overlap / ref_count
    return 2 * precision * recall / (precision + recall)


def rouge_n(reference: Sequence[str], hypothesis: Sequence[str], n: int) -> float:
    """ROUGE-n F-measure (clipped n-gram overlap)."""
    hyp, ref = _ngrams(hypothesis, n), _ngrams(reference, n)
    overlap = sum((hyp & ref).values())
    return _f_measure(overlap, sum(hyp.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len a · len b) time, O(len b) memory)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """ROUGE-L F-measure (beta 1) from the longest common subsequence."""
    return _f_measure(lcs_length(reference, hypothesis), len(hypothesis), len(reference))


def word_f1(prediction: str, ground_truth: str) -> tuple[float, float, float]:
    """(precision, recall, f1) over the *sets* of lowercase whitespace tokens; all 0 if either side is empty."""
    pred, gold = set(prediction.lower().split()), set(ground_truth.lower().split())
    common = pred & gold
    if not pred or not gold or not common:
        return 0.0, 0.0, 0.0
    precision, recall = len(common) / len(pred), len(common) / len(gold)
    return precision, recall, 2 * precision * recall / (precision + recall)


def overlap_metrics(prediction: str, reference: str, *, smoothing: str | None = None) -> dict[str, float]:
    """BLEU-1..4 (upstream tokenisation) and ROUGE-1/2/L (lowercase whitespace tokens) of one pair."""
    hyp, ref = upstream_tokens(prediction), upstream_tokens(reference)
    scores = {f"bleu{n}": bleu(ref, hyp, n, smoothing) for n in (1, 2, 3, 4)}
    hyp_words, ref_words = prediction.lower().split(), reference.lower().split()
    scores.update(
        rouge1=rouge_n(ref_words, hyp_words, 1), rouge2=rouge_n(ref_words, hyp_words, 2),
        rougel=rouge_l(ref_words, hyp_words),
    )
    return scores

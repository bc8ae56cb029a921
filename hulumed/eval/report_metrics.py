"""Optional corpus-level report metrics: CIDEr, BERTScore, RaTEScore (``hulumed eval --report-metrics``).

MedEvalKit and upstream's ``cal_report_metrics.py`` add these to BLEU / ROUGE / METEOR for report generation.
Each needs a library (``pip install 'hulumed[report-metrics]'``) and, for the model-based ones, a model the user
downloads; none is computed unless asked, and asking without what it needs is an error naming the fix, checked
before any generation — never a silent zero.

* ``cider``: CIDEr-D of pycocoevalcap (the COCO caption evaluation code), over the whole benchmark, on the
  lowercased prediction and reference (Findings: / Impression: labels removed, as for BLEU).
* ``bertscore``: ``bert_score.BERTScorer`` F1 (mean), with the model given by ``--bertscore-model`` (MedEvalKit:
  ``lang="en"``, i.e. ``roberta-large`` layer 17, ``rescale_with_baseline=True``; ``hf download
  FacebookAI/roberta-large --local-dir models/roberta-large``). Rescaling uses bert_score's bundled baseline for
  roberta-large when the model folder is named so, else raw F1 (``bertscore_rescaled`` says which).
* ``ratescore``: the ``RaTEScore`` package with its two models (``--ratescore-models NER,EVAL``; upstream:
  ``Angelakeke/RaTE-NER-Deberta`` and ``FremyCompany/BioLORD-2023-C``, ``hf download`` both).
* GREEN is not offered: its package (``green_score``) is not on PyPI and it needs its own 7B judge model.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPORT_METRICS = ("cider", "bertscore", "ratescore")
_PACKAGES = {"cider": "pycocoevalcap", "bertscore": "bert_score", "ratescore": "RaTEScore"}
_BERTSCORE_LAYERS = {"roberta-large": 17}  # bert_score's default layer for its lang="en" model


@dataclass(frozen=True)
class ReportMetricOptions:
    names: tuple[str, ...] = ()
    bertscore_model: str | None = None  # a folder (or hub id) of a BERT-style model
    bertscore_layers: int | None = None  # None: 17 for roberta-large, else the model's last layer
    ratescore_models: tuple[str, str] | None = None  # (NER model, embedding model)

    def check(self) -> None:
        """Every requested metric has its library and models, or a ``ValueError`` saying what to install."""
        for name in self.names:
            if name == "green":
                raise ValueError("GREEN is not available: its package (green_score) is not on PyPI and it needs "
                                 "its own 7B model; use cider, bertscore or ratescore")
            if name not in REPORT_METRICS:
                raise ValueError(f"unknown report metric {name!r}; choose from {', '.join(REPORT_METRICS)}")
            if importlib.util.find_spec(_PACKAGES[name]) is None:
                raise ValueError(f"--report-metrics {name} needs the {_PACKAGES[name]} package: "
                                 "pip install 'hulumed[report-metrics]'")
        if "bertscore" in self.names and not self.bertscore_model:
            raise ValueError("--report-metrics bertscore needs --bertscore-model (MedEvalKit uses roberta-large: "
                             "hf download FacebookAI/roberta-large --local-dir models/roberta-large)")
        if "ratescore" in self.names and not self.ratescore_models:
            raise ValueError("--report-metrics ratescore needs --ratescore-models NER,EVAL (hf download "
                             "Angelakeke/RaTE-NER-Deberta and FremyCompany/BioLORD-2023-C)")


def corpus_metrics(predictions: list[str], references: list[str], options: ReportMetricOptions) -> dict[str, Any]:
    """The requested metrics over all (prediction, reference) pairs of a benchmark."""
    options.check()
    out: dict[str, Any] = {}
    if not predictions:
        return out
    if "cider" in options.names:
        from pycocoevalcap.cider.cider import Cider

        ids = [str(i) for i in range(len(predictions))]
        score, _ = Cider().compute_score({i: [r.lower()] for i, r in zip(ids, references)},
                                         {i: [p.lower()] for i, p in zip(ids, predictions)})
        out["cider"] = float(score)
    if "bertscore" in options.names:
        out.update(_bertscore(predictions, references, options))
    if "ratescore" in options.names:
        from RaTEScore import RaTEScore

        ner, embed = options.ratescore_models  # type: ignore[misc]
        scores = RaTEScore(bert_model=ner, eval_model=embed).compute_score(predictions, references)
        out["ratescore"] = float(sum(scores) / len(scores))
    return out


def _bertscore(predictions: list[str], references: list[str], options: ReportMetricOptions) -> dict[str, Any]:
    from bert_score import BERTScorer

    model = str(options.bertscore_model)
    name = Path(model).name
    layers = options.bertscore_layers or _BERTSCORE_LAYERS.get(name)
    if layers is None:
        from transformers import AutoConfig

        layers = int(AutoConfig.from_pretrained(model).num_hidden_layers)
    rescale = name in _BERTSCORE_LAYERS  # bert_score ships baselines for its own model names only
    kwargs: dict[str, Any] = {"model_type": model, "num_layers": layers}
    if rescale:
        import bert_score

        baseline = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / f"{name}.tsv"
        kwargs.update(lang="en", rescale_with_baseline=True, baseline_path=str(baseline))
    precision, recall, f1 = BERTScorer(**kwargs).score(predictions, references)
    return {"bertscore_p": float(precision.mean()), "bertscore_r": float(recall.mean()),
            "bertscore_f1": float(f1.mean()), "bertscore_rescaled": float(rescale)}

"""The paper's published Hulu-Med numbers, shown beside a run's in ``O/summary.md`` and ``O/summary.png``.

Source: the "Performance Highlights" tables of upstream's README (github.com/ZJUI-AI4H/Hulu-Med, README.md at
commit 12c47be52dcad66e06cc4a8cd1b4ff7a2bcf50e6: "Medical Multimodal Benchmarks" and "Medical Text Benchmarks"),
accuracy in percent. Column names there -> ours: OM.VQA = OmniMedVQA, PMC-VQA = PMC_VQA, VQA-RAD = VQA_RAD,
PathVQA = PATH_VQA, MedXQA = MedXpertQA-MM (multimodal table) and MedXpertQA-Text (text table), MMMU-Med =
MMMU-Medical-val, SGPQA = SuperGPQA, MMLU-Med = MMLU-medical, MedQA = MedQA_USMLE. The README gives one
"Medbullets" number (which of op4 / op5 it is is not said); it is shown for both.
"""

from __future__ import annotations

SOURCE = "Hulu-Med README (ZJUI-AI4H/Hulu-Med @ 12c47be5), Performance Highlights tables"
SIZES = ("7B", "14B", "32B")

#: benchmark -> (7B, 14B, 32B) accuracy in percent.
PUBLISHED: dict[str, tuple[float, float, float]] = {
    "OmniMedVQA": (84.2, 85.1, 84.6),
    "PMC_VQA": (66.8, 68.9, 69.4),
    "VQA_RAD": (78.0, 76.1, 81.4),
    "SLAKE": (86.8, 86.5, 85.7),
    "PATH_VQA": (65.6, 64.4, 67.3),
    "MedXpertQA-MM": (29.0, 30.0, 34.0),
    "MMMU-Medical-val": (51.4, 54.8, 60.4),
    "MMLU_Pro": (60.6, 68.0, 72.9),
    "MedXpertQA-Text": (19.6, 23.2, 24.2),
    "Medbullets_op4": (61.5, 68.5, 68.8),
    "Medbullets_op5": (61.5, 68.5, 68.8),
    "SuperGPQA": (31.1, 37.7, 41.8),
    "PubMedQA": (77.4, 79.8, 80.8),
    "MedMCQA": (67.6, 70.4, 72.8),
    "MedQA_USMLE": (73.5, 78.1, 80.4),
    "MMLU-medical": (79.5, 83.3, 85.6),
}


def published(benchmark: str) -> dict[str, float] | None:
    """``{"7B": …, "14B": …, "32B": …}`` for a benchmark the README reports, else None."""
    values = PUBLISHED.get(benchmark)
    return None if values is None else dict(zip(SIZES, values))

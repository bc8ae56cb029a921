"""Every sampled benchmark read from the real-release samples in tests/fixtures/evaldata (laid out as `hf download`
leaves them): every row parsed, every reference equal to the raw file's, and every prompt equal to the one
MedUniEval builds. The expected prompts are written here from MedUniEval's rules (``question_formats.py`` and each
dataset's ``construct_messages``), reading the raw files directly, never from the loaders' output.
Then one test per finding of issue 13 (file discovery, layouts, zips, aliases, letters, M3D-VQA CSV).
"""

from __future__ import annotations

import ast
import csv
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from hulumed.eval.benchmarks import BENCHMARKS, get_benchmark
from hulumed.eval.data_files import DataError
from hulumed.eval.runner import check_media, score
from hulumed.eval.samples import letter_of
from hulumed.eval.scoring import FIXES

pq = pytest.importorskip("pyarrow.parquet")

EVALDATA = Path(__file__).resolve().parents[1] / "fixtures" / "evaldata"
MC = "Answer with the option's letter from the given choices directly."
CLOSED = "Answer the question using a single word or phrase."
OPEN = "Please answer the question concisely."
REPORT = ("You are a helpful assistant. Please generate a report for the given images, including both findings and "
          "impressions. Return the report in the following format: Findings: {} Impression: {}.")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HULUMED_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------ MedUniEval's rules, written independently
def mc_prompt(question: str, options: list[str]) -> str:
    """question_formats.get_multiple_choice_prompt (en, no reasoning)."""
    return f"\nQuestion: {question}\nOptions: \n" + "\n".join(options) + "\n" + MC


def parquet(path: str) -> list[dict[str, Any]]:
    return pq.read_table(EVALDATA / path).to_pylist()


def jsonl(path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (EVALDATA / path).read_text().splitlines() if line.strip()]


def jsonfile(path: str) -> Any:
    return json.loads((EVALDATA / path).read_text())


def expected_medqa() -> list[tuple[str, str]]:
    return [(mc_prompt(r["question"], [f"{k}. {r['options'][k]}" for k in "ABCD"]), r["answer_idx"])
            for r in jsonl("MedQA_USMLE/phrases_no_exclude_test.jsonl")]


def expected_medmcqa() -> list[tuple[str, str]]:
    rows = parquet("MedMCQA/data/validation-00000-of-00001.parquet")
    return [(mc_prompt(r["question"], [f"A. {r['opa']}", f"B. {r['opb']}", f"C. {r['opc']}", f"D. {r['opd']}"]),
             "ABCD"[r["cop"]]) for r in rows]


def expected_pubmedqa() -> list[tuple[str, str]]:
    out = []
    for r in parquet("PubMedQA/data/test-00000-of-00001.parquet"):
        d = r["data"]
        choices = [f"A.{d['Options']['A']}", f"B.{d['Options']['B']}", f"C.{d['Options']['C']}"]
        out.append((f"Context: {chr(10).join(d['Context'])}\n" + mc_prompt(d["Question"], choices),
                    d["Correct Option"]))
    return out


def expected_mmlu_medical() -> list[tuple[str, str]]:
    # upstream's MMLU loader is broken (see docs/eval.md); ours is the MedQA-style template, one "A. …" per choice
    out = []
    for subject in ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                    "professional_medicine"):
        for r in parquet(f"MMLU-medical/{subject}/test-00000-of-00001.parquet"):
            out.append((mc_prompt(r["question"], [f"{'ABCD'[i]}. {c}" for i, c in enumerate(r["choices"])]),
                        "ABCD"[r["answer"]]))
    return out


def expected_cmmlu() -> list[tuple[str, str]]:
    """MedUniEval's CMMLU: get_multiple_choice_prompt(question, ["A.x", ...], lang="zh"), written out here."""
    import csv

    out = []
    for subject in ("anatomy", "virology"):
        with (EVALDATA / "CMMLU" / "test" / f"{subject}.csv").open(encoding="utf-8", newline="") as handle:
            for r in csv.DictReader(handle):
                options = "\n".join(f"{letter}.{r[letter]}" for letter in "ABCD")
                prompt = f"\n问题： {r['Question']}\n选项： \n{options}\n请直接使用给定选项中的选项字母来回答该问题。"
                out.append((prompt, r["Answer"]))
    return out


def expected_mmlu_pro(mode: str) -> list[tuple[str, str]]:
    rows = jsonfile("MMLU_Pro/mmlu_pro_test.json")
    letters = []  # datasets 3.6.0: one struct column holding every letter of the file, missing ones None
    for r in rows:
        letters += [k for k in r["choices"] if k not in letters]
    out = []
    for r in rows:
        choices = {k: r["choices"].get(k) for k in letters} if mode == "upstream" else r["choices"]
        text = "\n".join(f"{k}. {v}" for k, v in choices.items())
        out.append((f"{r['problem']}\n{text}\n{MC}", r["answer"]))
    return out


def expected_medbullets_op4() -> list[tuple[str, str]]:
    return [(mc_prompt(r["question"], [f"{k}.{v}" for k, v in r["options"].items()]), r["answer_idx"])
            for r in parquet("Medbullets_op4/data/train-00000-of-00001.parquet")]


def expected_medbullets_op5() -> list[tuple[str, str]]:
    out = []
    for r in parquet("Medbullets_op5/data/train-00000-of-00001.parquet"):
        options = [r["opa"], r["opb"], r["opc"], r["opd"], r["ope"]]
        out.append((mc_prompt(r["question"], [f"{chr(65 + i)}.{o}" for i, o in enumerate(options)]),
                    r["answer_idx"]))
    return out


def expected_supergpqa() -> list[tuple[str, str]]:
    return [(mc_prompt(r["question"], [f"{chr(65 + i)}.{o}" for i, o in enumerate(r["options"])]),
             r["answer_letter"]) for r in jsonl("SuperGPQA/SuperGPQA-all.jsonl") if r["discipline"] == "Medicine"]


def expected_medxpertqa(subset: str) -> list[tuple[str, str]]:
    out = []
    for r in jsonl(f"MedXpertQA/{subset}/test.jsonl"):
        question = r["question"].split("Answer Choices:")[0].strip()
        out.append((mc_prompt(question, [f"{k}. {v}" for k, v in r["options"].items()]), r["label"]))
    return out


def expected_vqa(path: str) -> list[tuple[str, str]]:
    out = []
    for r in parquet(path):
        closed = r["answer"].lower() in ("yes", "no")
        out.append((r["question"] + "\n" + (CLOSED if closed else OPEN), r["answer"]))
    return out


def expected_slake() -> list[tuple[str, str]]:
    return [(r["question"] + "\n" + (OPEN if r["answer_type"] == "OPEN" else CLOSED), r["answer"])
            for r in jsonfile("SLAKE/test.json") if r["q_lang"] != "zh"]


def expected_pmc_vqa() -> list[tuple[str, str]]:
    with (EVALDATA / "PMC_VQA/test_2.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))[1:]
    return [(mc_prompt(question, [a, b, c, d]), answer) for _, _, _, question, a, b, c, d, answer, _ in rows]


def expected_omnimedvqa() -> list[tuple[str, str]]:
    out = []
    for r in jsonfile("OmniMedVQA/QA_information/Open-access/ACRIMA.json"):
        answer, choices = r["gt_answer"], []
        for option in "ABCD":
            if f"option_{option}" in r:
                if r["gt_answer"] == r[f"option_{option}"]:
                    answer = option
                choices.append(f"{option}. {r[f'option_{option}']}")
        out.append((mc_prompt(r["question"], choices), answer))
    return out


def expected_mmmu() -> list[tuple[str, str]]:
    out = []
    for subject in ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine", "Pharmacy",
                    "Public_Health"):
        for r in parquet(f"MMMU-Medical-val/{subject}/validation-00000-of-00001.parquet"):
            if r["question_type"] == "multiple-choice":
                options = ast.literal_eval(r["options"])
                prompt = mc_prompt(r["question"], [f"{chr(65 + i)}. {o}" for i, o in enumerate(options)])
            else:
                prompt = f"{r['question']}\n{CLOSED}"
            out.append((prompt, r["answer"]))
    return out


def expected_medframeqa() -> list[tuple[str, str]]:
    return [(mc_prompt(r["question"], [f"{chr(65 + i)}.{o}" for i, o in enumerate(r["options"])]), r["correct_answer"])
            for r in parquet("MedFrameQA/data/test-00000-of-00001.parquet")]


def expected_m3d() -> list[tuple[str, str]]:
    out = []
    for r in jsonfile("M3D/M3D_test.json"):
        question = r["conversations"][0]["value"].replace("<image>\n", "").replace("<video>\n", "").strip()
        closed = r["Question_Type"].upper() in ("CLOSE", "CLOSED")
        out.append((question + "\n" + (MC if closed else OPEN), r["conversations"][1]["value"]))
    return out


def expected_iu_xray() -> list[tuple[str, str]]:
    # MedEvalKit's IU_XRAY: rows with neither findings nor impression skipped; golden report as below
    return [(REPORT, f"Findings: {r['findings']} Impression: {r['impression']}.") for r in jsonfile("IU_XRAY/test.json")
            if r["findings"].strip() or r["impression"].strip()]


EXPECTED = {
    "MedQA_USMLE": expected_medqa, "MedMCQA": expected_medmcqa, "PubMedQA": expected_pubmedqa,
    "MMLU-medical": expected_mmlu_medical, "MMLU_Pro": lambda: expected_mmlu_pro("upstream"),
    "Medbullets_op4": expected_medbullets_op4, "Medbullets_op5": expected_medbullets_op5,
    "SuperGPQA": expected_supergpqa, "MedXpertQA-Text": lambda: expected_medxpertqa("Text"),
    "MedXpertQA-MM": lambda: expected_medxpertqa("MM"),
    "VQA_RAD": lambda: expected_vqa("VQA_RAD/data/test-00000-of-00001-e5bc3d208bb4deeb.parquet"),
    "PATH_VQA": lambda: expected_vqa("PATH_VQA/data/test-00000-of-00001.parquet"), "SLAKE": expected_slake,
    "PMC_VQA": expected_pmc_vqa, "OmniMedVQA": expected_omnimedvqa, "MMMU-Medical-val": expected_mmmu,
    "MedFrameQA": expected_medframeqa, "M3D": expected_m3d, "IU_XRAY": expected_iu_xray, "CMMLU": expected_cmmlu,
}
#: the benchmarks with no public sample (MedUniEval's own derived files, credentialed releases, or none found here;
#: fixtures/evaldata/README.md says which)
NOT_SAMPLED = {"3DRad", "Amos", "MIMIC_CXR", "CheXpert_Plus", "CMB", "CMExam", "MedQA_MCMLE", "HealthBench",
               "Medmnist", "MMMU-Medical-test", "MMLU-all"}


def test_every_benchmark_is_sampled_or_named_as_not() -> None:
    assert set(EXPECTED) | NOT_SAMPLED == {b.name for b in BENCHMARKS}
    assert len(EXPECTED) == 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_release_sample_reads_with_meduni_eval_prompts(name: str) -> None:
    benchmark = get_benchmark(name)
    samples = benchmark.load(EVALDATA, "upstream")
    expected = EXPECTED[name]()
    assert len(samples) == len(expected) > 0  # every row parsed (minus upstream's own filters)
    for sample, (prompt, answer) in zip(samples, expected):
        assert sample.prompt == prompt, sample.id
        assert sample.answer == answer, sample.id
    check_media(benchmark, samples)  # every image / slice folder named exists


def test_images_are_the_release_files() -> None:
    rows = parquet("VQA_RAD/data/test-00000-of-00001-e5bc3d208bb4deeb.parquet")
    samples = get_benchmark("VQA_RAD").load(EVALDATA)
    assert [s.images[0] for s in samples] == [r["image"]["bytes"] for r in rows]
    frames = get_benchmark("MedFrameQA").load(EVALDATA)
    raw = parquet("MedFrameQA/data/test-00000-of-00001.parquet")
    assert [len(s.images) for s in frames] == [sum(r[f"image_{k}"] is not None for k in range(1, 6)) for r in raw]
    mm = get_benchmark("MedXpertQA-MM").load(EVALDATA)
    assert [len(s.images) for s in mm] == [len(r["images"]) for r in jsonl("MedXpertQA/MM/test.jsonl")]
    assert all(Path(p).is_file() for s in mm for p in s.images)


# ------------------------------------------------------------------------------- one test per finding
def _copy(name: str, tmp_path: Path, to: str | None = None) -> Path:
    data = tmp_path / "data"
    shutil.copytree(EVALDATA / name, data / (to or name))
    return data


def test_medqa_reads_the_hub_test_file_and_not_the_train_file(tmp_path: Path) -> None:
    samples = get_benchmark("MedQA_USMLE").load(EVALDATA)
    assert len(samples) == 30  # phrases_no_exclude_train.jsonl (5 rows) beside it is not read
    data = _copy("MedQA_USMLE", tmp_path)
    (data / "MedQA_USMLE" / "phrases_no_exclude_test.jsonl").unlink()
    with pytest.raises(DataError, match="phrases_no_exclude_test.jsonl"):
        get_benchmark("MedQA_USMLE").load(data)  # the train file alone is never taken for the test split


def test_iu_xray_medevalkit_layout_images_under_images(tmp_path: Path) -> None:
    samples = get_benchmark("IU_XRAY").load(EVALDATA)
    rows = jsonfile("IU_XRAY/test.json")
    assert [len(s.images) for s in samples] == [len(r["image"]) for r in rows]
    assert all(Path(p).parent == EVALDATA / "IU_XRAY" / "images" for s in samples for p in s.images)
    data = _copy("IU_XRAY", tmp_path)
    (data / "IU_XRAY" / "images" / rows[3]["image"][0]).unlink()
    benchmark = get_benchmark("IU_XRAY")
    with pytest.raises(DataError, match=r"1 media file\(s\) .* missing") as error:
        check_media(benchmark, benchmark.load(data))  # before any generation, one clear line
    assert "\n" not in str(error.value)


def test_mimic_and_chexpert_read_the_medevalkit_layout(tmp_path: Path) -> None:
    rows = jsonfile("IU_XRAY/test.json")
    rows[0] = {**rows[0], "findings": " ", "impression": ""}  # MedEvalKit skips an empty report
    data = tmp_path / "data"
    for name, image in (("MIMIC_CXR", lambda r: r["image"]), ("CHEXPERT-PLUS", lambda r: r["image"][0])):
        shutil.copytree(EVALDATA / "IU_XRAY" / "images", data / name / "images")
        (data / name / "test.json").write_text(json.dumps([{**r, "image": image(r)} for r in rows]))
    mimic = get_benchmark("MIMIC_CXR").load(data)
    chexpert = get_benchmark("CheXpert_Plus").load(data)
    assert len(mimic) == len(chexpert) == len(rows) - 1
    assert [len(s.images) for s in mimic] == [len(r["image"]) for r in rows[1:]]
    assert all(len(s.images) == 1 for s in chexpert)
    assert mimic[0].answer == f"Findings: {rows[1]['findings']} Impression: {rows[1]['impression']}."
    assert all(s.prompt == REPORT for s in mimic + chexpert)


def test_medframeqa_prompt_and_other_modality() -> None:
    samples = get_benchmark("MedFrameQA").load(EVALDATA)
    assert samples[0].prompt.startswith("\nQuestion: ") and "\nOptions: \nA.Pneumothorax\nB." in samples[0].prompt
    raw = [r["modality"] for r in parquet("MedFrameQA/data/test-00000-of-00001.parquet")]
    assert raw == ["CT", "MRI", "PET"]
    assert [s.groups["modality"] for s in samples] == ["CT", "MRI", "Other"]


@pytest.mark.parametrize("name", ["PubMedQA", "Medbullets_op4", "Medbullets_op5", "SuperGPQA"])
def test_options_written_letter_dot_text(name: str) -> None:
    for sample in get_benchmark(name).load(EVALDATA):
        options = sample.prompt.split("\nOptions: \n")[1].split("\n" + MC)[0].split("\n")
        assert [o[:2] for o in options] == [f"{chr(65 + i)}." for i in range(len(options))]
        assert all(o[2] != " " for o in options), options


def test_mmlu_pro_padding_in_upstream_mode_only() -> None:
    benchmark = get_benchmark("MMLU_Pro")
    upstream, fixed = benchmark.load(EVALDATA, "upstream"), benchmark.load(EVALDATA, "fixed")
    short = [k for k, r in enumerate(jsonfile("MMLU_Pro/mmlu_pro_test.json")) if len(r["choices"]) < 10]
    assert len(short) == 8
    for k in short:
        assert upstream[k].prompt.endswith(f"J. None\n{MC}")
        assert "None" not in fixed[k].prompt
        assert len(upstream[k].choices) == 10 and len(fixed[k].choices) < 10
    assert [s.prompt for s in upstream] == [p for p, _ in expected_mmlu_pro("upstream")]
    assert [s.prompt for s in fixed] == [p for p, _ in expected_mmlu_pro("fixed")]
    assert any("MMLU-Pro" in fix and "None" in fix for fix in FIXES)


def test_folder_aliases_case_insensitive(tmp_path: Path) -> None:
    data = _copy("VQA_RAD", tmp_path, "vqa-rad")
    assert len(get_benchmark("vqa-rad").load(data)) == 24
    shutil.copytree(EVALDATA / "MedXpertQA", data / "medxpertqa")  # one folder, as upstream reads it
    assert len(get_benchmark("MedXpertQA-Text").load(data)) == len(get_benchmark("MedXpertQA-MM").load(data)) == 12
    shutil.copytree(EVALDATA / "MMMU-Medical-val", data / "MMMU")
    shutil.copytree(EVALDATA / "MMLU-medical", data / "MMLU")
    assert len(get_benchmark("MMMU-Medical-val").load(data)) == 17
    assert len(get_benchmark("MMLU-medical").load(data)) == 24
    with pytest.raises(DataError, match="no folder SLAKE"):
        get_benchmark("SLAKE").load(data)


def test_letter_of_matches_option_text_before_indices() -> None:
    assert letter_of("2", ["1", "2", "3", "4"]) == "B"
    assert letter_of("2", ["a", "b", "c", "d"]) == "C"  # no option reads "2": a 0-based index
    assert letter_of(2, ["1", "2", "3", "4"]) == "C"  # an int cell is always an index
    assert letter_of("b", ["x", "y"]) == "B"
    assert letter_of("Heparin", ["Aspirin", "heparin"]) == "B"
    assert letter_of("Zinc", ["Aspirin", "Heparin"]) is None
    assert letter_of("F", ["x", "y"]) is None and letter_of("7", ["x", "y"]) is None
    assert letter_of("B", ["B", "A"]) == "A"  # an option text (OmniMedVQA's gt_answer is one)
    assert letter_of("B", ["B", "A"], letter_field=True) == "B"  # a letter column (answer_idx, label…)


def test_unmatched_reference_scores_wrong_instead_of_aborting(tmp_path: Path) -> None:
    data = tmp_path / "data" / "MedQA_USMLE"
    data.mkdir(parents=True)
    rows = jsonl("MedQA_USMLE/phrases_no_exclude_test.jsonl")[:2]
    rows[0] = {**rows[0], "answer_idx": "a drug that is not listed"}
    (data / "phrases_no_exclude_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = get_benchmark("MedQA_USMLE").load(tmp_path / "data")
    assert len(samples) == 2 and samples[0].answer == "a drug that is not listed"
    for response in ("A", "B", "C", "D", "a drug that is not listed"):
        assert score(samples[0], response, "fixed").correct is False
    assert score(samples[1], rows[1]["answer_idx"], "fixed").correct is True


def _zip_folder(folder: Path, archive: Path, top: str | None = None) -> None:
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder)
                bundle.write(path, str(Path(top) / name) if top else str(name))
    shutil.rmtree(folder)


def test_slake_imgs_zip_extracted_on_first_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _copy("SLAKE", tmp_path)
    root = data / "SLAKE"
    _zip_folder(root / "imgs", root / "imgs.zip", top="imgs")
    samples = get_benchmark("SLAKE").load(data)
    assert "extracting" in capsys.readouterr().err
    assert (root / "imgs" / "xmlab102" / "source.jpg").is_file()
    check_media(get_benchmark("SLAKE"), samples)
    get_benchmark("SLAKE").load(data)
    assert "extracting" not in capsys.readouterr().err  # once only


def test_zip_in_a_read_only_release_goes_to_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hulumed.eval import data_files

    data = _copy("PMC_VQA", tmp_path)
    root = data / "PMC_VQA"
    _zip_folder(root / "figures", root / "images_2.zip")
    monkeypatch.setattr(data_files.os, "access", lambda path, mode: Path(path) != root)  # root ignores chmod
    samples = get_benchmark("PMC_VQA").load(data)
    assert not (root / "figures").exists()
    assert all(str(tmp_path / "cache") in p for s in samples for p in s.images)
    check_media(get_benchmark("PMC_VQA"), samples)


def test_missing_or_broken_zip_is_one_clear_error(tmp_path: Path) -> None:
    data = _copy("MedXpertQA", tmp_path)
    shutil.rmtree(data / "MedXpertQA" / "images")
    with pytest.raises(DataError, match=r"images/ \(or .*images.zip to extract\) not found"):
        get_benchmark("MedXpertQA-MM").load(data)
    assert len(get_benchmark("MedXpertQA-Text").load(data)) == 12  # text rows need no images
    (data / "MedXpertQA" / "images.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="could not be extracted"):
        get_benchmark("MedXpertQA-MM").load(data)


def test_omnimedvqa_zip_with_its_top_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "OmniMedVQA").mkdir(parents=True)
    staging = tmp_path / "staging"
    shutil.copytree(EVALDATA / "OmniMedVQA", staging)
    _zip_folder(staging, data / "OmniMedVQA" / "OmniMedVQA.zip", top="OmniMedVQA")
    samples = get_benchmark("OmniMedVQA").load(data)
    assert [s.prompt for s in samples] == [p for p, _ in expected_omnimedvqa()]
    check_media(get_benchmark("OmniMedVQA"), samples)


def test_m3d_public_csv_and_npy_volumes(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    root = tmp_path / "data" / "M3D-VQA"
    volume = root / "M3D_Cap" / "ct_quizze" / "000001" / "Axial_C__portal_venous_phase.npy"
    volume.parent.mkdir(parents=True)
    np.save(volume, np.linspace(0, 1, 3 * 8 * 8, dtype=np.float32).reshape(1, 3, 8, 8))
    header = ["Image Path", "Text", "Question Type", "Question", "Choice A", "Choice B", "Choice C", "Choice D",
              "Answer", "Answer Choice"]
    row = ["ct_quizze/000001/Axial_C__portal_venous_phase.npy", "caption", "1", "Which plane is this image in?",
           "Axial", "Sagittal", "Coronal", "Oblique", "Axial", "A"]
    with (root / "M3D_VQA_test.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, row])
    closed, opened = get_benchmark("M3D").load(tmp_path / "data")
    assert closed.prompt == ("Which plane is this image in? Choices: A. Axial B. Sagittal C. Coronal D. Oblique\n"
                             + MC)
    assert closed.answer == "A. Axial" and closed.kind == "3d_close" and closed.group == "Plane"
    assert opened.prompt == "Which plane is this image in?\n" + OPEN and opened.answer == "Axial"
    slices = sorted(Path(closed.frames).iterdir())
    assert closed.frames == opened.frames and [p.name for p in slices] == ["000.png", "001.png", "002.png"]
    assert score(closed, "A", "fixed").correct and not score(closed, "B", "fixed").correct


def test_no_huggingface_cli_left_in_the_docs() -> None:
    repo = Path(__file__).resolve().parents[2]
    for path in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        assert "huggingface-cli" not in path.read_text(), path
    eval_doc = (repo / "docs" / "eval.md").read_text()
    for benchmark in BENCHMARKS:
        if benchmark.download:
            assert benchmark.download in eval_doc, benchmark.name


def test_bad_release_files_are_one_clear_error(tmp_path: Path) -> None:
    data = _copy("SLAKE", tmp_path)
    (data / "SLAKE" / "test.json").write_text('[{"img_name": "xmlab1/source.jpg", "question": "Is')
    with pytest.raises(DataError, match="not valid JSON"):
        get_benchmark("SLAKE").load(data)
    rows = jsonl("MedQA_USMLE/phrases_no_exclude_test.jsonl")[:2]
    del rows[1]["answer_idx"]
    (data / "MedQA_USMLE").mkdir()
    (data / "MedQA_USMLE" / "phrases_no_exclude_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="not in the MedQA_USMLE layout .*answer_idx") as error:
        get_benchmark("MedQA_USMLE").load(data)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("escape", ["absolute", "dotdot", "symlink"])
def test_a_release_naming_files_outside_it_is_refused_before_anything_is_read(tmp_path: Path, escape: str) -> None:
    """A downloaded release must not make eval read (and upload to --endpoint or the judge) any other file."""
    secret = tmp_path / "private" / "patient.png"
    secret.parent.mkdir()
    shutil.copyfile(Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "inputs" / "image_a.png", secret)
    release = tmp_path / "D" / "IU_XRAY"
    release.mkdir(parents=True)
    shutil.copyfile(secret, release / "inside.png")
    named = {"absolute": str(secret), "dotdot": "../../private/patient.png", "symlink": "link.png"}[escape]
    if escape == "symlink":
        (release / "link.png").symlink_to(secret)
    rows = [{"id": 0, "image": ["inside.png"], "conversations": [{"from": "gpt", "value": "No acute findings."}]},
            {"id": 1, "image": [named], "conversations": [{"from": "gpt", "value": "Normal."}]}]
    (release / "iu_xray_test.json").write_text(json.dumps(rows))
    opened: list[str] = []
    import builtins

    real_open = builtins.open

    def watched(file, *args, **kwargs):  # any read of the secret is a failure, whatever reads it
        if Path(str(file)).resolve() == secret.resolve():
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "open", watched)
        with pytest.raises(DataError, match="outside its folder") as info:
            get_benchmark("IU_XRAY").load(tmp_path / "D")
    assert opened == [] and "nothing was read or sent" in str(info.value)
    rows[1]["image"] = ["inside.png"]
    (release / "iu_xray_test.json").write_text(json.dumps(rows))
    assert len(get_benchmark("IU_XRAY").load(tmp_path / "D")) == 2  # files inside the release are fine

"""A left-padded batch gives each row the result it gets alone — with token reduction on or off."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import load_case

ROWS = ["video", "text", "volume_3d", "image"]


def _batch(variant: str, pad_id: int):
    cases = [load_case(variant, case) for case in ROWS]
    width = max(t["input_ids"].shape[1] for _, t in cases)
    ids, mask = [], []
    for _, t in cases:
        n = t["input_ids"].shape[1]
        ids.append(torch.cat([torch.full((1, width - n), pad_id), t["input_ids"]], dim=1))
        mask.append(torch.cat([torch.zeros(1, width - n, dtype=torch.long), t["attention_mask"]], dim=1))
    media = [(meta, t) for meta, t in cases if "pixel_values" in t]
    batch = {
        "input_ids": torch.cat(ids),
        "attention_mask": torch.cat(mask),
        "pixel_values": torch.cat([t["pixel_values"] for _, t in media]),
        "grid_sizes": torch.cat([t["grid_sizes"] for _, t in media]),
        "merge_sizes": torch.cat([t["merge_sizes"] for _, t in media]),
        "modals": [m for meta, _ in media for m in meta["modals"]],
    }
    singles = []
    for meta, t in cases:
        single = {"input_ids": t["input_ids"], "attention_mask": t["attention_mask"]}
        if "pixel_values" in t:
            single.update(
                pixel_values=t["pixel_values"], grid_sizes=t["grid_sizes"], merge_sizes=t["merge_sizes"], modals=meta["modals"]
            )
        singles.append(single)
    return batch, singles


@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
@pytest.mark.parametrize("compress", [False, True])
def test_batch_equals_one_by_one(golden_model, variant, compress):
    model = golden_model(variant)
    model.config.use_token_compression = compress
    batch, singles = _batch(variant, pad_id=2000)
    with torch.no_grad():
        batched = model(**batch).logits
        for row, single in enumerate(singles):
            alone = model(**single).logits[0]  # (L', V)
            torch.testing.assert_close(batched[row, -alone.shape[0] :], alone, atol=1e-4, rtol=1e-4)
    generated = model.generate(**batch, do_sample=False, max_new_tokens=6, pad_token_id=2002)
    for row, single in enumerate(singles):
        alone = model.generate(**single, do_sample=False, max_new_tokens=6, pad_token_id=2002)
        assert generated[row, : alone.shape[1]].tolist() == alone[0].tolist()


def test_reduction_shortens_rows_by_the_dropped_tokens(golden_model):
    model = golden_model("tiny-qwen2")
    batch, singles = _batch("tiny-qwen2", pad_id=2000)
    model.config.use_token_compression = True
    with torch.no_grad():
        prepared = model.prepare_multimodal_inputs(
            batch["input_ids"], batch["attention_mask"], None, None,
            batch["pixel_values"], batch["grid_sizes"], batch["merge_sizes"], batch["modals"],
        )
    lengths = prepared["attention_mask"].sum(dim=1).tolist()
    meta_video, _ = load_case("tiny-qwen2", "video__use_token_compression_true")
    meta_volume, _ = load_case("tiny-qwen2", "volume_3d__use_token_compression_true")
    assert lengths == [meta_video["llm_sequence_length"], 32, meta_volume["llm_sequence_length"], 64]
    assert prepared["attention_mask"][:, -1].all()  # still left-padded


def test_image_token_count_mismatch_is_a_clear_error(golden_model):
    model = golden_model("tiny-qwen2")
    _, t = load_case("tiny-qwen2", "image")
    with pytest.raises(ValueError, match="image tokens"):
        model(input_ids=t["input_ids"][:, :-40], pixel_values=t["pixel_values"], grid_sizes=t["grid_sizes"],
              merge_sizes=t["merge_sizes"])


def test_drop_positions_drops_old_padding_and_keeps_order():
    from hulumed.model.modeling import _drop_positions

    ids = torch.tensor([[5, 9, 9, 9, 6, 0, 0], [7, 9, 9, 8, 8, 8, 8]])  # row 0 right-padded; 9 = <image>
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, -100))
    keep = torch.tensor([True, False, False, True, False])  # row 0 keeps its first image token, row 1 its second
    new_ids, new_mask, new_labels, _ = _drop_positions(ids, ids == 9, keep, mask, labels, None)
    assert new_ids.shape == (2, 6)  # the longest row after reduction, old padding not counted
    assert new_ids[0, :3].tolist() == [5, 9, 6] and new_mask[0].tolist() == [1, 1, 1, 0, 0, 0]
    assert new_ids[1].tolist() == [7, 9, 8, 8, 8, 8] and new_mask[1].all()
    assert new_labels[0].tolist() == [5, 9, 6, -100, -100, -100]


def test_generate_asks_for_last_position_logits_only(golden_model):
    # the prefill must not project every prompt position onto the vocabulary (memory and time)
    assert golden_model("tiny-qwen2")._supports_logits_to_keep()
    assert golden_model("tiny-qwen3")._supports_logits_to_keep()


def test_long_prompts_are_never_padded_against_short_ones_under_concurrency():
    """Admission by padded tokens (rows x longest prompt), not a row count: a long prompt sent beside short
    requests from other threads runs alone; the short ones still batch together; answers equal running alone."""
    import threading

    import hulumed
    from hulumed.backends.hf import HFEngine
    from hulumed.generation import GenerationParams
    from tests.conftest import GOLDEN

    engine = hulumed.load(GOLDEN / "tiny-qwen2", device="cpu", batch_size=8, max_batch_tokens=2048,
                          batch_wait_ms=200)
    assert isinstance(engine, HFEngine)
    batches: list[list[int]] = []
    original = engine._run

    def recording(batch):
        batches.append([row.prompt_tokens for submission in batch for row in submission.rows])
        return original(batch)

    engine._run = recording
    params = GenerationParams.greedy(3)
    long_text = [{"role": "user", "content": "word " * 1500}]
    shorts = [[{"role": "user", "content": f"hello {i}"}] for i in range(6)]
    results: dict[int, str] = {}

    def ask(index: int, conversation) -> None:
        results[index] = engine.generate([conversation], params)[0].text

    threads = [threading.Thread(target=ask, args=(i, c)) for i, c in enumerate([long_text, *shorts])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    long_tokens = max(max(b) for b in batches)
    assert long_tokens > 1500
    assert [b for b in batches if long_tokens in b] == [[long_tokens]]  # alone, whatever arrived beside it
    assert any(len(b) > 1 for b in batches)  # the short ones were batched together
    assert all(len(b) * max(b) <= 2048 for b in batches if len(b) > 1)
    # one call with mixed lengths: split by the token budget, answers in input order and equal to alone
    mixed = engine.generate([shorts[0], long_text, shorts[1]], params)
    assert [r.text for r in mixed] == [results[1], results[0], results[2]]
    engine.close()


def test_a_batch_joined_past_a_waiting_request_of_other_parameters():
    """Waiting: A (greedy), B (other parameters), C (greedy): A and C run together, B after; removing C from the
    queue past B must not compare their tensors (it used to raise inside the scheduler and hang every caller)."""
    import hulumed
    from hulumed.generation import GenerationParams
    from tests.conftest import GOLDEN

    engine = hulumed.load(GOLDEN / "tiny-qwen2", device="cpu", batch_size=8, batch_wait_ms=500)
    greedy, other = GenerationParams.greedy(2), GenerationParams.greedy(3)
    prepared = [engine.prepare([[{"role": "user", "content": f"hi {i}"}]], p) for i, p in
                enumerate([greedy, other, greedy])]
    submissions = [engine._submit(list(p.inputs), p.params) for p in prepared]
    for submission in submissions:
        assert submission.finished.wait(60) and submission.error is None
    alone = [engine.generate(p, p.params)[0].text for p in prepared]
    assert [s.results[0].text for s in submissions] == alone
    engine.close()


@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
def test_processing_time_reduction_equals_the_model_side_path(golden_model, variant, monkeypatch):
    """The engine decides token reduction while processing (rows hold only kept visual tokens + ``visual_keep``);
    the reference is the model-side path on the processor's full ids (``_drop_positions``, upstream's contract):
    the same greedy tokens for every row, alone and in one left-padded batch, and the engine never drops
    positions in the model."""
    from hulumed.backends.hf import _collate, reduced_row
    from hulumed.interface import ReductionOptions
    from hulumed.model import modeling
    from hulumed.processing.visual_tokens import keep_mask, visual_tokens

    model = golden_model(variant)
    model.config.use_token_compression = True
    _, singles = _batch(variant, pad_id=2000)
    reference = [model.generate(**single, do_sample=False, max_new_tokens=6, pad_token_id=2002)[0].tolist()
                 for single in singles]
    rows = []
    for single in singles:
        row = dict(single)
        if "pixel_values" in single:
            items = visual_tokens(single["pixel_values"], single["grid_sizes"], single["merge_sizes"],
                                  single["modals"], model.dtype, ReductionOptions(), checkpoint_default=True)
            row.update(reduced_row(single["input_ids"], single["attention_mask"], model.config.image_token_index,
                                   keep_mask(items)))
        rows.append(row)
    video = rows[0]
    assert int(video["visual_keep"].sum()) < video["visual_keep"].numel()  # the static video really is reduced
    assert int((video["input_ids"] == model.config.image_token_index).sum()) == int(video["visual_keep"].sum())

    def no_drop(*args, **kwargs):
        raise AssertionError("the engine's rows are reduced already; the model must not drop positions")

    monkeypatch.setattr(modeling, "_drop_positions", no_drop)
    for row, expected in zip(rows, reference):
        assert model.generate(**row, do_sample=False, max_new_tokens=6, pad_token_id=2002)[0].tolist() == expected
    batch = _collate(rows, pad_id=2000)
    generated = model.generate(**batch, do_sample=False, max_new_tokens=6, pad_token_id=2002)
    for index, expected in enumerate(reference):
        assert generated[index, : len(expected)].tolist() == expected


def test_generate_each_batches_in_the_engine_and_isolates_a_failing_request():
    """Callers hand every request to the engine (batch job, eval): requests with equal parameters run together,
    each outcome equals running alone, in input order; a request whose media cannot be read and one whose batch
    fails inside the model each get their own error while every other request is answered."""
    import hulumed
    from hulumed.conversation import user_turn
    from hulumed.errors import HulumedError
    from hulumed.generation import GenerationParams
    from tests.conftest import GOLDEN

    engine = hulumed.load(GOLDEN / "tiny-qwen2", device="cpu", batch_size=4, batch_wait_ms=50)
    short, longer = GenerationParams.greedy(3), GenerationParams.greedy(5)
    poison = "POISON"
    requests = [([user_turn(f"question {i}")], short if i % 3 else longer) for i in range(9)]
    requests[4] = ([user_turn("x", images=["/nonexistent/scan.png"])], short)  # fails while preparing
    requests[6] = ([user_turn(poison)], short)  # fails inside the model run (below)
    poison_ids = engine.tokenizer(poison, add_special_tokens=False)["input_ids"]
    batches: list[int] = []
    original = engine._run

    def failing(batch):
        batches.append(sum(len(s.rows) for s in batch))
        for submission in batch:
            for row in submission.rows:
                ids = row.inputs["input_ids"][0].tolist()
                if any(ids[i:i + len(poison_ids)] == poison_ids for i in range(len(ids))):
                    raise HulumedError("this request's batch failed")
        return original(batch)

    engine._run = failing
    outcomes = list(engine.generate_each(iter(requests)))
    engine._run = original
    assert [index for index, _ in outcomes] == list(range(9))
    assert isinstance(outcomes[4][1], HulumedError) and "scan.png" in str(outcomes[4][1])
    assert isinstance(outcomes[6][1], HulumedError) and "batch failed" in str(outcomes[6][1])
    for index in (0, 1, 2, 3, 5, 7, 8):
        conversation, params = requests[index]
        assert outcomes[index][1].token_ids == engine.generate(conversation, params)[0].token_ids, index
    assert max(batches) > 1  # the engine batched the requests it was handed one by one
    engine.close()


def test_generate_concurrently_keeps_input_order_bounds_reading_ahead_and_isolates_errors():
    """The backends that batch concurrent calls themselves (vLLM, endpoints) share one helper."""
    import threading

    from hulumed.errors import MediaError
    from hulumed.generation import GenerationParams, GenerationResult
    from hulumed.interface import generate_concurrently

    read, lock = [], threading.Lock()

    class Engine:
        def generate(self, conversations, params):
            [conversation] = conversations
            if conversation == "bad":
                raise MediaError("unreadable")
            return [GenerationResult(text=conversation, reasoning=None, token_ids=[], prompt_tokens=1,
                                     completion_tokens=1, visual_tokens=0, finish_reason="stop")]

    def requests():
        for i in range(10):
            with lock:
                read.append(i)
            yield ("bad" if i == 3 else f"answer {i}"), GenerationParams.greedy(1)

    outcomes = generate_concurrently(Engine(), requests(), in_flight=2)
    first = next(outcomes)
    assert first[0] == 0 and first[1].text == "answer 0" and len(read) <= 3  # read lazily, 2 in flight
    rest = list(outcomes)
    assert [i for i, _ in rest] == list(range(1, 10))
    assert isinstance(rest[2][1], MediaError)
    assert [o.text for i, o in rest if i != 3] == [f"answer {i}" for i in range(1, 10) if i != 3]

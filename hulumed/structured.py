"""Structured output: an answer that must match a JSON schema, be any JSON object, match a regex or be one of a list.

    params = GenerationParams(structured=StructuredOutput.json_schema(schema))       # or .named("radiology_report")
    [result] = engine.generate(conversation, params)
    report = json.loads(result.text)                                                # matches the schema

Both backends enforce it with **llguidance** (https://github.com/guidance-ai/llguidance), compiled the same way:
vLLM's ``guidance`` structured-output backend calls the same ``LLMatcher.grammar_from_json_schema`` /
``grammar_from`` functions (``vllm/v1/structured_output/backend_guidance.py``), and our transformers backend masks
the logits with an ``LLMatcher`` per row (``hulumed/constrained.py``). Why llguidance: it has no dependencies (a 7 MB
wheel; xgrammar pulls triton, ~200 MB, on x86-64 Linux), vLLM ships it, it computes a mask in microseconds without a
precomputed per-grammar table, and it has parser limits (lexer fuel, grammar size) that bound what one request can
cost — a schema is untrusted input on a server.

Meaning, identical on both backends:
* ``json_schema``: the answer is one JSON value matching the schema (JSON Schema draft 2020-12 as llguidance
  supports it; an unsupported keyword is an error, never silently ignored).
* ``json_object``: the answer is one JSON object (``{"type": "object"}``).
* ``regex``: the whole answer matches the regular expression (llguidance's regex syntax, anchored).
* ``choice``: the answer is exactly one of the strings.
* Whitespace: compact. JSON gets no free whitespace between tokens (vLLM: ``disable_any_whitespace``), so a model
  cannot spend its token budget on spaces and newlines; the answer parses with ``json.loads``.
* The end token is allowed only when the answer is complete. An answer cut by ``max_new_tokens`` is incomplete
  (``finish_reason="length"``), as in every OpenAI-compatible server.
* Thinking mode: the ``<think>`` block stays free; the constraint starts after ``</think>``.

Limits (``LIMITS``; also docs/security.md): a schema or grammar spec of at most 64 KiB, at most 1,000 choices of at
most 1,000 characters, llguidance's parser limits below. A spec over them, not valid JSON Schema or with a
keyword llguidance does not support is a ``ValueError`` with the reason (the server answers 400).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

Kind = Literal["json_schema", "json_object", "regex", "choice"]
KINDS: tuple[str, ...] = ("json_schema", "json_object", "regex", "choice")


@dataclass(frozen=True)
class Limits:
    max_spec_bytes: int = 64 * 1024  # a schema / regex as JSON text
    max_choices: int = 1000
    max_choice_chars: int = 1000
    # llguidance's parser limits (its defaults are 10-100x larger): what one request's grammar may cost
    max_grammar_size: int = 100_000  # symbols in the compiled grammar
    max_lexer_states: int = 50_000  # ~1-2 kB each
    initial_lexer_fuel: int = 500_000  # ~10 ms of regex analysis at build time
    step_lexer_fuel: int = 200_000  # ~15 ms per token mask at most


LIMITS = Limits()
#: JSON whitespace: compact on both backends (see the module docstring).
JSON_DEFAULTS = {"whitespace_flexible": False}


@dataclass(frozen=True)
class StructuredOutput:
    """What the answer must be. Build it with the class methods; ``spec`` is the schema / regex / choices."""

    kind: Kind
    spec: Any = None  # json_schema: dict; regex: str; choice: tuple[str, ...]; json_object: None
    name: str | None = None  # a shipped schema's name, or the OpenAI ``json_schema.name``

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"structured output kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.kind == "json_schema":
            if not isinstance(self.spec, dict):
                raise ValueError(f"a JSON schema must be a JSON object, got {type(self.spec).__name__}")
            try:
                text = json.dumps(self.spec)
            except (RecursionError, TypeError, ValueError) as error:
                raise ValueError(f"the JSON schema cannot be serialised: {type(error).__name__}") from None
            _check_size(text, "JSON schema")
        elif self.kind == "regex":
            if not isinstance(self.spec, str) or not self.spec:
                raise ValueError("a regex must be a non-empty string")
            _check_size(self.spec, "regex")
        elif self.kind == "choice":
            choices = self.spec
            if not isinstance(choices, (list, tuple)) or not choices:
                raise ValueError("choice needs a non-empty list of strings")
            if len(choices) > LIMITS.max_choices:
                raise ValueError(f"choice has {len(choices)} options; the limit is {LIMITS.max_choices}")
            for choice in choices:
                if not isinstance(choice, str) or not choice:
                    raise ValueError(f"every choice must be a non-empty string; got {choice!r}"[:200])
                if len(choice) > LIMITS.max_choice_chars:
                    raise ValueError(f"a choice has {len(choice)} characters; the limit is {LIMITS.max_choice_chars}")
            object.__setattr__(self, "spec", tuple(choices))
        elif self.spec is not None:
            raise ValueError("json_object takes no spec")
        problem = _grammar_problem(self.grammar())
        if problem:
            raise ValueError(f"the {self.kind.replace('_', ' ')} cannot be enforced: {problem}")

    # ---------------------------------------------------------------- constructors
    @classmethod
    def json_schema(cls, schema: dict[str, Any], name: str | None = None) -> StructuredOutput:
        return cls("json_schema", schema, name)

    @classmethod
    def json_object(cls) -> StructuredOutput:
        return cls("json_object")

    @classmethod
    def regex(cls, pattern: str) -> StructuredOutput:
        return cls("regex", pattern)

    @classmethod
    def choice(cls, choices: list[str] | tuple[str, ...]) -> StructuredOutput:
        return cls("choice", tuple(choices))

    @classmethod
    def named(cls, name: str) -> StructuredOutput:
        """A schema shipped with hulumed (``SCHEMAS``), by name."""
        return cls.json_schema(load_schema(name), name=name)

    @classmethod
    def from_openai(cls, response_format: Any) -> StructuredOutput | None:
        """OpenAI's ``response_format``: ``{"type": "text"}`` (None), ``{"type": "json_object"}`` or
        ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``. ``schema`` may be left out
        when ``name`` is one of ours (``hulumed:`` prefix optional)."""
        if response_format is None:
            return None
        if not isinstance(response_format, dict):
            raise ValueError("response_format must be an object")
        kind = response_format.get("type")
        if kind in (None, "text"):
            return None
        if kind == "json_object":
            return cls.json_object()
        if kind != "json_schema":
            raise ValueError(f"response_format.type must be text, json_object or json_schema; got {kind!r}"[:200])
        body = response_format.get("json_schema")
        if not isinstance(body, dict):
            raise ValueError('response_format json_schema needs "json_schema": {"name": ..., "schema": {...}}')
        name = body.get("name")
        schema = body.get("schema")
        if schema is None:
            if isinstance(name, str) and name.removeprefix("hulumed:") in SCHEMAS:
                return cls.named(name.removeprefix("hulumed:"))
            raise ValueError(
                f"response_format.json_schema has no schema (or a name of ours: {', '.join(SCHEMAS)})"
            )
        return cls.json_schema(schema, name=name if isinstance(name, str) else None)

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> StructuredOutput | None:
        """vLLM-style fields (``json`` / ``json_schema``, ``regex``, ``choice``, ``json_object``) or an OpenAI
        ``response_format``, as batch lines and ``GenerationParams`` dictionaries carry them."""
        given = [key for key in ("response_format", "json_schema", "regex", "choice", "json_object")
                 if fields.get(key) not in (None, False)]
        if len(given) > 1:
            raise ValueError(f"give one structured-output field, not {', '.join(given)}")
        if not given:
            return None
        key = given[0]
        value = fields[key]
        if key == "response_format":
            return cls.from_openai(value)
        if key == "json_schema":
            if isinstance(value, str):
                return cls.named(value)
            return cls.json_schema(value)
        if key == "json_object":
            return cls.json_object()
        return cls.regex(value) if key == "regex" else cls.choice(value)

    # ---------------------------------------------------------------- compiled form
    def grammar(self) -> str:
        """The llguidance grammar (as vLLM's guidance backend builds it, with compact JSON whitespace)."""
        import llguidance

        if self.kind == "json_schema":
            return llguidance.LLMatcher.grammar_from_json_schema(self.spec, defaults=JSON_DEFAULTS)
        if self.kind == "json_object":
            return llguidance.LLMatcher.grammar_from_json_schema('{"type": "object"}', defaults=JSON_DEFAULTS)
        return llguidance.grammar_from(self.kind, self.spec if self.kind == "regex" else list(self.spec))

    def vllm_fields(self) -> dict[str, Any]:
        """Keyword arguments of vLLM's ``StructuredOutputsParams``."""
        if self.kind == "json_schema":
            return {"json": self.spec, "disable_any_whitespace": True}
        if self.kind == "json_object":
            return {"json_object": True, "disable_any_whitespace": True}
        return {"regex": self.spec} if self.kind == "regex" else {"choice": list(self.spec)}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": list(self.spec) if self.kind == "choice" else self.spec, "name": self.name}


def parser_limits() -> Any:
    import llguidance

    return llguidance.LLParserLimits(
        max_grammar_size=LIMITS.max_grammar_size, max_lexer_states=LIMITS.max_lexer_states,
        initial_lexer_fuel=LIMITS.initial_lexer_fuel, step_lexer_fuel=LIMITS.step_lexer_fuel,
    )


def _grammar_problem(grammar: str) -> str:
    import llguidance

    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, None, limits=parser_limits())
    if is_error:
        return messages[0] if messages else "invalid grammar"
    # llguidance warns about schema keywords it does not enforce; enforcing part of a schema is not enforcing it
    unsupported = [m for m in messages if "unsupported" in m.lower() or "ignor" in m.lower()]
    return "; ".join(unsupported)


def _check_size(text: str, what: str) -> None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > LIMITS.max_spec_bytes:
        raise ValueError(f"the {what} is {size} bytes; the limit is {LIMITS.max_spec_bytes}")


# -------------------------------------------------------------------- shipped schemas
#: Schemas shipped in ``hulumed/schemas/<name>.json`` (documented in docs/structured.md).
SCHEMAS: tuple[str, ...] = ("radiology_report", "vqa_answer", "triage", "measurements")


def load_schema(name: str) -> dict[str, Any]:
    if name not in SCHEMAS:
        raise ValueError(f"no shipped schema named {name!r}; there are: {', '.join(SCHEMAS)}")
    return json.loads(resources.files("hulumed.schemas").joinpath(f"{name}.json").read_text("utf-8"))


def schema_from_argument(value: str) -> StructuredOutput:
    """``--json-schema`` of the CLI: a shipped schema's name or a path to a JSON schema file."""
    from pathlib import Path

    if value in SCHEMAS:
        return StructuredOutput.named(value)
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"--json-schema {value}: not a file, nor one of the shipped schemas ({', '.join(SCHEMAS)})")
    if path.stat().st_size > LIMITS.max_spec_bytes:
        raise ValueError(f"--json-schema {value}: {path.stat().st_size} bytes; the limit is {LIMITS.max_spec_bytes}")
    try:
        schema = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"--json-schema {value}: not valid JSON ({error})"[:300]) from None
    return StructuredOutput.json_schema(schema, name=path.stem)

"""Rendering a checkpoint's chat template with bounded time and memory.

A chat template is code that comes with the checkpoint. transformers renders it in Jinja's immutable sandbox,
which stops code *execution* (no attribute escapes) but not resource use: ``{% set s = 'x' * 8000000000 %}``
allocates 8 GB, two nested ``range(100000)`` loops run 10^10 steps, a string doubled in a loop grows
exponentially. ``hulumed info`` / ``estimate`` then die and ``serve`` stops answering while one request renders.

``render_chat(template, messages, **variables)`` renders exactly what transformers' ``apply_chat_template``
renders (same environment: an overlay of the one transformers compiles — its filters, globals, extensions,
``trim_blocks`` / ``lstrip_blocks`` — and the messages prepared by transformers' own helpers), with these bounds
for one render, each a ``CheckpointError`` naming ``chat_template`` and the bound:

* ``MAX_SECONDS`` wall time, checked at every loop step, call, operator and output chunk;
* ``MAX_LOOP_STEPS`` loop iterations in all (every ``{% for %}`` iterates through a counting wrapper);
* ``MAX_CHARS`` for any string or list built by ``*``, ``+``, ``%``, ``~`` or a filter / method call, and for the
  output (an integer argument over ``MAX_CHARS`` to a filter or method, e.g. ``center(10**9)``, is refused before
  the call; ``**`` may not build an integer over 10,000 bits);
* Python's recursion limit for recursive macros (``RecursionError`` becomes the same error).

Honest templates (every released Hulu-Med template renders in under a millisecond with a few dozen loop
steps) are far inside these bounds; tests/unit/test_chat_template.py checks the rendering equals transformers'.
"""

from __future__ import annotations

import contextvars
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hulumed.errors import CheckpointError

MAX_SECONDS = 5.0
MAX_LOOP_STEPS = 1_000_000
MAX_CHARS = 64 * 2**20
MAX_POWER_BITS = 10_000
_WIDTH = re.compile(r"%[-+ #0]*(\d+)(?:\.(\d+))?")


@dataclass
class _Budget:
    deadline: float
    steps: int = 0
    output: int = 0
    started: float = field(default_factory=time.monotonic)

    def tick(self, steps: int = 0) -> None:
        self.steps += steps
        if self.steps > MAX_LOOP_STEPS:
            raise CheckpointError(f"chat_template: the template ran over {MAX_LOOP_STEPS:,} loop steps while "
                                  "rendering; it is not a usable chat template")
        if time.monotonic() > self.deadline:
            raise CheckpointError(f"chat_template: rendering took over {MAX_SECONDS:g} s; it is not a usable chat "
                                  "template")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("chat_template_budget", default=None)


def _tick(steps: int = 0) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick(steps)


def _sized(value: Any, what: str) -> Any:
    if isinstance(value, (str, list, tuple, bytes)) and len(value) > MAX_CHARS:
        raise CheckpointError(f"chat_template: {what} built a value of {len(value):,} items, over {MAX_CHARS:,}")
    return value


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple, bytes)) else None


def _check_arguments(args: tuple, kwargs: dict, what: str) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_CHARS:
            raise CheckpointError(f"chat_template: {what} called with {value}, over {MAX_CHARS:,}")


def _bounded_iter(iterable: Any) -> Any:
    """What every ``{% for %}`` iterates over: the same items, each step counted and the deadline checked."""
    for item in iterable:
        _tick(1)
        yield item


def _bounded_concat(*parts: Any) -> str:
    """Jinja's ``~`` (``str_join``), refusing a result over ``MAX_CHARS`` before joining."""
    _tick()
    texts = [str(part) for part in parts]
    if sum(map(len, texts)) > MAX_CHARS:
        raise CheckpointError(f"chat_template: '~' would build a string over {MAX_CHARS:,} characters")
    return "".join(texts)


def _bounded_filter(function: Any, name: str) -> Any:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        _check_arguments(args[1:], kwargs, f"filter {name}")
        return _sized(function(*args, **kwargs), f"filter {name}")

    for attribute in ("jinja_pass_arg",):  # pass_context / pass_eval_context / pass_environment markers
        if hasattr(function, attribute):
            setattr(bounded, attribute, getattr(function, attribute))
    return bounded


@lru_cache(maxsize=1)
def _environment_class() -> type:
    import jinja2
    from jinja2 import nodes
    from jinja2.visitor import NodeTransformer
    from transformers.utils.chat_template_utils import _compile_jinja_template

    base_class = type(_compile_jinja_template("").environment)

    class _Rewrite(NodeTransformer):
        """Every loop iterates through ``_bounded_iter``; every ``~`` joins through ``_bounded_concat``."""

        def visit_For(self, node: nodes.For) -> nodes.Node:
            self.generic_visit(node)
            node.iter = nodes.Call(nodes.Name("hulumed_bounded_iter", "load"), [node.iter], [], None, None)
            return node

        def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
            self.generic_visit(node)
            return nodes.Call(nodes.Name("hulumed_bounded_concat", "load"), list(node.nodes), [], None, None)

    class BoundedEnvironment(base_class):  # type: ignore[misc, valid-type]
        intercepted_binops = frozenset(["*", "**", "+", "%"])

        def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
            return _Rewrite().visit(super()._parse(source, name, filename))

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _tick()
            if operator == "*":
                length, count = (_length(left), right) if _length(left) is not None else (_length(right), left)
                if length is not None and isinstance(count, int) and length * max(count, 0) > MAX_CHARS:
                    raise CheckpointError(f"chat_template: '*' would build {length * count:,} items, over "
                                          f"{MAX_CHARS:,}")
            elif operator == "+":
                if _length(left) is not None and _length(right) is not None and \
                        _length(left) + _length(right) > MAX_CHARS:
                    raise CheckpointError(f"chat_template: '+' would build a value over {MAX_CHARS:,} items")
            elif operator == "**":
                if isinstance(left, int) and isinstance(right, int) and right > 0 and \
                        abs(left).bit_length() * right > MAX_POWER_BITS:
                    raise CheckpointError(f"chat_template: '**' would build an integer over {MAX_POWER_BITS:,} bits")
            elif operator == "%" and isinstance(left, str):
                for width, precision in _WIDTH.findall(left):
                    if int(width) > MAX_CHARS or (precision and int(precision) > MAX_CHARS):
                        raise CheckpointError(f"chat_template: a '%' format width over {MAX_CHARS:,}")
            return _sized(super().call_binop(context, operator, left, right), f"'{operator}'")

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            _tick()
            _check_arguments(args, kwargs, "a call")
            return _sized(base_class.call(__self, __context, __obj, *args, **kwargs), "a call")

    BoundedEnvironment.jinja2 = jinja2  # keeps the module alive for pickling-free reuse
    return BoundedEnvironment


@lru_cache(maxsize=16)
def compile_template(template: str) -> Any:
    """The checkpoint's template compiled in the bounded environment (cached per template text)."""
    import jinja2
    from transformers.utils.chat_template_utils import _compile_jinja_template

    base = _compile_jinja_template("").environment
    environment = base.overlay()
    environment.__class__ = _environment_class()
    environment.filters = {name: _bounded_filter(f, name) for name, f in base.filters.items()}
    environment.globals = {**base.globals, "hulumed_bounded_iter": _bounded_iter,
                           "hulumed_bounded_concat": _bounded_concat}
    try:
        return environment.from_string(template)
    except jinja2.TemplateSyntaxError as error:
        raise CheckpointError(f"chat_template: not a valid Jinja template (line {error.lineno}: {error.message})"
                              ) from None
    except RecursionError:
        raise CheckpointError("chat_template: nested too deeply to compile") from None


def _same(value: Any) -> Any:
    return value


def _as_transformers_prepares(helpers: Any, messages: Any, variables: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The messages and variables as the installed transformers hands them to the template: newer versions (5.25)
    normalise messages, rebuild them from plain JSON types and alias reasoning fields; older ones (5.19) pass
    them as given. Each helper is used when the installed version has it."""
    normalize = getattr(helpers, "_normalize_chat_messages", None)
    plain = getattr(helpers, "_plain_template_data", _same)
    alias = getattr(helpers, "_alias_reasoning_fields", _same)
    chat = normalize(messages) if normalize is not None else messages
    return alias(plain(chat)), plain(variables)


def render_chat(template: str, messages: list[dict[str, Any]], **variables: Any) -> str:
    """``messages`` rendered with ``template`` as transformers' ``apply_chat_template(tokenize=False)`` renders
    them (``variables``: ``add_generation_prompt``, the tokenizer's special tokens, template switches), bounded."""
    import jinja2
    from transformers.utils import chat_template_utils as helpers

    compiled = compile_template(template)
    chat, variables = _as_transformers_prepares(helpers, messages, {"tools": None, "documents": None, **variables})
    budget = _Budget(deadline=time.monotonic() + MAX_SECONDS)
    token = _BUDGET.set(budget)
    pieces: list[str] = []
    try:
        for piece in compiled.generate(messages=chat, **variables):
            budget.output += len(piece)
            if budget.output > MAX_CHARS:
                raise CheckpointError(f"chat_template: the rendered prompt is over {MAX_CHARS:,} characters")
            budget.tick()
            pieces.append(piece)
    except RecursionError:
        raise CheckpointError("chat_template: recursion too deep while rendering") from None
    except MemoryError:
        raise CheckpointError("chat_template: rendering ran out of memory") from None
    except jinja2.exceptions.SecurityError as error:
        raise CheckpointError(f"chat_template: {error}") from None
    finally:
        _BUDGET.reset(token)
    return "".join(pieces)

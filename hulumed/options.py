"""Command-line options generated from dataclass fields, so flags, defaults and help cannot drift from the code.

    add_options(parser, LoadOptions, only=("device", "dtype"), names={"attn_implementation": "attn"})
    load_kwargs = option_values(args, LoadOptions)          # {field: value} for the fields that were added

One option per field: ``--field-name`` (or a name given in ``names``), ``dest`` = the field name, the default
= the field's default (so ``--help`` shows it and the dataclass stays the one place it is written), the type
from the annotation (``int``, ``float``, ``str``, ``Path``, ``Literal`` -> choices, ``bool`` ->
``--x / --no-x``, ``list[str]`` -> repeatable). Help is the field's ``metadata["help"]`` (fields made with
``option(default, help)``), unless the ``help`` argument gives one verb its own wording.
``scale`` shows a field in other units (``max_body_bytes`` as ``--max-body-mb``); ``suppress_defaults`` leaves
unset options out of the namespace (the training recipe: YAML values are kept unless an option is given).
Used by every verb: generate / chat / batch / estimate / info / serve / train (``hulumed.train.recipe``).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _number(check: Callable[[float], bool], wanted: str) -> Callable[[str], float]:
    """An argparse type: a float for which ``check`` holds (else the error says ``wanted``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{value} is not {wanted}")
        return value

    parse.__name__ = "number"
    return parse


fraction = _number(lambda v: 0 < v <= 1, "in (0, 1]")
positive_float = _number(lambda v: v > 0, "> 0")


def _optional(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def _scaled(factor: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return int(value * factor)

    parse.__name__ = "number"
    return parse


def option(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field whose ``help`` (and optional ``choices``) become its command-line option; a list
    default is copied per instance."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help, **metadata})
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type without ``None``, whether ``None`` is allowed)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), type(None) in typing.get_args(hint)
    return hint, False


def _default(spec: dataclasses.Field) -> Any:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return None


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    names: Mapping[str, str | tuple[str, ...]] | None = None,
    help: Mapping[str, str] | None = None,
    types_: Mapping[str, Callable[[str], Any]] | None = None,
    choices: Mapping[str, Iterable[Any]] | None = None,
    defaults: Mapping[str, Any] | None = None,
    scale: Mapping[str, tuple[str, int, str]] | None = None,
    many: Iterable[str] = (),
    suppress_defaults: bool = False,
) -> list[str]:
    """Add one option per field of dataclass ``cls`` (in field order); returns the field names added.

    ``names``: field -> flag name(s) without dashes (the first is shown); ``scale``: field -> (flag, factor,
    unit) for a field given in other units; a ``list`` field is repeatable (``--stop A --stop B``), or takes
    several values after one flag when named in ``many`` (``--data a.jsonl b.jsonl``).
    """
    names, help, types_, choices = names or {}, help or {}, types_ or {}, choices or {}
    defaults, scale = defaults or {}, scale or {}
    hints = typing.get_type_hints(cls)
    wanted = list(only) if only is not None else None
    added = []
    for spec in dataclasses.fields(cls):
        if (wanted is not None and spec.name not in wanted) or spec.name in skip:
            continue
        kind, nullable = _unwrap(hints[spec.name])
        default = defaults.get(spec.name, _default(spec))
        flags = names.get(spec.name, spec.name.replace("_", "-"))
        flags = [flags] if isinstance(flags, str) else list(flags)
        text = help.get(spec.name) or spec.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": spec.name, "help": text}
        if spec.name in scale:
            flag, factor, unit = scale[spec.name]
            flags = [flag]
            kwargs.update(type=_scaled(factor), metavar=unit)
            # a string default goes through ``type`` like a typed value (argparse converts string defaults only)
            default = f"{default / factor:g}" if isinstance(default, (int, float)) else default
        elif kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list:
            item = (typing.get_args(kind) or (str,))[0]
            kwargs.update(type=item, metavar=spec.name.upper().removesuffix("S"))
            kwargs.update(nargs="+") if spec.name in many else kwargs.update(action="append")
        elif typing.get_origin(kind) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(kind))
        else:
            base = types_.get(spec.name, kind if kind in (int, float, str, Path) else str)
            kwargs["type"] = _optional(base) if nullable else base
            kwargs["metavar"] = spec.name.upper()
        if spec.name in types_:
            kwargs["type"] = types_[spec.name]
        if spec.name in choices or "choices" in spec.metadata:
            kwargs["choices"] = list(choices.get(spec.name, spec.metadata.get("choices")))
            kwargs.pop("metavar", None)
        if suppress_defaults:
            kwargs["default"] = argparse.SUPPRESS
        else:
            kwargs["default"] = list(default) if isinstance(default, list) else default
        if default not in (None, [], False, "") and not isinstance(default, dataclasses.Field):
            kwargs["help"] = f"{kwargs['help']} [{default}]".strip()
        parser.add_argument(*(f"--{flag}" for flag in flags), **kwargs)
        added.append(spec.name)
    return added


def option_values(args: argparse.Namespace, cls: type, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """``{field: value}`` of dataclass ``cls``'s fields present in ``args`` (optionally only ``fields``)."""
    known = [f.name for f in dataclasses.fields(cls)] if fields is None else list(fields)
    return {name: getattr(args, name) for name in known if hasattr(args, name)}

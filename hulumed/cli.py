"""The ``hulumed`` command line: one subcommand per verb, each a thin call into the package.

Verbs live in the module that owns their logic; each such module exposes ``register(subparsers)`` which adds
its parser(s) and sets ``handler`` (a function ``(args) -> int`` exit code). This file only collects them,
so ``hulumed --help`` lists every verb and ``tests/e2e`` can check the registry is complete.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that register verbs, in the order they are listed by --help. A module that is missing (an extra
# that is not installed, or a verb not built yet) is skipped.
VERB_MODULES: tuple[str, ...] = (
    "hulumed.commands",
    "hulumed.train.commands",
    "hulumed.serve.commands",
    "hulumed.eval.commands",
    "hulumed.demo.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hulumed", description="Run, serve, evaluate and fine-tune Hulu-Med medical vision-language models."
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is not None and name.startswith(error.name):
                continue  # that verb module does not exist in this install
            raise
        module.register(subparsers)
    return parser


def _version() -> str:
    from . import __version__

    return f"hulumed {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    from .errors import HulumedError

    try:
        return int(handler(args) or 0)
    except (HulumedError, ValueError, FileNotFoundError) as error:
        print(f"hulumed {args.verb}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

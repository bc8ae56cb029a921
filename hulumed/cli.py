"""The ``hulumed`` command line: one subcommand per verb, each a thin call into the package.

``VERBS`` is the registry: verb -> (module that owns it, one-line help). ``hulumed --help`` lists it without
importing any verb module; a command imports only its own verb's module, which exposes
``register(subparsers)`` (adds its parser(s), each with ``handler``: ``(args) -> int`` exit code) or
``add_parser(subparsers)`` + ``run(args)``. Verb modules import nothing heavy at module level, so ``--help``,
``--version`` and argument errors never import torch. A verb whose module is missing (an extra that is not
installed) is still listed and says so when run. Typos get a suggestion (``--imgae`` -> ``--image``).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys
from collections.abc import Sequence
from typing import Any

CHAT_COMMANDS = "/image PATH, /video PATH, /volume PATH [SLICES], /think, /history, /reset, /help, /quit"

# verb -> (module, help). Several verbs may share a module (it registers all of them).
VERBS: dict[str, tuple[str, str]] = {
    "generate": ("hulumed.commands", "answer one prompt (with images / video / volume), streamed"),
    "chat": ("hulumed.commands", f"multi-turn chat in the terminal ({CHAT_COMMANDS})"),
    "batch": ("hulumed.commands", "answer a JSONL file of requests, resumable (errors are retried on rerun)"),
    "info": ("hulumed.commands", "variant, parameter count, sizes and flags of a checkpoint"),
    "estimate": ("hulumed.commands", "visual tokens and memory a request needs (no weights loaded)"),
    "make-tiny": ("hulumed.commands", "write a tiny random checkpoint in the official layout"),
    "train": ("hulumed.train.commands", "fine-tune a Hulu-Med checkpoint (full, partial, LoRA, QLoRA)"),
    "data": ("hulumed.train.commands", "inspect training data (data check)"),
    "merge-lora": ("hulumed.train.commands", "merge a LoRA adapter into its base model (full weights)"),
    "serve": ("hulumed.serve.commands", "OpenAI-compatible HTTP server (/v1/chat/completions)"),
    "eval": ("hulumed.eval.commands", "evaluate on medical benchmarks (--list shows them)"),
    "demo": ("hulumed.demo.commands", "web demo: chat over images, videos and volumes (Gradio, loopback)"),
}


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (with a suggestion for a mistyped option or verb)."""

    def error(self, message: str) -> Any:
        match = re.match(r"unrecognized arguments: (.*)", message)
        if match:
            message += _suggest(match.group(1).split(), [s for a in self._actions for s in a.option_strings])
        match = re.search(r"invalid choice: '([^']*)'", message)
        if match:
            action = next((a for a in self._actions if a.choices and match.group(1) not in a.choices), None)
            if action is not None:
                message += _suggest([match.group(1)], [str(c) for c in action.choices])
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _suggest(given: list[str], known: list[str]) -> str:
    hints = []
    for word in given:
        close = difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.6)
        if close:
            hints.append(f"{word} -> {close[0]}")
    return f" (did you mean: {', '.join(hints)}?)" if hints else ""


def _verb_in(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the verb named in ``argv`` gets its real options (every verb when ``argv`` is None)."""
    parser = Parser(
        prog="hulumed", description="Run, serve, evaluate and fine-tune Hulu-Med medical vision-language models."
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    wanted = VERBS if argv is None else {v: VERBS[v] for v in [_verb_in(argv)] if v in VERBS}
    missing: dict[str, str] = {}
    for module_name in dict.fromkeys(module for module, _ in wanted.values()):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is None or not module_name.startswith(error.name):
                raise
            missing[module_name] = str(error)  # that verb module is not in this install
            continue
        if hasattr(module, "register"):
            module.register(subparsers)
        else:
            verb = next(v for v, (m, _) in VERBS.items() if m == module_name)
            module.add_parser(subparsers).set_defaults(handler=module.run, verb=verb)
    for verb, (module_name, text) in VERBS.items():  # the others: listed, not built
        if verb not in subparsers.choices:
            stub = subparsers.add_parser(verb, help=text, add_help=False)
            reason = missing.get(module_name)
            if reason is not None:
                stub.set_defaults(handler=lambda args, reason=reason: _unavailable(args.verb, reason))
    return parser


def _unavailable(verb: str, reason: str) -> int:
    print(f"hulumed {verb}: not available in this install ({reason})", file=sys.stderr)
    return 1


def _version() -> str:
    from . import __version__

    return f"hulumed {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        verb_parser = parser._subparsers._group_actions[0].choices.get(getattr(args, "verb", None) or "", parser)
        verb_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    from .errors import HulumedError

    try:
        return int(handler(args) or 0)
    except (HulumedError, ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"hulumed {args.verb}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nhulumed {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

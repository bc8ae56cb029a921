"""Every exception class of the package is defined in ``hulumed/errors.py``, once."""

from __future__ import annotations

import ast
from pathlib import Path

import hulumed.errors as errors

PACKAGE = Path(__file__).resolve().parents[2] / "hulumed"


def _exception_classes(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(base) for base in node.bases]
            if any(base.endswith(("Error", "Exception", "Rejected", "TooLarge")) for base in bases):
                names.append(node.name)
    return names


def test_exception_classes_live_in_errors_py() -> None:
    elsewhere = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "errors.py" and (found := _exception_classes(path))
    }
    assert elsewhere == {}
    defined = _exception_classes(PACKAGE / "errors.py")
    assert len(defined) == len(set(defined)) and {"RecipeError", "EndpointError", "DataError"} <= set(defined)
    for name in defined:
        assert issubclass(getattr(errors, name), errors.HulumedError), name

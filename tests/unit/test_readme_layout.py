"""The README's "Layout" block names every module and sub-package of the package, under its own folder, and
names nothing that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layout() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    return block.strip("\n").splitlines()


def _sections(lines: list[str]) -> dict[str, str]:
    """'pkg/' -> the text of its line and of the lines below it that are indented further (descriptions and
    sub-packages), for the entries of `hulumed/`."""
    sections: dict[str, str] = {}
    for i, line in enumerate(lines):
        match = re.match(r"( *)(\w+)/\s", line + " ")
        if not match or not line.startswith("  "):
            continue
        indent = len(match.group(1))
        body = [line]
        for below in lines[i + 1:]:
            if len(below) - len(below.lstrip()) <= indent:
                break
            body.append(below)
        sections[match.group(2)] = "\n".join(body)
    return sections


def test_every_module_and_package_is_in_the_layout() -> None:
    lines = _layout()
    assert lines[0] == "hulumed/"
    sections = _sections(lines)
    whole = "\n".join(lines)
    package = ROOT / "hulumed"
    for path in sorted(package.glob("*.py")):
        assert path.name in whole, f"README layout does not name hulumed/{path.name}"
    for folder in sorted(p for p in package.rglob("*") if p.is_dir() and (p / "__init__.py").exists()):
        if folder == package:
            continue
        assert folder.name in sections, f"README layout has no entry {folder.name}/"
        words = set(re.findall(r"\w+", sections[folder.name]))
        for module in sorted(folder.glob("*.py")):
            if module.stem != "__init__":
                assert module.stem in words, f"README layout's {folder.name}/ does not name {module.stem}"


def test_the_layout_names_only_what_exists() -> None:
    sections = _sections(_layout())
    package = ROOT / "hulumed"
    for name in sections:
        assert list(package.rglob(name)), f"README layout names {name}/, which is not in hulumed/"
    for name in re.findall(r"\b(\w+)\.py\b", "\n".join(_layout())):
        assert list(package.rglob(f"{name}.py")) or list((ROOT / "benchmarks").glob(f"{name}.py")), name

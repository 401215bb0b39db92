"""docs/architecture.md names the package as it is: every module of redis_ambassador/ has its line
in one of the page's tables (and no line names a module that is gone), the package tree lists
exactly the package's files, and every module the docs name by its dotted name exists (the
pytest plugin is ``redis_ambassador.local.testing``)."""

from __future__ import annotations

import re
from pathlib import Path

from packaging_helpers import ROOT

PACKAGE = ROOT / "redis_ambassador"
PAGE = ROOT / "docs" / "architecture.md"

_FIRST_CELL = re.compile(r"^\|([^|]*)\|")
_MODULE_SPAN = re.compile(r"`([\w/]+\.py)`")
_DOTTED = re.compile(r"\bredis_ambassador(?:\.\w+)+")


def package_modules() -> set[str]:
    """Every module of the package, as a path inside it: ``routing/router.py``."""
    return {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}


def described(text: str) -> set[str]:
    """The modules a table row of the page describes: those named in the row's first cell."""
    found = set()
    for line in text.splitlines():
        cell = _FIRST_CELL.match(line)
        if cell:
            found |= set(_MODULE_SPAN.findall(cell.group(1)))
    return found


def tree(text: str) -> set[str]:
    """The files the page's package tree lists (the code block starting ``redis_ambassador/``),
    as paths inside the package."""
    block = text.split("```\nredis_ambassador/\n", 1)[1].split("```", 1)[0]
    files, room = set(), ""
    for line in block.splitlines():
        branch = re.match(r"^[├└]── (\w+/)?", line)
        if branch:
            room = branch.group(1) or ""
        files |= {room + name for name in re.findall(r"[\w]+\.py", line)}
    return files


def test_every_module_of_the_package_has_its_line() -> None:
    missing = package_modules() - described(PAGE.read_text(encoding="utf-8"))
    assert not missing, f"add a line to docs/architecture.md for: {sorted(missing)}"


def test_no_line_describes_a_module_that_is_gone() -> None:
    gone = described(PAGE.read_text(encoding="utf-8")) - package_modules()
    assert not gone, f"docs/architecture.md describes modules that do not exist: {sorted(gone)}"


def test_the_package_tree_lists_exactly_the_packages_files() -> None:
    assert tree(PAGE.read_text(encoding="utf-8")) == package_modules()


def test_every_module_named_by_its_dotted_name_exists() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    unknown = set()
    for page in pages:
        for name in _DOTTED.findall(page.read_text(encoding="utf-8")):
            path = ROOT / Path(*name.split("."))
            if not (path.with_suffix(".py").exists() or (path / "__init__.py").exists()):
                unknown.add(f"{page.relative_to(ROOT)}: {name}")
    assert not unknown, sorted(unknown)


def test_the_checkers_read_tables_and_trees() -> None:
    text = (
        "| module | what |\n|---|---|\n| `routing/router.py` | the router |\n"
        "| `a.py`, `b/c.py` | two |\n| words | `not/first.py` |\n\n"
        "```\nredis_ambassador/\n├── __init__.py  cli.py\n├── routing/  router.py\n"
        "│           session.py\n└── local/    testing.py\n```\n"
    )
    assert described(text) == {"routing/router.py", "a.py", "b/c.py"}
    assert tree(text) == {
        "__init__.py",
        "cli.py",
        "routing/router.py",
        "routing/session.py",
        "local/testing.py",
    }

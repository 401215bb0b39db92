"""The docs hold together: every relative link in README.md, docs/*.md and bench/README.md
points at a file of the repository, and its #anchor at a heading of that file (GitHub's
slugs); every repository file README.md and docs/ name in a code span exists, so a renamed or
deleted module shows; and none cites a file outside the repository."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
from packaging_helpers import ROOT

PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
# bench/README.md links into docs/ too; the files it names include the benchmark's own output.
DOCS = sorted([*PAGES, ROOT / "bench" / "README.md"])

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
# A code span that names a file of the repository: a path or a file name with one of these
# extensions (configuration keys, commands and host names do not end so).
_FILE_SPAN = re.compile(r"^(?:\.\./|\./)?[\w.-]+(?:/[\w.-]+)*\.(?:py|md|toml|yaml|json|js)$")
# Code spans that look like files but name something else: the ConfigMap's key, which the
# Kubernetes page names as the config file the pod sees.
_NOT_REPOSITORY_FILES = frozenset({"ambassador.toml"})
_SKIPPED_DIRS = frozenset({".git", ".venv", "node_modules", "__pycache__"})


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (others are blank, so line numbers hold)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (github-slugger): the rendered text lower-cased,
    punctuation and symbols dropped, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    kept = (
        ch
        for ch in text
        if ch in " -_" or unicodedata.category(ch)[0] in "LNM" or unicodedata.category(ch) == "Pc"
    )
    return "".join(kept).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a Markdown text, repeated headings numbered as GitHub does."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(text):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link and image in the prose (code never counts)."""
    found = []
    for number, line in enumerate(prose_lines(text), 1):
        prose = _CODE_SPAN.sub(lambda m: "x" * len(m.group(0)), line)
        found += [(number, target) for target in _LINK.findall(prose)]
        reference = _REFERENCE.match(prose)
        if reference:
            found.append((number, reference.group(1)))
    return found


def code_spans(text: str) -> list[tuple[int, str]]:
    """(line number, content) of every inline code span in the prose."""
    return [
        (number, match.group(2).strip())
        for number, line in enumerate(prose_lines(text), 1)
        for match in _CODE_SPAN.finditer(line)
    ]


def broken_links(path: Path, text: str) -> list[str]:
    """What is wrong with the relative links of ``text``, the content of ``path``: one line each."""
    problems = []
    for number, target in links(text):
        if _SCHEME.match(target):
            continue
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not file_part:
            if anchor and anchor not in anchors(text):
                problems.append(f"{where}: no heading with that anchor in this file")
        elif not linked.is_relative_to(ROOT):
            problems.append(f"{where}: outside the repository")
        elif not linked.exists():
            problems.append(f"{where}: no such file")
        elif anchor and linked.suffix != ".md":
            problems.append(f"{where}: an anchor into a file that is not Markdown")
        elif anchor and anchor not in anchors(linked.read_text(encoding="utf-8")):
            problems.append(f"{where}: no heading with that anchor in {linked.relative_to(ROOT)}")
    return problems


def _repository_files() -> dict[str, list[Path]]:
    """Every file of the repository by its name (git's working tree, without tools' folders)."""
    by_name: dict[str, list[Path]] = {}
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if path.is_file() and not _SKIPPED_DIRS & set(parts) and ".egg-info" not in str(path):
            by_name.setdefault(path.name, []).append(path)
    return by_name


def missing_files(path: Path, text: str, by_name: dict[str, list[Path]]) -> list[str]:
    """Code spans of ``text`` (the content of ``path``) naming a repository file that does not
    exist. A path is looked up from the repository's root, the package's (``routing/router.py``)
    and the file's own folder; a bare name (``test_tls.py``) anywhere in the repository."""
    problems = []
    for number, span in code_spans(text):
        if not _FILE_SPAN.match(span) or span in _NOT_REPOSITORY_FILES:
            continue
        where = f"{path.relative_to(ROOT)}:{number}: `{span}`"
        if span.startswith("../") or span.startswith("./"):
            named = (path.parent / span).resolve()
            if not named.is_relative_to(ROOT):
                problems.append(f"{where}: outside the repository")
            elif not named.exists():
                problems.append(f"{where}: no such file")
        elif "/" in span:
            bases = (ROOT, ROOT / "redis_ambassador", path.parent)
            if not any((base / span).exists() for base in bases):
                problems.append(f"{where}: no such file")
        elif span not in by_name:
            problems.append(f"{where}: no file of that name")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    assert broken_links(path, path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_named_in_a_code_span_exists(path: Path) -> None:
    assert missing_files(path, path.read_text(encoding="utf-8"), _repository_files()) == []


def test_the_readme_links_every_docs_page() -> None:
    linked = {target.partition("#")[0] for _, target in links((ROOT / "README.md").read_text())}
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert pages and pages <= linked, sorted(pages - linked)


def test_the_readme_stays_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < 300, f"README.md is {lines} lines: move reference material to docs/"


def test_every_docs_page_starts_with_its_title_and_a_paragraph_saying_what_it_covers() -> None:
    for page in sorted((ROOT / "docs").glob("*.md")):
        blocks = page.read_text(encoding="utf-8").split("\n\n")
        assert blocks[0].startswith("# ") and "\n" not in blocks[0], page.name
        assert blocks[1][:1].isalpha() and len(blocks[1].split()) >= 20, page.name


def test_slugs_are_githubs() -> None:
    assert slug("`redis-ambassador dev` — a local cluster behind one endpoint") == (
        "redis-ambassador-dev--a-local-cluster-behind-one-endpoint"
    )
    assert slug("Watching it: `/metrics`, `/healthz`, `/readyz`") == (
        "watching-it-metrics-healthz-readyz"
    )
    assert slug("Comparing builds: before/after in one run") == (
        "comparing-builds-beforeafter-in-one-run"
    )
    assert slug("Authentication: the cluster's credentials, and the clients'") == (
        "authentication-the-clusters-credentials-and-the-clients"
    )
    assert slug("Targets (from PERFORMANCE.md, one run of bench/, 2 cores)") == (
        "targets-from-performancemd-one-run-of-bench-2-cores"
    )
    assert slug("[Linked](x.md) `code_name` text") == "linked-code_name-text"


def test_the_checkers_find_what_is_broken() -> None:
    page = ROOT / "docs" / "not-a-page.md"
    text = (
        "# Title\n\n## A heading\n\n## A heading\n\n"
        "[ok](#a-heading-1) [bad](#nowhere) [gone](missing.md) [up](../../outside.md)\n"
        "[anchor](../README.md#no-such-heading) `[not](#a-link)`\n\n```\n[nor](#this)\n```\n"
        "`routing/router.py` `routing/batch.py` `test_package_shape.py` `localservers.py`\n"
    )
    assert anchors(text) == {"title", "a-heading", "a-heading-1"}
    assert [target for _, target in links(text)] == [
        "#a-heading-1",
        "#nowhere",
        "missing.md",
        "../../outside.md",
        "../README.md#no-such-heading",
    ]
    assert [problem.split(": ", 1)[1] for problem in broken_links(page, text)] == [
        "#nowhere: no heading with that anchor in this file",
        "missing.md: no such file",
        "../../outside.md: outside the repository",
        "../README.md#no-such-heading: no heading with that anchor in README.md",
    ]
    assert [problem.split(": ", 1)[1] for problem in missing_files(page, text, {})] == [
        "`routing/batch.py`: no such file",
        "`test_package_shape.py`: no file of that name",
        "`localservers.py`: no file of that name",
    ]

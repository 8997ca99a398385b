"""docs/ stays checkable: every file it names exists, every link resolves, every citation lands.

The documents describe the code by pointing at it (``lbd/core/ipam.py``, ``tests/bench/...``); a
file that moves or disappears makes the sentence that names it stale, so it fails here. Things the
code does not do yet are marked ``[not yet ...]`` in a closing section of each document.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DESIGN = ("ARCHITECTURE", "API", "IPAM", "SPEAKER", "LAB")
_FILE_IN_BACKTICKS = re.compile(r"`([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+\.(?:py|md|yaml|toml))`")
_MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
_DOCS_CITATION = re.compile(r"\bdocs/([A-Za-z0-9_-]+\.md)\b")


def _docs() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def test_the_design_documents_exist():
    assert {p.stem for p in _docs()} >= set(DESIGN)


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: p.name)
def test_every_file_a_document_names_exists(doc: Path):
    missing = [m for m in _FILE_IN_BACKTICKS.findall(doc.read_text()) if not (ROOT / m).exists()]
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", [*_docs(), ROOT / "README.md"], ids=lambda p: p.name)
def test_every_relative_link_resolves(doc: Path):
    links = [u for u in _MD_LINK.findall(doc.read_text()) if "://" not in u]
    missing = [u for u in links if not (doc.parent / u).exists()]
    assert not missing, f"{doc.name} links to missing files: {missing}"


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: p.name)
def test_each_document_ends_with_its_not_yet_list(doc: Path):
    text = doc.read_text()
    assert "\n## Not yet\n" in text
    after = text.split("\n## Not yet\n", 1)[1]
    assert "\n## " not in after, "the Not yet section is the last one"
    items = [line for line in after.splitlines() if line.startswith("- ")]
    assert all(line.startswith("- [not yet") for line in items), items


def test_every_docs_citation_in_the_repository_resolves():
    files = subprocess.run(
        ["git", "ls-files", "lbd", "tests", "deploy", "crds", "README.md", "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if files.returncode != 0:
        pytest.skip("not a git checkout")
    cited: dict[str, set[str]] = {}
    for name in files.stdout.split():
        path = ROOT / name
        if path.is_file() and path.suffix in {".py", ".md", ".yaml", ".toml", ""}:
            for doc in _DOCS_CITATION.findall(path.read_text(errors="replace")):
                cited.setdefault(doc, set()).add(name)
    assert cited, "no docs/ citation found at all: the pattern is wrong"
    missing = {doc: sorted(by) for doc, by in cited.items() if not (DOCS / doc).is_file()}
    assert not missing, f"cited but missing in docs/: {missing}"

"""The wall around the lab: the import-linter contract in pyproject.toml really catches a breach.

``make lint`` runs the contracts on the real tree; these tests run them on a copy with one import
added, so a contract that stopped matching (a renamed package, an over-broad ignore) fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = "the lab is a walled wing"


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.skip("lint-imports is not installed (pip install -e '.[test]')")
    return subprocess.run(
        [str(lint), "--no-cache", str(tree / "pyproject.toml")],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "lbd", tmp_path / "lbd", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _verdict(out: str) -> str:
    """KEPT or BROKEN: what import-linter says of the lab contract."""
    text = " ".join(out.split())  # import-linter wraps long contract names
    found = re.search(re.escape(CONTRACT) + r".*? (KEPT|BROKEN)\b", text)
    assert found, out
    return found.group(1)


@pytest.mark.parametrize(
    ("module", "line"),
    [
        # a product package, directly
        ("lbd/core/model.py", "from lbd.lab.cluster import layout"),
        # a top-level module, indirectly through the speaker's CLI (lbd.log is imported by it)
        ("lbd/log.py", "import lbd.lab.standins.echo"),
        # the CLI beyond its one allowed, optional import of lbd.lab.cli
        ("lbd/cli.py", "from lbd.lab import commands"),
    ],
    ids=["core", "top-level module", "cli beyond its exception"],
)
def test_contract_breaks_when_the_product_imports_the_lab(tree: Path, module: str, line: str):
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    run = _lint_imports(tree)
    assert run.returncode != 0, run.stdout
    assert _verdict(run.stdout) == "BROKEN", run.stdout


def test_contract_holds_on_the_tree_as_it_is(tree: Path):
    run = _lint_imports(tree)
    assert run.returncode == 0, run.stdout + run.stderr
    assert _verdict(run.stdout) == "KEPT"

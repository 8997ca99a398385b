from __future__ import annotations

import subprocess
import sys

import pytest

from lbd import __version__
from lbd.cli import main


def test_version_subcommand_prints_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"lbd {__version__}"


def test_help_lists_subcommands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lbd", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "version" in out


def test_no_subcommand_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2

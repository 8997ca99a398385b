"""``lbd lab demo``, as ``make demo`` runs it: exit status and what it tells the user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lbd.cli import main

from .conftest import assert_nothing_left, unique_prefix


def test_without_root_the_demo_explains_why_and_stops(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["lab", "demo"]) == 2
    err = capsys.readouterr().err
    assert "needs root" in err and "network namespaces" in err


@pytest.mark.needs_root
@pytest.mark.slow
def test_demo_narrates_a_failover_and_cleans_up(tmp_path: Path) -> None:
    prefix = unique_prefix()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lbd",
            "lab",
            "demo",
            "--prefix",
            prefix,
            "--dir",
            str(tmp_path / prefix),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "answered by" in text and "interruption" in text
    assert "Summary" in text and "client-observed interruption" in text
    assert f"lab {prefix} removed" in text
    assert_nothing_left(prefix)

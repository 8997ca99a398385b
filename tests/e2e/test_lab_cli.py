"""The lab's commands as a person types them (issue 14, point 5): a lab made with ``--dir`` is
found by ``--prefix`` (exec, kill-node, restore-node), and ``lab down --prefix`` forgets it, so
the next ``lab up`` of the same directory does not refuse. The stand-in control plane only: the
commands do not depend on which one runs."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from lbd.lab.cluster import kubeproxy
from lbd.lab.cluster.lab import STAND_IN, down

from .conftest import assert_nothing_left


def lbd(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lbd", "lab", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.mark.needs_root
@pytest.mark.slow
def test_prefix_finds_a_lab_made_with_dir_and_down_forgets_it(tmp_path: Path) -> None:
    prefix = "cli" + uuid.uuid4().hex[:5]
    lab_dir = tmp_path / "somewhere" / prefix
    root_rules = kubeproxy.ruleset(None)
    up = ("up", "--prefix", prefix, "--dir", str(lab_dir), "--nodes", "2")
    try:
        first = lbd(*up, "--control-plane", STAND_IN, cwd=tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        ran = lbd(
            "exec", "--prefix", prefix, "--node", "n2", "--", "ip", "-br", "addr", cwd=tmp_path
        )
        assert ran.returncode == 0 and "198.18." in ran.stdout, ran.stderr
        killed = lbd("kill-node", "--prefix", prefix, "n1", cwd=tmp_path)
        assert killed.returncode == 0, killed.stderr
        back = lbd("restore-node", "--prefix", prefix, "n1", cwd=tmp_path)
        assert back.returncode == 0, back.stderr
        gone = lbd("down", "--prefix", prefix, cwd=tmp_path)
        assert gone.returncode == 0, gone.stderr
        assert not (lab_dir / "lab.json").exists()
        assert_nothing_left(prefix, lab_dir, root_rules)
        # the same directory again: no "a lab is already recorded" refusal
        again = lbd(*up, "--control-plane", STAND_IN, cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        assert lbd("down", "--dir", str(lab_dir), cwd=tmp_path).returncode == 0
    finally:
        down(prefix=prefix, lab_dir=lab_dir if lab_dir.is_dir() else None)
        subprocess.run(["rm", "-f", f"/run/lbd-lab/{prefix}.dir"], check=False)
    assert_nothing_left(prefix, lab_dir, root_rules)

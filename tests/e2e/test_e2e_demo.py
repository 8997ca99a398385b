"""``lbd lab demo``, as ``make demo`` runs it: exit status and what it tells the user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lbd.cli import main
from lbd.lab.cluster import kubeproxy

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
def test_demo_narrates_a_failover_and_cleans_up(tmp_path: Path, control_plane: str) -> None:
    prefix = unique_prefix()
    root_rules = kubeproxy.ruleset(None)
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
            "--control-plane",
            control_plane,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    # the first line says which control plane runs
    assert text.splitlines()[0].startswith(f"demo: control plane: {control_plane}")
    assert "interruption" in text
    assert "Summary" in text and "client-observed interruption" in text
    if control_plane == "real":
        # the tutorial's picture: an EXTERNAL-IP, the pods in the EndpointSlice, curl answered
        # by a pod
        assert "$ kubectl get svc echo" in text and "EXTERNAL-IP" in text
        assert "198.18.100." in text.split("$ kubectl get svc echo", 1)[1].split("\n")[2]
        assert "echo-n1-1\tn1\tready=true" in text
        assert "$ curl http://198.18.100." in text and "pod echo-n" in text
        assert "ready=false" in text  # the killed node's pods left the EndpointSlice
    else:
        assert "answered by" in text
    assert f"lab {prefix} removed" in text
    assert_nothing_left(prefix, tmp_path / prefix, root_rules)

"""The real kubectl for the tests, and a runner bound to one kubeconfig.

kubectl is the one built by ``make k8s`` beside the real control plane (or found through
``KUBEBUILDER_ASSETS``, see :mod:`lbd.lab.control_plane.binaries`), so the tests drive the
stand-in with exactly the client version they compare it against; a ``kubectl`` on ``PATH`` is
the fallback. Without one a test is skipped with the reason, except in CI (``CI=true``), where
that is a failure, as for the other real-binary tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from lbd.lab.control_plane import BinariesMissingError, find_binaries
from lbd.lab.control_plane.binaries import HOW_TO_BUILD


def kubectl_path() -> Path | None:
    try:
        built = find_binaries().kubectl
    except BinariesMissingError:
        built = None
    if built is not None and built.is_file():
        return built
    found = shutil.which("kubectl")
    return Path(found) if found else None


def kubectl_or_skip() -> Path:
    path = kubectl_path()
    if path is None:
        reason = f"kubectl not found: {HOW_TO_BUILD} (it builds kubectl too)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def header(self) -> str:
        """The first line of the output (a table's column names)."""
        return self.stdout.splitlines()[0] if self.stdout else ""


class Kubectl:
    """kubectl with one kubeconfig, and a cache folder of its own (the discovery and OpenAPI
    caches of one server must never answer for another)."""

    def __init__(self, binary: Path, kubeconfig: Path, home: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "KUBECONFIG": str(kubeconfig),
            "KUBECACHEDIR": str(home / "cache"),
        }

    def run(
        self, *args: str, stdin: str | None = None, timeout: float = 60.0, cwd: Path | None = None
    ) -> Result:
        res = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env=self.env,
            input=stdin,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )
        return Result(res.returncode, res.stdout, res.stderr)

    def __call__(self, *args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
        """Run and return stdout and stderr; a failure is an AssertionError with stderr."""
        res = self.run(*args, stdin=stdin, cwd=cwd)
        if res.code != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: exit {res.code}: {res.stderr}")
        return res.stdout + res.stderr

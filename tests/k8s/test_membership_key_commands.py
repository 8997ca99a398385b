"""The key rotation commands of ``deploy/README.md`` ("Rotating the membership key"), run as they
are written, with the real kubectl against the real API server: each leaves in the Secret the key
file the speakers are documented to read, and keeps the labels and annotations Helm needs.

The README's shell blocks are taken from the document itself, so a command edited there is the
command tested. The same one-step command is printed by the chart's NOTES, the README's speaker
section and docs/SPEAKER.md: they must not drift apart.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from lbd.core.keyring import key_id, parse_key_file
from lbd.lab.control_plane import ControlPlane

pytestmark = pytest.mark.real_k8s

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Rotating the membership key"
NS = "lbd-system"


def readme_blocks() -> list[str]:
    text = (ROOT / "deploy/README.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def one_step(block: str) -> str:
    """The command without its comment lines."""
    return "\n".join(x for x in block.splitlines() if not x.lstrip().startswith("#"))


@pytest.fixture
def shell(real_plane: ControlPlane, tmp_path: Path) -> Any:
    """Runs a script with ``kubectl`` meaning the real kubectl on the real API server."""
    kubectl = real_plane.binaries.kubectl
    if kubectl is None:
        pytest.skip("the make k8s folder has no kubectl")
    config = real_plane.write_kubeconfig(tmp_path / "kubeconfig")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "kubectl"
    wrapper.write_text(f'#!/bin/sh\nexec {kubectl} --kubeconfig {config} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def run(script: str) -> str:
        res = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, f"{script}\n{res.stderr}"
        return res.stdout

    return run


@pytest.fixture
def secret(real_plane: ControlPlane, shell: Any) -> Any:
    """lbd-memberlist as the chart creates it (Helm's labels and annotations), then removed."""
    first = "first-" + uuid.uuid4().hex
    shell(
        f"kubectl -n {NS} create secret generic lbd-memberlist --from-literal=key={first}\n"
        f"kubectl -n {NS} label secret lbd-memberlist app.kubernetes.io/managed-by=Helm\n"
        f"kubectl -n {NS} annotate secret lbd-memberlist meta.helm.sh/release-name=lbd "
        f"meta.helm.sh/release-namespace={NS}\n"
    )

    def read() -> tuple[tuple[bytes, ...], dict[str, Any]]:
        obj: Any = real_plane.admin.get(f"/api/v1/namespaces/{NS}/secrets/lbd-memberlist")
        return parse_key_file(base64.b64decode(obj["data"]["key"])), obj["metadata"]

    try:
        yield first.encode(), read
    finally:
        shell(f"kubectl -n {NS} delete secret lbd-memberlist --ignore-not-found")


def test_the_one_step_rotation_and_the_key_ids(secret: Any, shell: Any) -> None:
    first, read = secret
    rotate, ids, _two_steps = readme_blocks()
    shell(rotate)
    (key,), meta = read()
    assert key != first and len(key) == 44  # 32 random bytes in base64, one line
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"  # helm upgrade still owns it
    assert meta["annotations"]["meta.helm.sh/release-name"] == "lbd"
    assert shell(ids).split() == [key_id(key).hex()]


def test_the_two_step_rotation(secret: Any, shell: Any, tmp_path: Path) -> None:
    first, read = secret
    _rotate, ids, two_steps = readme_blocks()
    both, alone = two_steps.split("# wait until", 1)
    saved = tmp_path / "new"
    shell(both + f'\nprintf %s "$NEW" > {saved}\n')
    new = saved.read_bytes()
    assert read()[0] == (new, first)  # step 1: both keys, the new one first
    assert shell(ids).split() == [key_id(new).hex(), key_id(first).hex()]
    shell(f"NEW=$(cat {saved})\n# wait until{alone}")
    assert read()[0] == (new,)


def test_the_notes_the_readme_and_the_speaker_doc_print_the_same_command() -> None:
    patch = one_step(readme_blocks()[0]).splitlines()[-1].strip()
    assert patch.startswith('-p "{\\"data\\":{\\"key\\":')
    for doc in ("README.md", "docs/SPEAKER.md", "deploy/helm/lbd/templates/NOTES.txt"):
        assert patch in (ROOT / doc).read_text(), doc

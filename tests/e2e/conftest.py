"""Fixtures for whole-lab tests: labs on both control planes, always torn down.

``control_plane`` is ``stand-in`` or ``real`` (docs/LAB.md): every test that takes a lab from
``lab_factory`` or ``module_lab_factory`` runs on both, ids ``[stand-in]`` and ``[real]``.
``LBD_CONTROL_PLANE=real`` (or ``stand-in``) runs only one. When the real binaries are missing
the ``[real]`` runs are skipped with the reason and how to build them, except in CI
(``CI=true``), where that is a failure. Tests about behaviour only real kube-proxy and real Pods
have take ``real_module_lab_factory``.

Each factory brings labs up in a temporary directory with a unique prefix and guarantees
``lbd lab down`` afterwards, also when the test fails; the teardown then checks that nothing of
the lab is left (namespaces, processes, the supervisor socket, files in its directory, nftables
tables, and any change to the root namespace's ruleset), so a leak fails the suite.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lbd.lab.cluster import kubeproxy, supervisor
from lbd.lab.cluster.lab import REAL, STAND_IN, Lab, LabOptions, down, up
from lbd.lab.cluster.netns import namespaces_with_prefix, pids_with_marker

LabFactory = Callable[..., Lab]

CONTROL_PLANES = tuple(
    p for p in (STAND_IN, REAL) if os.environ.get("LBD_CONTROL_PLANE", p) in (p, "both")
)


def unique_prefix(tag: str = "le") -> str:
    """``tag`` (a test module's helper name, say) and random hex: 8 characters in all."""
    return tag + uuid.uuid4().hex[: 8 - len(tag)]


def assert_nothing_left(prefix: str, lab_dir: Path | None = None, root_rules: str = "") -> None:
    assert namespaces_with_prefix(prefix) == []
    assert pids_with_marker(f"{supervisor.MARKER_ENV}={prefix}") == []
    assert not supervisor.socket_path(prefix).exists()
    if lab_dir is not None:
        assert not lab_dir.exists(), sorted(str(p) for p in lab_dir.rglob("*"))
    # kube-proxy ran in the node namespaces only: the root ruleset is what it was before
    assert kubeproxy.ruleset(None) == root_rules


def binaries_or_skip() -> None:
    from lbd.lab.control_plane import BinariesMissingError, find_binaries

    try:
        find_binaries()
    except BinariesMissingError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {exc}", pytrace=False)
        pytest.skip(str(exc))


def _factory(base: Path, control_plane: str) -> Iterator[LabFactory]:
    made: list[tuple[str, Path]] = []
    root_rules = kubeproxy.ruleset(None)

    def make(*, tag: str = "le", **kwargs: object) -> Lab:
        prefix = unique_prefix(tag)
        lab_dir = base / prefix
        made.append((prefix, lab_dir))
        opts = LabOptions(prefix=prefix, dir=lab_dir, control_plane=control_plane, **kwargs)  # type: ignore[arg-type]
        return up(opts)

    try:
        yield make
    finally:
        for prefix, lab_dir in made:
            down(prefix=prefix, lab_dir=lab_dir)
        for prefix, lab_dir in made:
            assert_nothing_left(prefix, lab_dir, root_rules)


@pytest.fixture(scope="module", params=CONTROL_PLANES)
def control_plane(request: pytest.FixtureRequest) -> str:
    """``stand-in`` or ``real``: the control plane the module's labs run."""
    if request.param == REAL:
        binaries_or_skip()
    return str(request.param)


@pytest.fixture
def lab_factory(tmp_path: Path, control_plane: str) -> Iterator[LabFactory]:
    """Bring up labs inside one test; each is torn down at the end of the test."""
    yield from _factory(tmp_path, control_plane)


@pytest.fixture(scope="module")
def module_lab_factory(
    tmp_path_factory: pytest.TempPathFactory, control_plane: str
) -> Iterator[LabFactory]:
    """Bring up labs shared by the tests of a module; torn down after the module."""
    yield from _factory(tmp_path_factory.mktemp("labs"), control_plane)


def _real_or_skip() -> None:
    if REAL not in CONTROL_PLANES:
        pytest.skip(f"LBD_CONTROL_PLANE={os.environ.get('LBD_CONTROL_PLANE')} excludes real")
    binaries_or_skip()


@pytest.fixture(scope="module")
def real_module_lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFactory]:
    """Labs on the real control plane only, shared by the tests of a module."""
    _real_or_skip()
    yield from _factory(tmp_path_factory.mktemp("labs"), REAL)


@pytest.fixture
def real_lab_factory(tmp_path: Path) -> Iterator[LabFactory]:
    """Labs on the real control plane only, torn down at the end of the test."""
    _real_or_skip()
    yield from _factory(tmp_path, REAL)

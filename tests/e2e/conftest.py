"""Fixtures for whole-lab tests: a lab per module (or per test), always torn down.

``lab_factory`` brings a lab up in a temporary directory with a unique prefix and guarantees
``lbd lab down`` afterwards, also when the test fails; the teardown then checks that nothing of
the lab is left (namespaces, processes, the supervisor socket), so a leak fails the suite.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lbd.lab.cluster import supervisor
from lbd.lab.cluster.lab import Lab, LabOptions, down, up
from lbd.lab.cluster.netns import namespaces_with_prefix, pids_with_marker

LabFactory = Callable[..., Lab]


def unique_prefix() -> str:
    return "le" + uuid.uuid4().hex[:6]


def assert_nothing_left(prefix: str) -> None:
    assert namespaces_with_prefix(prefix) == []
    assert pids_with_marker(f"{supervisor.MARKER_ENV}={prefix}") == []
    assert not supervisor.socket_path(prefix).exists()


def _factory(base: Path) -> Iterator[LabFactory]:
    made: list[tuple[str, Path]] = []

    def make(**kwargs: object) -> Lab:
        prefix = unique_prefix()
        lab_dir = base / prefix
        made.append((prefix, lab_dir))
        return up(LabOptions(prefix=prefix, dir=lab_dir, **kwargs))  # type: ignore[arg-type]

    try:
        yield make
    finally:
        for prefix, lab_dir in made:
            down(prefix=prefix, lab_dir=lab_dir)
        for prefix, _dir in made:
            assert_nothing_left(prefix)


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[LabFactory]:
    """Bring up labs inside one test; each is torn down at the end of the test."""
    yield from _factory(tmp_path)


@pytest.fixture(scope="module")
def module_lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFactory]:
    """Bring up labs shared by the tests of a module; torn down after the module."""
    yield from _factory(tmp_path_factory.mktemp("labs"))

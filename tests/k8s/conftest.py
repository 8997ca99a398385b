"""Fixtures for tests that talk to an API server through the official client.

Two kinds of server:

- the **stand-in** (:class:`~lbd.lab.apiserver.LabApiServer`), fresh per test, milliseconds to
  start: ``lab_api``, ``admin_client`` and ``client_for`` are for the tests of the stand-in
  itself;
- the **real** control plane (etcd, kube-apiserver, kube-controller-manager built by
  ``make k8s``; :mod:`lbd.lab.control_plane`), one per test session, with ``crds/`` and the
  ``deploy/`` ServiceAccounts, RBAC and admission policies applied, and an audit log of what
  lbd's ServiceAccounts do. Each test gets a fresh fault proxy in front of it
  (:class:`~lbd.lab.control_plane.RealApiServer`, the stand-in's calls) and a clean cluster
  afterwards (:class:`~lbd.lab.control_plane.Sweeper`).

``lab`` is the server of the tests of lbd's own code (controller, elector, informer, events,
status writers, the speaker's Kubernetes side): it runs each such test on both servers, ids
``[stand-in]`` and ``[real]``. The real server is the reference; the stand-in run keeps the
quick check working on a machine without the binaries. ``LBD_CONTROL_PLANE=real`` (or
``stand-in``) runs only one.

When the real binaries are missing the ``[real]`` tests are skipped with the reason and how to
build them, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, watch

from lbd.lab.apiserver import LabApiServer
from lbd.lab.control_plane import (
    BinariesMissingError,
    ControlPlane,
    RealApiServer,
    Sweeper,
    find_binaries,
)
from tests.k8s.controller_support import (
    ApiServer,
    Env,
    real_control_plane,
    real_lab,
    real_tokens,
    start_lab,
)

STAND_IN, REAL = "stand-in", "real"
CONTROL_PLANES = tuple(
    p for p in (STAND_IN, REAL) if os.environ.get("LBD_CONTROL_PLANE", p) in (p, "both")
)
_startup: list[str] = []


def api_client(server: ApiServer, token: str | None = None) -> client.ApiClient:
    """An official-client ``ApiClient`` for ``server`` with ``token`` (default: admin)."""
    cfg = server.client_configuration(token)
    # no retries: a test of failures must see them
    cfg.retries = False
    return client.ApiClient(cfg)


def new_watch() -> Any:
    """An official-client ``watch.Watch()`` (untyped upstream, hence ``Any``)."""
    return watch.Watch()  # type: ignore[no-untyped-call]


@pytest.fixture
def lab_api() -> Iterator[LabApiServer]:
    server = LabApiServer(bookmark_interval=0.2)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin_client(lab_api: LabApiServer) -> Iterator[client.ApiClient]:
    api = api_client(lab_api)
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def client_for(lab_api: LabApiServer) -> Iterator[Callable[[str], client.ApiClient]]:
    made: list[client.ApiClient] = []

    def make(token: str) -> client.ApiClient:
        api = api_client(lab_api, token)
        made.append(api)
        return api

    try:
        yield make
    finally:
        for api in made:
            api.close()  # type: ignore[no-untyped-call]


# -- the real control plane -------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that runs on the real control plane ``real_k8s`` (``-m real_k8s``)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_real = callspec is not None and callspec.params.get("control_plane") == REAL
        module = getattr(getattr(item, "module", None), "__name__", "")
        if on_real or module.endswith("test_control_plane"):
            item.add_marker(pytest.mark.real_k8s)


def binaries_or_skip() -> Any:
    try:
        return find_binaries()
    except BinariesMissingError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {exc}", pytrace=False)
        pytest.skip(str(exc))


LBD_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # one event when a request is answered (and one when a watch starts streaming)
    "omitStages": ["RequestReceived"],
    "rules": [
        # lbd's own ServiceAccounts only: what tests/k8s/test_rbac.py checks against deploy/
        {"level": "Metadata", "userGroups": ["system:serviceaccounts:lbd-system"]},
        {"level": "None"},
    ],
}
"""The session control plane's audit policy: which calls lbd's accounts made, and the real
authorizer's decision on each (``ControlPlane.audit_events``)."""


@pytest.fixture(scope="session")
def real_plane() -> Iterator[ControlPlane]:
    """One real control plane for the session, with crds/ and the deploy/ RBAC and admission
    policies applied, auditing what lbd's ServiceAccounts do."""
    binaries = binaries_or_skip()
    plane = real_control_plane(binaries, audit_policy=LBD_AUDIT_POLICY)
    # SIGTERM (a CI runner cancelling the job) must still run the finalizers below.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        plane.start()
        _startup.append(
            f"real control plane: Kubernetes {plane.version.get('gitVersion')}, "
            f"etcd {plane.etcd_version}, ready with crds/, deploy/ RBAC and admission in "
            f"{plane.startup_seconds:.1f} s at {plane.url} (binaries: {binaries.folder})"
        )
        yield plane
    finally:
        plane.stop()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def real_sweeper(real_plane: ControlPlane) -> Sweeper:
    return Sweeper(real_plane.admin)


@pytest.fixture(scope="session")
def real_plane_tokens(real_plane: ControlPlane) -> dict[str, str]:
    """Real tokens of lbd's ServiceAccounts, under the names the stand-in tests use."""
    return real_tokens(real_plane)


@pytest.fixture
def real_api(
    real_plane: ControlPlane, real_sweeper: Sweeper, real_plane_tokens: dict[str, str]
) -> Iterator[RealApiServer]:
    """The shared real control plane behind a fresh fault proxy; a clean cluster afterwards."""
    with real_lab(real_plane, real_sweeper, real_plane_tokens) as server:
        yield server


@pytest.fixture(params=CONTROL_PLANES)
def control_plane(request: pytest.FixtureRequest) -> str:
    """``stand-in`` or ``real``: the server the test runs on (tests use ``lab``)."""
    return str(request.param)


@pytest.fixture
def lab(control_plane: str, request: pytest.FixtureRequest) -> Iterator[ApiServer]:
    """The controller tests' server: crds/, deploy/ RBAC and the controller's token loaded."""
    if control_plane == REAL:
        yield request.getfixturevalue("real_api")
        return
    stand_in = start_lab()
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture
def env(lab: ApiServer) -> Iterator[Env]:
    """A running in-process controller (leading) on ``lab``, and an admin client; closed after
    the test. Modules may define their own ``env``."""
    e = Env(lab)
    try:
        yield e
    finally:
        e.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _startup:
        terminalreporter.write_line(line)

"""Fixtures for tests that talk to the lab API server through the official client.

``lab_api`` is a running :class:`~lbd.lab.apiserver.LabApiServer` on 127.0.0.1 (fresh per
test, a few milliseconds to start); ``admin_client`` is an official-client ``ApiClient``
authenticated with its admin token; ``client_for(token)`` builds one for any other token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, watch

from lbd.lab.apiserver import LabApiServer


def api_client(server: LabApiServer, token: str | None = None) -> client.ApiClient:
    """An official-client ``ApiClient`` for ``server`` with ``token`` (default: admin)."""
    cfg = client.Configuration()
    cfg.host = server.url
    cfg.api_key = {"BearerToken": token or server.admin_token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    if server.tls is not None:
        cfg.ssl_ca_cert = str(server.tls.cert)
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


@pytest.fixture
def lab() -> Iterator[LabApiServer]:
    """The controller tests' server: crds/, deploy/ RBAC and the controller's token loaded."""
    from tests.k8s.controller_support import start_lab

    server = start_lab()
    try:
        yield server
    finally:
        server.stop()

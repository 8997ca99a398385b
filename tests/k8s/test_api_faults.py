"""The faults the tests inject, seen by lbd's client, the same on both servers: the stand-in's
own and the fault proxy's in front of the real kube-apiserver (one test body drives either).

A 429 looks like kube-apiserver's priority and fairness refusal (plain text, ``Retry-After``),
and lbd reads the wait it asks for.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from lbd.k8s.client import ApiError, ApiUnavailableError, Kube, Resource
from tests.k8s.controller_support import ApiServer, kube_for

CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap", True)
PATH = CONFIGMAPS.path(namespace="default")


def configmap(kube: Kube, name: str) -> dict[str, Any]:
    return kube.create(PATH, {"metadata": {"name": name, "namespace": "default"}, "data": {}})


def test_failures_with_the_codes_and_reasons_of_a_real_server(lab: ApiServer):
    kube = kube_for(lab)
    configmap(kube, "c")
    lab.fail_next(2, 500, verb="patch")
    kube.get(CONFIGMAPS.path(namespace="default", name="c"))  # other verbs are not affected
    for _ in range(2):
        with pytest.raises(ApiError) as err:
            kube.patch(CONFIGMAPS.path(namespace="default", name="c"), {"data": {"a": "b"}})
        assert (err.value.status, err.value.reason) == (500, "InternalError")
    kube.patch(CONFIGMAPS.path(namespace="default", name="c"), {"data": {"a": "b"}})

    lab.fail_next(1, 409, verb="patch", path="/configmaps/c")
    with pytest.raises(ApiError) as err:
        kube.patch(CONFIGMAPS.path(namespace="default", name="c"), {"data": {"a": "c"}})
    assert (err.value.status, err.value.reason) == (409, "Conflict")

    lab.fail_next(1, 429, verb="list")
    with pytest.raises(ApiError) as err:
        kube.get(PATH)
    assert (err.value.status, err.value.reason) == (429, "TooManyRequests")
    assert err.value.retry_after == 1.0
    assert "Too many requests" in err.value.message
    assert kube.get(PATH)["items"]


def test_latency(lab: ApiServer):
    kube = kube_for(lab)
    lab.add_latency(0.3, verb="list")
    started = time.monotonic()
    kube.get(PATH)
    assert time.monotonic() - started >= 0.3
    lab.reset_faults()
    started = time.monotonic()
    kube.get(PATH)
    assert time.monotonic() - started < 0.3


def _watch_in_thread(kube: Kube) -> tuple[threading.Thread, list[Any]]:
    """A watch on ConfigMaps in a thread; the list gets its events, then "END" or the error."""
    got: list[Any] = []

    def run() -> None:
        try:
            for event in kube.watch(PATH, query={"timeoutSeconds": 60}):
                got.append(event["type"])
            got.append("END")
        except ApiError as exc:
            got.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, got


def _opened(kube: Kube, got: list[Any], name: str) -> None:
    """Make a change and wait until the watch has seen it (so the stream is surely open)."""
    configmap(kube, name)
    deadline = time.monotonic() + 10
    while "ADDED" not in got[-1:] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert got[-1:] == ["ADDED"], got


def test_closed_watches_end_cleanly_and_reset_connections_are_errors(lab: ApiServer):
    kube = kube_for(lab)
    thread, got = _watch_in_thread(kube)
    _opened(kube, got, "a")
    assert lab.close_watches() >= 1
    thread.join(10)
    assert got[-1] == "END", "a closed watch ends like a server-side timeout: no error"

    thread, got = _watch_in_thread(kube)
    _opened(kube, got, "b")
    assert lab.reset_connections() >= 1
    thread.join(10)
    assert isinstance(got[-1], ApiUnavailableError), got


@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_outage_then_recovery(lab: ApiServer, mode: str):
    kube = kube_for(lab)
    quick = Kube(kube.transport, timeout=(0.5, 0.5))
    lab.outage(1.5, mode)
    time.sleep(0.1)  # the stand-in starts its outage from a timer when asked over HTTP
    started = time.monotonic()
    with pytest.raises(ApiUnavailableError):
        quick.get(PATH)
    assert time.monotonic() - started < 1.4, "failed at once (refuse) or on our timeout (hang)"
    deadline = time.monotonic() + 10
    while True:
        try:
            quick.get(PATH)
            break
        except ApiUnavailableError:
            assert time.monotonic() < deadline, "no recovery after the outage"
            time.sleep(0.1)

"""Fault injection, observed through the official client."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client import ApiException

from lbd.lab.apiserver import LabApiServer
from tests.k8s.conftest import api_client, new_watch

MERGE = "application/merge-patch+json"


@pytest.fixture
def v1(admin_client: client.ApiClient) -> Any:
    return client.CoreV1Api(admin_client)


def _wait_until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_fail_next_matching_requests(lab_api: LabApiServer, v1: Any) -> None:
    v1.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    lab_api.fail_next(2, 500, verb="patch")
    v1.read_namespaced_config_map("c", "default")  # other verbs are not affected
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            v1.patch_namespaced_config_map(
                "c", "default", {"data": {"a": "b"}}, _content_type=MERGE
            )
        assert exc.value.status == 500 and "InternalError" in (exc.value.body or "")
    v1.patch_namespaced_config_map("c", "default", {"data": {"a": "b"}}, _content_type=MERGE)
    assert v1.read_namespaced_config_map("c", "default").data == {"a": "b"}


def test_fail_with_429_carries_retry_after(lab_api: LabApiServer, v1: Any) -> None:
    lab_api.fail_next(1, 429, path="/configmaps")
    with pytest.raises(ApiException) as exc:
        v1.list_namespaced_config_map("default")
    assert exc.value.status == 429
    assert (exc.value.headers or {}).get("Retry-After") == "1"
    v1.list_namespaced_config_map("default")


def test_injected_conflict(lab_api: LabApiServer, v1: Any) -> None:
    v1.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    lab_api.fail_next(1, 409, verb="update")
    cm = v1.read_namespaced_config_map("c", "default")
    with pytest.raises(ApiException) as exc:
        v1.replace_namespaced_config_map("c", "default", cm)
    assert exc.value.status == 409


def test_latency(lab_api: LabApiServer, v1: Any) -> None:
    lab_api.add_latency(0.3, verb="list")
    t0 = time.monotonic()
    v1.list_namespaced_config_map("default")
    assert time.monotonic() - t0 >= 0.3
    lab_api.reset_faults()
    t0 = time.monotonic()
    v1.list_namespaced_config_map("default")
    assert time.monotonic() - t0 < 0.3


def test_close_watches_ends_open_streams(lab_api: LabApiServer, v1: Any) -> None:
    ended = threading.Event()

    def consume() -> None:
        for _ in new_watch().stream(v1.list_namespaced_config_map, "default", timeout_seconds=30):
            pass
        ended.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    _wait_until(lambda: lab_api.store.watcher_count() == 1)
    assert lab_api.close_watches() == 1
    assert ended.wait(5)


def test_outage_refuses_then_recovers(lab_api: LabApiServer, v1: Any) -> None:
    v1.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    lab_api.outage(0.5)
    with pytest.raises(urllib3.exceptions.HTTPError):
        v1.read_namespaced_config_map("c", "default")

    def answers() -> bool:
        try:
            return bool(v1.read_namespaced_config_map("c", "default").metadata.name == "c")
        except urllib3.exceptions.HTTPError:
            return False

    _wait_until(answers)
    assert not lab_api.faults.in_outage()


def test_outage_cuts_open_watches(lab_api: LabApiServer, v1: Any) -> None:
    outcome: list[str] = []

    def consume() -> None:
        try:
            for _ in new_watch().stream(
                v1.list_namespaced_config_map, "default", timeout_seconds=30
            ):
                pass
            outcome.append("ended")
        except Exception as exc:
            outcome.append(type(exc).__name__)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    _wait_until(lambda: lab_api.store.watcher_count() == 1)
    lab_api.outage(0.3)
    t.join(5)
    assert outcome  # the stream did not survive the outage


def test_fault_http_endpoint(lab_api: LabApiServer) -> None:
    api = api_client(lab_api)

    def post(body: dict[str, Any]) -> Any:
        req = api.param_serialize("POST", "/_lab/faults", body=body, auth_settings=["BearerToken"])
        return api.call_api(*req)

    assert post({"action": "fail", "count": 1, "code": 503, "verb": "list"}).status == 200
    v1: Any = client.CoreV1Api(api)
    with pytest.raises(ApiException) as exc:
        v1.list_namespace()
    assert exc.value.status == 503
    assert post({"action": "fail", "count": 1, "code": 500}).status == 200
    assert post({"action": "reset"}).status == 200
    v1.list_namespace()
    assert post({"action": "explode"}).status == 400
    assert post({"action": "fail", "count": 1, "code": 200}).status == 400


def test_server_survives_faults_and_keeps_objects(lab_api: LabApiServer, v1: Any) -> None:
    v1.create_namespaced_config_map("default", {"metadata": {"name": "keep"}})
    lab_api.fail_next(3, 500)
    for _ in range(3):
        with pytest.raises(ApiException):
            v1.list_namespace()
    lab_api.outage(0.2)
    _wait_until(lambda: not lab_api.faults.in_outage())
    fresh: Any = client.CoreV1Api(api_client(lab_api))
    assert fresh.read_namespaced_config_map("keep", "default").metadata.name == "keep"
    assert lab_api.internal_errors == []


def test_hang_outage_stalls_requests_then_serves_them(lab_api: LabApiServer, v1: Any) -> None:
    v1.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    lab_api.outage(0.5, mode="hang")
    with pytest.raises(urllib3.exceptions.HTTPError):  # a client that gives up first
        v1.read_namespaced_config_map("c", "default", _request_timeout=0.2)
    t0 = time.monotonic()
    got = v1.read_namespaced_config_map("c", "default", _request_timeout=5)
    assert got.metadata.name == "c"
    assert time.monotonic() - t0 < 1.0

"""The audit record: who made which kind of call, allowed or denied, seen through the official
client (``server.audit()`` and ``GET /_lab/audit``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from lbd.lab.apiserver import LabApiServer
from lbd.lab.apiserver.audit import AuditLog, AuditRecord
from lbd.lab.apiserver.rbac import Attributes, user_for
from tests.k8s.conftest import api_client, new_watch

SA = "system:serviceaccount:lbd-system:lbd-speaker"

RBAC_YAML = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules:
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [services/status]
  verbs: [patch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, deletecollection]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects:
- {kind: ServiceAccount, name: lbd-speaker, namespace: lbd-system}
"""

Tuple = tuple[str, str, str, str, str, str, bool]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LabApiServer]:
    path = tmp_path / "rbac.yaml"
    path.write_text(RBAC_YAML)
    srv = LabApiServer(rbac_files=[path]).start()
    try:
        admin: Any = client.CoreV1Api(api_client(srv))
        admin.create_namespace({"metadata": {"name": "lbd-system"}})
        for name in ("web", "db"):
            admin.create_namespaced_service(
                "default",
                {
                    "metadata": {"name": name},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                },
            )
        srv.add_token("sa-token", SA)
        srv.add_token("dev-token", "alice")
        yield srv
    finally:
        srv.stop()


def _by_user(records: list[AuditRecord], user: str) -> dict[Tuple, int]:
    """(verb, group, resource, subresource, namespace, path, allowed) -> count, for one user."""
    return {
        (r.verb, r.api_group, r.resource, r.subresource, r.namespace, r.path, r.allowed): r.count
        for r in records
        if r.user == user
    }


def _lab_audit(srv: LabApiServer, method: str, token: str | None = None) -> tuple[int, Any]:
    api = api_client(srv, token)
    try:
        req = api.param_serialize(method, "/_lab/audit", auth_settings=["BearerToken"])
        resp = api.call_api(*req)
        resp.read()  # type: ignore[no-untyped-call]
        return int(resp.status), json.loads(resp.data or b"null")
    finally:
        api.close()  # type: ignore[no-untyped-call]


def test_records_verb_group_resource_subresource_namespace_and_decision(
    server: LabApiServer,
) -> None:
    v1: Any = client.CoreV1Api(api_client(server, "sa-token"))
    v1.list_service_for_all_namespaces()
    v1.list_service_for_all_namespaces()
    v1.read_namespaced_service("web", "default")
    v1.read_namespaced_service("db", "default")  # another name: the same tuple
    v1.patch_namespaced_service_status(
        "web",
        "default",
        {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1"}]}}},
        _content_type="application/merge-patch+json",
    )
    with pytest.raises(ApiException) as exc:
        v1.patch_namespaced_service(
            "web",
            "default",
            {"metadata": {"labels": {"a": "b"}}},
            _content_type="application/merge-patch+json",
        )
    assert exc.value.status == 403
    with pytest.raises(ApiException):
        v1.list_namespaced_pod("lbd-system")
    coord: Any = client.CoordinationV1Api(api_client(server, "sa-token"))
    coord.create_namespaced_lease("lbd-system", {"metadata": {"name": "l"}, "spec": {}})
    coord.delete_collection_namespaced_lease("lbd-system")

    seen = _by_user(server.audit(), SA)
    resource_calls = {k: n for k, n in seen.items() if not k[5]}
    assert resource_calls == {
        ("list", "", "services", "", "", "", True): 2,
        ("get", "", "services", "", "default", "", True): 2,
        ("patch", "", "services", "status", "default", "", True): 1,
        ("patch", "", "services", "", "default", "", False): 1,
        ("list", "", "pods", "", "lbd-system", "", False): 1,
        ("create", "coordination.k8s.io", "leases", "", "lbd-system", "", True): 1,
        ("deletecollection", "coordination.k8s.io", "leases", "", "lbd-system", "", True): 1,
    }


def test_a_watch_is_recorded_as_watch(server: LabApiServer) -> None:
    v1: Any = client.CoreV1Api(api_client(server, "sa-token"))
    w = new_watch()
    events = w.stream(v1.list_service_for_all_namespaces, timeout_seconds=1)
    assert next(events)["type"] == "ADDED"
    w.stop()
    assert _by_user(server.audit(), SA) == {("watch", "", "services", "", "", "", True): 1}


def test_discovery_is_recorded_with_its_path(server: LabApiServer) -> None:
    api: Any = client.CoreV1Api(api_client(server, "dev-token"))
    assert api.get_api_resources().group_version == "v1"
    assert _by_user(server.audit(), "alice") == {("get", "", "", "", "", "/api/v1/", True): 1}


def test_http_endpoint_returns_the_records_to_the_admin_only(server: LabApiServer) -> None:
    v1: Any = client.CoreV1Api(api_client(server, "sa-token"))
    v1.list_service_for_all_namespaces()

    code, body = _lab_audit(server, "GET")
    assert code == 200
    assert body["dropped"] == 0
    records = [AuditRecord.from_json(doc) for doc in body["records"]]
    assert records == server.audit()
    assert _by_user(records, SA) == {("list", "", "services", "", "", "", True): 1}
    assert {r.user for r in records} >= {"admin", SA}  # the admin's set-up calls are there too

    assert _lab_audit(server, "GET", "dev-token")[0] == 403
    assert _lab_audit(server, "DELETE", "dev-token")[0] == 403
    assert _lab_audit(server, "PUT")[0] == 405
    assert _lab_audit(server, "DELETE") == (200, {"ok": True})
    assert _by_user(server.audit(), SA) == {}


def test_memory_is_bounded_by_distinct_tuples() -> None:
    log = AuditLog(max_records=2)
    user = user_for(SA)
    for name in ("a", "b", "c"):
        log.record(user, Attributes("get", "", "services", namespace="default", name=name), True)
    log.record(user, Attributes("list", "", "services"), True)
    log.record(user, Attributes("watch", "", "services"), True)  # a third distinct tuple
    assert [(r.verb, r.count) for r in log.records()] == [("get", 3), ("list", 1)]
    assert log.dropped == 1
    with pytest.raises(ValueError, match="max_records"):
        AuditLog(max_records=0)
    with pytest.raises(ValueError, match="'count'"):
        AuditRecord.from_json({k: v for k, v in log.records()[0].to_json().items() if k != "count"})

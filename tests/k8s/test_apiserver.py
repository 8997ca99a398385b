"""The lab API server through the official client: CRUD, list, selectors, watch, discovery."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from lbd.lab.apiserver import LabApiServer
from tests.k8s.conftest import api_client, new_watch

MERGE = "application/merge-patch+json"


def message(exc: pytest.ExceptionInfo[ApiException]) -> str:
    """The ``message`` of the Status object the server answered with."""
    return str(json.loads(exc.value.body or "{}")["message"])


def reason(exc: pytest.ExceptionInfo[ApiException]) -> str:
    return str(json.loads(exc.value.body or "{}")["reason"])


def _svc(name: str, labels: dict[str, str] | None = None, **spec: object) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], **spec},
    }


def test_default_namespaces_exist(admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    names = {n.metadata.name for n in v1.list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_create_get_update_delete_service(admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    created = v1.create_namespaced_service("default", _svc("web"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.spec.cluster_ip.startswith("198.19.")
    assert created.spec.ports[0].protocol == "TCP" and created.spec.ports[0].node_port
    assert created.spec.ip_families == ["IPv4"]
    assert created.metadata.generation is None  # the Service registry does not track it
    got = v1.read_namespaced_service("web", "default")
    assert got.metadata.resource_version == created.metadata.resource_version
    got.metadata.labels = {"tier": "front"}
    updated = v1.replace_namespaced_service("web", "default", got)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    assert updated.spec.cluster_ip == created.spec.cluster_ip
    v1.delete_namespaced_service("web", "default")
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_service("web", "default")
    assert exc.value.status == 404
    assert message(exc) == 'services "web" not found'


def test_resource_versions_increase_across_resources(admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    a = v1.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    b = v1.create_namespaced_service("default", _svc("b"))
    c = v1.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    rvs = [int(o.metadata.resource_version) for o in (a, b, c)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    listed = v1.list_namespaced_config_map("default")
    assert int(listed.metadata.resource_version) >= rvs[-1]


def test_create_twice_is_already_exists(admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    v1.create_namespaced_service("default", _svc("web"))
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_service("default", _svc("web"))
    assert exc.value.status == 409
    assert reason(exc) == "AlreadyExists"


def test_stale_update_is_conflict(admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    first = v1.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    v1.patch_namespaced_config_map("cm", "default", {"data": {"k": "v"}}, _content_type=MERGE)
    first.data = {"k": "mine"}
    with pytest.raises(ApiException) as exc:
        v1.replace_namespaced_config_map("cm", "default", first)
    assert exc.value.status == 409
    assert "the object has been modified" in message(exc)


def test_generate_name(admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    a = v1.create_namespaced_config_map("default", {"metadata": {"generateName": "x-"}})
    b = v1.create_namespaced_config_map("default", {"metadata": {"generateName": "x-"}})
    assert a.metadata.name.startswith("x-") and len(a.metadata.name) == 7
    assert a.metadata.name != b.metadata.name


def test_create_in_missing_namespace_is_not_found(admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_service("nope", _svc("web"))
    assert exc.value.status == 404
    assert message(exc) == 'namespaces "nope" not found'


def test_label_and_field_selectors(admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    v1.create_namespace({"metadata": {"name": "other"}})
    v1.create_namespaced_service("default", _svc("a", {"app": "echo", "tier": "x"}))
    v1.create_namespaced_service("default", _svc("b", {"app": "web"}))
    v1.create_namespaced_service("other", _svc("c", {"app": "echo"}, type="ClusterIP"))

    def names(**kw: str) -> list[str]:
        return sorted(s.metadata.name for s in v1.list_service_for_all_namespaces(**kw).items)

    assert names(label_selector="app=echo") == ["a", "c"]
    assert names(label_selector="app in (echo,web),tier") == ["a"]
    # default/kubernetes (the API server's own Service, as on any cluster) has no app label
    assert names(label_selector="app!=echo") == ["b", "kubernetes"]
    assert names(label_selector="!tier") == ["b", "c", "kubernetes"]
    assert names(field_selector="metadata.namespace=other") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="spec.type=ClusterIP") == ["c", "kubernetes"]
    assert names(field_selector="metadata.namespace!=other", label_selector="app=echo") == ["a"]
    with pytest.raises(ApiException) as exc:
        names(field_selector="spec.bogus=1")
    assert exc.value.status == 400 and "field label not supported" in message(exc)


def test_list_with_limit_and_continue(admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    for i in range(5):
        v1.create_namespaced_config_map("default", {"metadata": {"name": f"cm{i}"}})
    first = v1.list_namespaced_config_map("default", limit=2)
    assert [c.metadata.name for c in first.items] == ["cm0", "cm1"]
    assert first.metadata.remaining_item_count == 3
    rest = v1.list_namespaced_config_map("default", limit=10, _continue=first.metadata._continue)
    assert [c.metadata.name for c in rest.items] == ["cm2", "cm3", "cm4"]
    assert rest.metadata._continue is None


def test_watch_from_resource_version_sees_changes_in_order(
    admin_client: client.ApiClient,
) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    start = v1.list_namespaced_service("default").metadata.resource_version
    v1.create_namespaced_service("default", _svc("web"))
    v1.patch_namespaced_service_status(
        "web",
        "default",
        {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1"}]}}},
        _content_type=MERGE,
    )
    v1.delete_namespaced_service("web", "default")
    events = [
        (e["type"], e["object"].metadata.name)
        for e in new_watch().stream(
            v1.list_namespaced_service, "default", resource_version=start, timeout_seconds=1
        )
    ]
    assert events == [("ADDED", "web"), ("MODIFIED", "web"), ("DELETED", "web")]


def test_watch_without_version_starts_with_current_objects(
    admin_client: client.ApiClient,
) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    events = list(new_watch().stream(v1.list_namespaced_config_map, "default", timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "a")]


def test_watch_delivers_live_events_with_label_selector(
    admin_client: client.ApiClient,
) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    seen: list[tuple[str, str]] = []
    w = new_watch()
    rv = v1.list_namespaced_service("default").metadata.resource_version

    def consume() -> None:
        for e in w.stream(
            v1.list_namespaced_service,
            "default",
            resource_version=rv,
            label_selector="app=echo",
            timeout_seconds=5,
        ):
            seen.append((e["type"], e["object"].metadata.name))
            if len(seen) == 3:
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    v1.create_namespaced_service("default", _svc("other", {"app": "web"}))
    v1.create_namespaced_service("default", _svc("a", {"app": "echo"}))
    # relabelling out of the selector is a DELETED for this watcher, back in is ADDED
    v1.patch_namespaced_service(
        "a", "default", {"metadata": {"labels": {"app": "x"}}}, _content_type=MERGE
    )
    v1.patch_namespaced_service(
        "a", "default", {"metadata": {"labels": {"app": "echo"}}}, _content_type=MERGE
    )
    t.join(timeout=10)
    assert seen == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "a")]


def test_watch_bookmarks(lab_api: LabApiServer, admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    rv = v1.create_namespaced_config_map("default", {"metadata": {"name": "a"}}).metadata
    w = new_watch()
    bookmarks = []
    for e in w.stream(
        v1.list_namespaced_config_map,
        "default",
        resource_version=rv.resource_version,
        allow_watch_bookmarks=True,
        timeout_seconds=2,
    ):
        if e["type"] == "BOOKMARK":
            bookmarks.append(e["raw_object"]["metadata"]["resourceVersion"])
            w.stop()
    assert bookmarks and int(bookmarks[0]) >= int(rv.resource_version)


def test_watch_too_old_version_is_410_gone() -> None:
    server = LabApiServer(history_size=5).start()
    try:
        with api_client(server) as api:
            v1: Any = client.CoreV1Api(api)
            start = v1.list_namespaced_config_map("default").metadata.resource_version
            for i in range(10):
                v1.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
            with pytest.raises(ApiException) as exc:
                list(
                    new_watch().stream(
                        v1.list_namespaced_config_map,
                        "default",
                        resource_version=start,
                        timeout_seconds=1,
                    )
                )
            assert exc.value.status == 410
            assert "too old resource version" in str(exc.value.reason)
    finally:
        server.stop()


def test_watch_timeout_seconds_ends_the_stream(admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    t0 = time.monotonic()
    resp = v1.list_namespaced_config_map(
        "default", watch=True, timeout_seconds=1, _preload_content=False
    )
    resp.read()
    resp.release_conn()
    assert 0.9 <= time.monotonic() - t0 < 3


def test_discovery_documents(admin_client: client.ApiClient) -> None:
    groups: dict[str, Any] = {
        g.name: g for g in client.ApisApi(admin_client).get_api_versions().groups
    }
    for group in (
        "discovery.k8s.io",
        "coordination.k8s.io",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "events.k8s.io",
    ):
        assert groups[group].preferred_version.version == "v1"
    core: Any = client.CoreV1Api(admin_client).get_api_resources()
    by_name = {r.name: r for r in core.resources}
    assert by_name["services"].namespaced and by_name["services"].kind == "Service"
    assert "services/status" in by_name and not by_name["nodes"].namespaced
    leases: Any = client.CoordinationV1Api(admin_client).get_api_resources()
    assert [r.name for r in leases.resources] == ["leases"]
    version: Any = client.VersionApi(admin_client)
    assert version.get_code().major == "1"


def test_nodes_and_status(admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    v1.create_node({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}})
    v1.patch_node_status(
        "n1",
        {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        _content_type=MERGE,
    )
    node = v1.read_node("n1")
    assert node.status.conditions[0].type == "Ready"
    assert [
        n.metadata.name for n in v1.list_node(label_selector="kubernetes.io/hostname=n1").items
    ] == ["n1"]


def test_endpointslices_and_leases(admin_client: client.ApiClient) -> None:
    disc: Any = client.DiscoveryV1Api(admin_client)
    disc.create_namespaced_endpoint_slice(
        "default",
        {
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["198.18.0.11"], "nodeName": "n1"}],
            "ports": [{"port": 9000}],
        },
    )
    slices = disc.list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name=web"
    )
    assert slices.items[0].endpoints[0].node_name == "n1"
    coord: Any = client.CoordinationV1Api(admin_client)
    lease = coord.create_namespaced_lease(
        "kube-system",
        {"metadata": {"name": "lbd"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}},
    )
    lease.spec.holder_identity = "b"
    coord.replace_namespaced_lease("lbd", "kube-system", lease)
    assert coord.read_namespaced_lease("lbd", "kube-system").spec.holder_identity == "b"
    lease.spec.holder_identity = "c"  # stale resourceVersion: another candidate won
    with pytest.raises(ApiException) as exc:
        coord.replace_namespaced_lease("lbd", "kube-system", lease)
    assert exc.value.status == 409


def test_events(admin_client: client.ApiClient) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    v1.create_namespaced_event(
        "default",
        {
            "metadata": {"generateName": "web."},
            "involvedObject": {"kind": "Service", "name": "web", "namespace": "default"},
            "reason": "IPAllocated",
            "message": "Assigned IP 198.18.100.1",
            "type": "Normal",
        },
    )
    evs = v1.list_namespaced_event(
        "default", field_selector="involvedObject.name=web,reason=IPAllocated"
    )
    assert [e.message for e in evs.items] == ["Assigned IP 198.18.100.1"]
    events_v1: Any = client.EventsV1Api(admin_client)
    ev2 = events_v1.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "x"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "lbd.io/controller",
            "reportingInstance": "c1",
            "action": "Allocate",
            "reason": "IPAllocated",
            "type": "Normal",
            "regarding": {"kind": "Service", "name": "web", "namespace": "default"},
        },
    )
    assert ev2.metadata.name == "x"

"""Write semantics through the official client: patches, status subresource, finalizers."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from tests.k8s.conftest import new_watch

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@pytest.fixture
def v1(admin_client: client.ApiClient) -> Any:
    return client.CoreV1Api(admin_client)


def _svc(v1: Any, name: str = "web", **spec: Any) -> Any:
    body = {
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "name": "http"}], **spec},
    }
    return v1.create_namespaced_service("default", body)


def test_merge_patch_sets_and_removes_fields(v1: Any) -> None:
    _svc(v1)
    v1.patch_namespaced_service(
        "web", "default", {"metadata": {"annotations": {"a": "1", "b": "2"}}}, _content_type=MERGE
    )
    svc = v1.patch_namespaced_service(
        "web", "default", {"metadata": {"annotations": {"a": None}}}, _content_type=MERGE
    )
    assert svc.metadata.annotations == {"b": "2"}


def test_strategic_merge_patch_merges_ports_by_port_and_conditions_by_type(v1: Any) -> None:
    _svc(v1)
    svc = v1.patch_namespaced_service(
        "web",
        "default",
        {"spec": {"ports": [{"port": 443, "name": "https"}]}},
        _content_type=STRATEGIC,
    )
    assert sorted(p.port for p in svc.spec.ports) == [80, 443]
    svc = v1.patch_namespaced_service(
        "web",
        "default",
        {"spec": {"ports": [{"port": 80, "$patch": "delete"}]}},
        _content_type=STRATEGIC,
    )
    assert [p.port for p in svc.spec.ports] == [443]
    # a merge patch replaces the whole list instead
    svc = v1.patch_namespaced_service(
        "web", "default", {"spec": {"ports": [{"port": 8080}]}}, _content_type=MERGE
    )
    assert [p.port for p in svc.spec.ports] == [8080]
    cond = {"lastTransitionTime": "2026-01-01T00:00:00Z", "message": "", "reason": "R"}
    v1.patch_namespaced_service_status(
        "web",
        "default",
        {"status": {"conditions": [{"type": "A", "status": "True", **cond}]}},
        _content_type=STRATEGIC,
    )
    svc = v1.patch_namespaced_service_status(
        "web",
        "default",
        {"status": {"conditions": [{"type": "B", "status": "False", **cond}]}},
        _content_type=STRATEGIC,
    )
    assert [(c.type, c.status) for c in svc.status.conditions] == [("A", "True"), ("B", "False")]


def test_strategic_merge_patch_replaces_ingress_list(v1: Any) -> None:
    _svc(v1)
    for ips in (["198.18.100.1", "198.18.100.2"], ["198.18.100.3"]):
        svc = v1.patch_namespaced_service_status(
            "web",
            "default",
            {"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}},
            _content_type=STRATEGIC,
        )
    assert [i.ip for i in svc.status.load_balancer.ingress] == ["198.18.100.3"]


def test_strategic_merge_patch_finalizers_are_a_set(v1: Any) -> None:
    v1.create_namespaced_config_map("default", {"metadata": {"name": "c", "finalizers": ["a"]}})
    cm = v1.patch_namespaced_config_map(
        "c", "default", {"metadata": {"finalizers": ["b", "a"]}}, _content_type=STRATEGIC
    )
    assert cm.metadata.finalizers == ["a", "b"]
    cm = v1.patch_namespaced_config_map(
        "c",
        "default",
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
        _content_type=STRATEGIC,
    )
    assert cm.metadata.finalizers == ["b"]


def test_json_patch_with_test_op(v1: Any) -> None:
    v1.create_namespaced_config_map("default", {"metadata": {"name": "c"}, "data": {"k": "1"}})
    cm = v1.patch_namespaced_config_map(
        "c",
        "default",
        [
            {"op": "test", "path": "/data/k", "value": "1"},
            {"op": "replace", "path": "/data/k", "value": "2"},
            {"op": "add", "path": "/data/new~1key", "value": "x"},
        ],
    )
    assert cm.data == {"k": "2", "new/key": "x"}
    with pytest.raises(ApiException) as exc:
        v1.patch_namespaced_config_map(
            "c",
            "default",
            [
                {"op": "test", "path": "/data/k", "value": "1"},
                {"op": "remove", "path": "/data/k"},
            ],
        )
    assert exc.value.status == 422
    assert v1.read_namespaced_config_map("c", "default").data["k"] == "2"


def test_dict_patch_without_content_type_is_strategic(v1: Any) -> None:
    """The client sends a dict patch as a strategic merge patch: ports merge by port."""
    _svc(v1)
    patch = {"spec": {"ports": [{"port": 443, "name": "https"}]}}
    svc = v1.patch_namespaced_service("web", "default", patch)
    assert sorted(p.port for p in svc.spec.ports) == [80, 443]


def test_patch_with_stale_resource_version_conflicts(v1: Any) -> None:
    svc = _svc(v1)
    v1.patch_namespaced_service(
        "web", "default", {"metadata": {"labels": {"a": "1"}}}, _content_type=MERGE
    )
    with pytest.raises(ApiException) as exc:
        v1.patch_namespaced_service(
            "web",
            "default",
            {"metadata": {"labels": {"a": "2"}, "resourceVersion": svc.metadata.resource_version}},
            _content_type=MERGE,
        )
    assert exc.value.status == 409


def test_status_write_ignores_spec_and_main_write_ignores_status(v1: Any) -> None:
    _svc(v1)
    svc = v1.patch_namespaced_service_status(
        "web",
        "default",
        {
            "metadata": {"labels": {"sneaky": "1"}},
            "spec": {"type": "ClusterIP"},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1"}]}},
        },
        _content_type=MERGE,
    )
    assert svc.spec.type == "LoadBalancer" and not svc.metadata.labels
    assert svc.status.load_balancer.ingress[0].ip == "198.18.100.1"
    svc = v1.patch_namespaced_service(
        "web",
        "default",
        {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.9"}]}}},
        _content_type=MERGE,
    )
    assert svc.status.load_balancer.ingress[0].ip == "198.18.100.1"
    svc.status.load_balancer.ingress[0].ip = "198.18.100.7"
    svc.spec.ports[0].port = 81
    replaced = v1.replace_namespaced_service("web", "default", svc)
    assert replaced.spec.ports[0].port == 81
    assert replaced.status.load_balancer.ingress[0].ip == "198.18.100.1"


def test_create_resets_service_status(v1: Any) -> None:
    body = {
        "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1"}]}},
    }
    svc = v1.create_namespaced_service("default", body)
    assert not svc.status.load_balancer.ingress


def test_noop_write_keeps_resource_version_and_sends_no_event(v1: Any) -> None:
    svc = _svc(v1)
    same = v1.patch_namespaced_service(
        "web", "default", {"spec": {"type": "LoadBalancer"}}, _content_type=MERGE
    )
    assert same.metadata.resource_version == svc.metadata.resource_version
    events = list(
        new_watch().stream(
            v1.list_namespaced_service,
            "default",
            resource_version=svc.metadata.resource_version,
            timeout_seconds=1,
        )
    )
    assert events == []


def test_delete_with_finalizers_sets_deletion_timestamp_until_removed(v1: Any) -> None:
    v1.create_namespaced_config_map(
        "default", {"metadata": {"name": "c", "finalizers": ["lbd.io/x"]}}
    )
    v1.delete_namespaced_config_map("c", "default")
    cm = v1.read_namespaced_config_map("c", "default")
    assert cm.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as exc:
        v1.patch_namespaced_config_map(
            "c", "default", {"metadata": {"finalizers": ["lbd.io/x", "y"]}}, _content_type=MERGE
        )
    assert exc.value.status == 422
    v1.patch_namespaced_config_map(
        "c", "default", {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_config_map("c", "default")
    assert exc.value.status == 404


def test_delete_precondition_on_uid(v1: Any) -> None:
    v1.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    with pytest.raises(ApiException) as exc:
        v1.delete_namespaced_config_map(
            "c", "default", body={"preconditions": {"uid": "not-the-uid"}}
        )
    assert exc.value.status == 409


def _gone(v1: Any, namespace: str, timeout: float = 10.0) -> int:
    """Wait until ``namespace`` is gone (as the namespace controller removes it, a moment after
    the delete); the status of the last read."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v1.read_namespace(namespace)
        except ApiException as exc:
            return int(exc.status)
        if time.monotonic() > deadline:
            return 200
        time.sleep(0.05)


def test_deleting_a_namespace_deletes_its_objects(v1: Any) -> None:
    v1.create_namespace({"metadata": {"name": "gone"}})
    v1.create_namespaced_config_map("gone", {"metadata": {"name": "c"}})
    _svc_in = {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    v1.create_namespaced_service("gone", _svc_in)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "kept"}})
    v1.delete_namespace("gone")
    # Terminating first, its objects still there (kubectl delete -k deletes them itself), as on
    # kube-apiserver; then the content and the namespace go
    assert v1.read_namespace("gone").status.phase == "Terminating"
    assert [c.metadata.name for c in v1.list_namespaced_config_map("gone").items] == ["c"]
    assert _gone(v1, "gone") == 404
    assert v1.list_namespaced_config_map("gone").items == []
    assert v1.list_namespaced_service("gone").items == []
    assert v1.read_namespaced_config_map("kept", "default").metadata.name == "kept"


def test_namespace_with_finalized_object_stays_terminating(v1: Any) -> None:
    v1.create_namespace({"metadata": {"name": "slow"}})
    v1.create_namespaced_config_map("slow", {"metadata": {"name": "c", "finalizers": ["x"]}})
    v1.delete_namespace("slow")
    assert v1.read_namespace("slow").status.phase == "Terminating"
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_config_map("slow", {"metadata": {"name": "new"}})
    assert exc.value.status == 403
    # the namespace controller's turn: c is deleted, and waits for its finalizer "x"
    deadline = time.monotonic() + 10
    while not v1.read_namespaced_config_map("c", "slow").metadata.deletion_timestamp:
        assert time.monotonic() < deadline, "c was never deleted"
        time.sleep(0.05)
    assert v1.read_namespace("slow").status.phase == "Terminating"
    v1.patch_namespaced_config_map(
        "c", "slow", {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    assert _gone(v1, "slow") == 404


def test_secret_string_data_and_dry_run(v1: Any) -> None:
    s = v1.create_namespaced_secret(
        "default", {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
    )
    assert s.data == {"k": "dg=="} and s.type == "Opaque"
    v1.create_namespaced_config_map("default", {"metadata": {"name": "dry"}}, dry_run="All")
    with pytest.raises(ApiException):
        v1.read_namespaced_config_map("dry", "default")


def test_service_validation_names_the_field(v1: Any) -> None:
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_service(
            "default",
            {"metadata": {"name": "Bad_Name"}, "spec": {"ports": [{"port": 70000}]}},
        )
    assert exc.value.status == 422
    status = json.loads(exc.value.body or "{}")
    fields = {c["field"] for c in status["details"]["causes"]}
    assert fields == {"metadata.name", "spec.ports[0].port"}
    assert status["reason"] == "Invalid"


def test_dual_stack_service_gets_two_families(v1: Any) -> None:
    svc = _svc(v1, ipFamilyPolicy="PreferDualStack")
    assert svc.spec.ip_families == ["IPv4", "IPv6"]
    assert len(svc.spec.cluster_ips) == 2 and ":" in svc.spec.cluster_ips[1]


def test_deleting_an_owner_collects_its_dependents(v1: Any) -> None:
    svc = _svc(v1)
    other = _svc(v1, "other")

    def ref(owner: Any) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "name": owner.metadata.name,
            "uid": owner.metadata.uid,
        }

    def cm(name: str, *owners: Any, finalizers: tuple[str, ...] = ()) -> None:
        meta = {"name": name, "ownerReferences": [ref(o) for o in owners]}
        if finalizers:
            meta["finalizers"] = list(finalizers)
        v1.create_namespaced_config_map("default", {"metadata": meta})

    cm("only-web", svc)
    cm("two-owners", svc, other)
    cm("held", svc, finalizers=("x",))
    v1.delete_namespaced_service("web", "default")
    names = {c.metadata.name for c in v1.list_namespaced_config_map("default").items}
    assert names == {"two-owners", "held"}
    assert v1.read_namespaced_config_map("held", "default").metadata.deletion_timestamp
    v1.delete_namespaced_service("other", "default")
    names = {c.metadata.name for c in v1.list_namespaced_config_map("default").items}
    assert names == {"held"}


def test_leaving_type_load_balancer_clears_ingress_and_node_ports(v1: Any) -> None:
    _svc(v1)
    v1.patch_namespaced_service_status(
        "web",
        "default",
        {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1"}]}}},
        _content_type=MERGE,
    )
    svc = v1.patch_namespaced_service(
        "web", "default", {"spec": {"type": "ClusterIP"}}, _content_type=MERGE
    )
    assert svc.spec.type == "ClusterIP"
    assert not svc.status.load_balancer.ingress
    assert svc.spec.ports[0].node_port is None
    assert svc.spec.external_traffic_policy is None
    assert svc.spec.cluster_ip.startswith("198.19.")


def test_ingress_ip_reads_back_with_ip_mode_vip(v1: Any) -> None:
    """LoadBalancerIPMode is GA: a real server defaults ipMode, so reads differ from writes."""
    _svc(v1)
    svc = v1.patch_namespaced_service_status(
        "web",
        "default",
        {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1"}]}}},
        _content_type=MERGE,
    )
    assert svc.status.load_balancer.ingress[0].ip_mode == "VIP"
    with pytest.raises(ApiException) as exc:
        v1.patch_namespaced_service_status(
            "web",
            "default",
            {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1", "ipMode": "X"}]}}},
            _content_type=MERGE,
        )
    assert exc.value.status == 422

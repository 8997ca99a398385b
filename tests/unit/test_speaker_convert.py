"""Kubernetes dicts -> election inputs, on literal objects as the API server sends them."""

from __future__ import annotations

from typing import Any

import pytest

from lbd.core.election import Ineligible, decide, eligibility
from lbd.core.model import Advertisement
from lbd.k8s.speaker_convert import (
    ConversionError,
    EndpointSummary,
    class_matches,
    endpoint_usable,
    is_announceable,
    node_internal_ip,
    node_view,
    peers_from_nodes,
    service_pool,
    service_view,
    service_vips,
    slice_service_key,
    summarize_endpoints,
)


def node(
    name: str,
    *,
    ready: str | None = "True",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
    net_unavailable: str | None = None,
    ips: tuple[str, ...] = ("198.18.0.11",),
) -> dict[str, Any]:
    conditions = []
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    if net_unavailable is not None:
        conditions.append({"type": "NetworkUnavailable", "status": net_unavailable})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"taints": taints or []},
        "status": {
            "conditions": conditions,
            "addresses": [{"type": "Hostname", "address": name}]
            + [{"type": "InternalIP", "address": ip} for ip in ips],
        },
    }


def service(
    name: str = "web",
    *,
    ips: tuple[str, ...] = ("198.18.100.7",),
    svc_type: str = "LoadBalancer",
    lb_class: str | None = None,
    etp: str | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": svc_type}
    if lb_class is not None:
        spec["loadBalancerClass"] = lb_class
    if etp is not None:
        spec["externalTrafficPolicy"] = etp
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": "u-1",
            "labels": labels or {},
            "annotations": annotations
            if annotations is not None
            else {"lbd.io/ip-allocated-from-pool": "default"},
        },
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ips]}},
    }


def endpoint_slice(
    svc: str, endpoints: list[tuple[str | None, dict[str, Any]]], ns: str = "ns"
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc}-abc",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.0.0.1"], "nodeName": n, "conditions": c} if n else {"conditions": c}
            for n, c in endpoints
        ],
    }


UP = frozenset({"eth0"})


# --- Nodes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ready", "expected"),
    [("True", True), ("False", False), ("Unknown", None), (None, None)],
    ids=["ready", "not ready", "unknown stays eligible", "no condition yet"],
)
def test_node_ready_condition(ready: str | None, expected: bool | None) -> None:
    assert node_view(node("n1", ready=ready), alive=True, interfaces_up=UP).ready is expected


def test_node_view_carries_taints_labels_drain_and_heartbeat_facts() -> None:
    obj = node(
        "n1",
        labels={"zone": "a"},
        annotations={"lbd.io/drain": "true"},
        taints=[{"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}],
        net_unavailable="True",
    )
    view = node_view(obj, alive=False, interfaces_up=UP)
    assert view.name == "n1"
    assert dict(view.labels) == {"zone": "a"}
    assert view.taint_keys == {"node.kubernetes.io/out-of-service"}
    assert view.drain and view.network_unavailable
    assert not view.alive and view.interfaces_up == UP
    hash(view)  # usable as a value (frozen, hashable labels)


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        (
            node("n1", labels={"node.kubernetes.io/exclude-from-external-load-balancers": ""}),
            Ineligible.EXCLUDED_LABEL,
        ),
        (node("n1", ready="False"), Ineligible.NOT_READY),
        (node("n1", annotations={"lbd.io/drain": "true"}), Ineligible.DRAINED),
        (node("n1", net_unavailable="True"), Ineligible.NETWORK_UNAVAILABLE),
        (node("n1", ready="Unknown"), None),
        (node("n1", annotations={"lbd.io/drain": "false"}), None),
    ],
    ids=["exclusion label", "Ready=False", "drained", "network unavailable", "Unknown", "undrain"],
)
def test_converted_node_drives_eligibility(obj: dict[str, Any], why: Ineligible | None) -> None:
    svc = service_view(service(), endpoints=EndpointSummary(True, frozenset({"n1"})))
    ads = [Advertisement(name="l2")]
    assert eligibility(node_view(obj, alive=True, interfaces_up=UP), svc, ads) == why


def test_node_without_name_is_a_clear_error() -> None:
    with pytest.raises(ConversionError, match=r"metadata\.name"):
        node_view({"metadata": {}}, alive=True, interfaces_up=UP)


def test_internal_ip_by_family_and_peers_skip_self() -> None:
    dual = node("n2", ips=("2001:db8:18::12", "198.18.0.12"))
    assert node_internal_ip(dual) == "2001:db8:18::12"
    assert node_internal_ip(dual, family=4) == "198.18.0.12"
    v6only = node("n4", ips=("2001:db8:18::14",))
    nodes = [node("n1", ips=("198.18.0.11",)), dual, node("n3", ips=()), v6only]
    # heartbeats go over IPv4 when the node has it; a node without an address gets none
    assert peers_from_nodes(nodes, self_name="n1") == {
        "n2": "198.18.0.12",
        "n4": "2001:db8:18::14",
    }


# --- Services --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("svc_class", "flag", "handled"),
    [
        (None, None, True),
        ("", None, True),
        ("other.io/lb", None, False),
        ("lbd.io/lb", "lbd.io/lb", True),
        (None, "lbd.io/lb", False),
        ("other.io/lb", "lbd.io/lb", False),
    ],
    ids=[
        "no class, no flag",
        "empty class, no flag",
        "foreign class, no flag",
        "our class",
        "no class with flag",
        "foreign class with flag",
    ],
)
def test_lb_class_rule(svc_class: str | None, flag: str | None, handled: bool) -> None:
    assert class_matches(service(lb_class=svc_class), flag) is handled


def test_only_load_balancer_services_are_announceable() -> None:
    assert is_announceable(service(), None)
    assert not is_announceable(service(svc_type="ClusterIP"), None)


def test_vips_are_canonical_deduplicated_and_keep_order() -> None:
    svc = service(ips=("2001:DB8:18:0::100:7", "198.18.100.7", "198.18.100.7"))
    svc["status"]["loadBalancer"]["ingress"].append({"hostname": "lb.example"})
    assert service_vips(svc) == ("2001:db8:18::100:7", "198.18.100.7")


def test_bad_vip_names_the_field() -> None:
    with pytest.raises(ConversionError, match=r"ingress\[0\]\.ip: not an IP address"):
        service_vips(service(ips=("not-an-ip",)))


@pytest.mark.parametrize(
    ("annotations", "pool"),
    [
        ({"lbd.io/ip-allocated-from-pool": "a", "metallb.io/ip-allocated-from-pool": "b"}, "a"),
        ({"metallb.universe.tf/ip-allocated-from-pool": "old"}, "old"),
        ({}, None),
    ],
    ids=["lbd.io wins", "metallb spelling read", "not recorded"],
)
def test_pool_annotation(annotations: dict[str, str], pool: str | None) -> None:
    assert service_pool(service(annotations=annotations)) == pool


def test_service_view_fields() -> None:
    svc = service(etp="Local", labels={"app": "echo"})
    view = service_view(
        svc,
        endpoints=EndpointSummary(True, frozenset({"n2"})),
        pool_labels={"tier": "gold"},
    )
    assert view.key == "ns/web"
    assert view.vips == ("198.18.100.7",)
    assert view.pool == "default"
    assert dict(view.pool_labels) == {"tier": "gold"}
    assert dict(view.labels) == {"app": "echo"}
    assert view.traffic_policy_local
    assert view.ready_endpoint_nodes == {"n2"} and view.has_endpoints


def test_service_without_vip_cannot_be_viewed() -> None:
    with pytest.raises(ConversionError, match="no IP assigned"):
        service_view(service(ips=()), endpoints=EndpointSummary(True, frozenset()))


# --- EndpointSlices --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "usable"),
    [
        ({}, True),
        ({"ready": True}, True),
        ({"ready": False}, False),
        ({"ready": False, "serving": True, "terminating": True}, True),
        ({"ready": False, "serving": False}, False),
    ],
    ids=["unset means ready", "ready", "not ready", "serving while terminating", "neither"],
)
def test_endpoint_conditions(conditions: dict[str, Any], usable: bool) -> None:
    assert endpoint_usable({"conditions": conditions}) is usable


def test_slices_merge_into_nodes_with_usable_endpoints() -> None:
    slices = [
        endpoint_slice("web", [("n1", {"ready": True}), ("n2", {"ready": False})]),
        endpoint_slice("web", [("n3", {"ready": False, "serving": True}), (None, {})]),
    ]
    assert slice_service_key(slices[0]) == "ns/web"
    summary = summarize_endpoints(slices)
    assert summary == EndpointSummary(True, frozenset({"n1", "n3"}))
    assert summarize_endpoints([endpoint_slice("web", [("n2", {"ready": False})])]) == (
        EndpointSummary(False, frozenset())
    )


def test_no_endpoints_means_nobody_owns() -> None:
    nodes = [node_view(node(n), alive=True, interfaces_up=UP) for n in ("n1", "n2")]
    svc = service_view(service(), endpoints=summarize_endpoints([]))
    decision = decide(svc, nodes, [Advertisement(name="l2")])
    assert decision.owner is None
    assert set(decision.reasons.values()) == {Ineligible.NO_ENDPOINTS}

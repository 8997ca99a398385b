"""Kubernetes objects (plain dicts) -> the speaker's election inputs.

The speaker's informers hold objects as the JSON dicts the API server sends (camelCase keys).
This module turns them into the frozen values :mod:`lbd.core.election` decides on
(:class:`~lbd.core.election.NodeView`, :class:`~lbd.core.election.ServiceView`) and answers the
few questions the wiring asks about raw objects (is this Service ours? which VIPs does it hold?
which address do I send heartbeats to?). It does no I/O and never imports ``kubernetes``, so
every rule here is unit-tested on literal dicts.

Design decisions:

- Facts about a Node that come from Kubernetes (labels, taints, conditions, the drain
  annotation) are converted here; facts that come from heartbeats (``alive``, ``interfaces_up``)
  are passed in by the caller, because the two sources change independently and the speaker must
  keep deciding from its last Kubernetes view while the API server is away.
- ``Ready=Unknown`` is ``None``, not ``False``: the kubelet may be cut off from the API server while
  the node forwards traffic fine; heartbeats decide liveness (SPEAKER.md).
- EndpointSlice conditions follow the discovery/v1 contract: a missing ``ready`` means ready, and
  a missing ``serving`` takes the value of ``ready``. An endpoint counts when it is ready, or
  serving while terminating (kube-proxy falls back to those for ``externalTrafficPolicy: Local``,
  so announcing from their nodes keeps connections draining instead of black-holing them).
- The MetalLB spellings of the pool annotation are read too (``lbd.io`` wins), so Services
  migrated from MetalLB are announced without an edit (API.md).
- A malformed field raises :class:`ConversionError` naming the field path; the caller logs and
  skips that one object instead of stopping the speaker.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lbd.core.election import DRAIN_ANNOTATION, Labels, NodeView, ServiceView
from lbd.core.model import Advertisement

POOL_ANNOTATIONS: tuple[str, ...] = (
    "lbd.io/ip-allocated-from-pool",
    "metallb.io/ip-allocated-from-pool",
    "metallb.universe.tf/ip-allocated-from-pool",
)
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Obj = Mapping[str, Any]


class ConversionError(ValueError):
    """A Kubernetes object has a field the speaker cannot use."""

    def __init__(self, obj_key: str, field: str, reason: str) -> None:
        super().__init__(f"{obj_key}: {field}: {reason}")
        self.obj_key = obj_key
        self.field = field
        self.reason = reason


def _meta(obj: Obj) -> Mapping[str, Any]:
    meta = obj.get("metadata") or {}
    return meta if isinstance(meta, Mapping) else {}


def object_key(obj: Obj) -> str:
    """``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones."""
    meta = _meta(obj)
    ns = meta.get("namespace")
    name = str(meta.get("name", ""))
    return f"{ns}/{name}" if ns else name


def _str_map(obj: Obj, value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConversionError(object_key(obj), field, "must be a map of strings")
    return {str(k): str(v) for k, v in value.items()}


def labels_of(obj: Obj) -> dict[str, str]:
    return _str_map(obj, _meta(obj).get("labels"), "metadata.labels")


def annotations_of(obj: Obj) -> dict[str, str]:
    return _str_map(obj, _meta(obj).get("annotations"), "metadata.annotations")


# --- Nodes -----------------------------------------------------------------------------------


def _condition(node: Obj, type_: str) -> str | None:
    """The ``status`` string ("True"/"False"/"Unknown") of a Node condition, None if absent."""
    for cond in (node.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return str(cond.get("status"))
    return None


def node_view(node: Obj, *, alive: bool, interfaces_up: frozenset[str]) -> NodeView:
    """The election's view of one Node; ``alive``/``interfaces_up`` come from membership."""
    name = str(_meta(node).get("name") or "")
    if not name:
        raise ConversionError("<node>", "metadata.name", "missing")
    taints = (node.get("spec") or {}).get("taints") or []
    if not isinstance(taints, list):
        raise ConversionError(name, "spec.taints", "must be a list")
    ready = _condition(node, "Ready")
    drain = annotations_of(node).get(DRAIN_ANNOTATION, "").strip().lower() == "true"
    return NodeView(
        name=name,
        labels=freeze_labels(labels_of(node)),
        taint_keys=frozenset(str(t.get("key")) for t in taints if isinstance(t, Mapping)),
        ready=None if ready in (None, "Unknown") else ready == "True",
        network_unavailable=_condition(node, "NetworkUnavailable") == "True",
        drain=drain,
        alive=alive,
        interfaces_up=interfaces_up,
    )


def freeze_labels(labels: Mapping[str, str]) -> Labels:
    """Labels in the hashable form :class:`NodeView`/:class:`ServiceView` hold."""
    return Labels(labels)


def node_internal_ip(node: Obj, *, family: int | None = None) -> str | None:
    """The Node's first ``InternalIP`` (of ``family`` 4 or 6 when given): its heartbeat address."""
    for addr in (node.get("status") or {}).get("addresses") or []:
        if not isinstance(addr, Mapping) or addr.get("type") != "InternalIP":
            continue
        try:
            ip = ipaddress.ip_address(str(addr.get("address", "")))
        except ValueError:
            continue
        if family is None or ip.version == family:
            return str(ip)
    return None


def peers_from_nodes(
    nodes: Iterable[Obj], *, self_name: str, family: int | None = 4
) -> dict[str, str]:
    """``{node name: InternalIP}`` of every other Node: the speakers to send heartbeats to.

    An InternalIP of ``family`` is preferred (heartbeats go over IPv4 by default, so an
    IPv6-first dual-stack Node still gets its IPv4 address), else the first one. A Node without
    a speaker never answers and so is simply never alive; one without an address is left out.
    """
    peers: dict[str, str] = {}
    for node in nodes:
        name = str(_meta(node).get("name") or "")
        if not name or name == self_name:
            continue
        ip = node_internal_ip(node, family=family) or node_internal_ip(node)
        if ip is not None:
            peers[name] = ip
    return peers


# --- Services --------------------------------------------------------------------------------


def class_matches(svc: Obj, lb_class: str | None) -> bool:
    """The ``--lb-class`` rule (same as the controller): unset handles only class-less Services."""
    cls = (svc.get("spec") or {}).get("loadBalancerClass")
    return cls == lb_class if lb_class else cls in (None, "")


def is_load_balancer(svc: Obj) -> bool:
    return (svc.get("spec") or {}).get("type") == "LoadBalancer"


def service_vips(svc: Obj) -> tuple[str, ...]:
    """VIPs from ``status.loadBalancer.ingress[].ip`` in their canonical text form, in order."""
    key = object_key(svc)
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if not isinstance(ingress, list):
        raise ConversionError(key, "status.loadBalancer.ingress", "must be a list")
    vips: list[str] = []
    for i, entry in enumerate(ingress):
        raw = entry.get("ip") if isinstance(entry, Mapping) else None
        if not raw:
            continue  # hostname-only entries are not ours to announce
        try:
            vip = str(ipaddress.ip_address(str(raw)))
        except ValueError:
            raise ConversionError(
                key, f"status.loadBalancer.ingress[{i}].ip", f"not an IP address: {raw!r}"
            ) from None
        if vip not in vips:
            vips.append(vip)
    return tuple(vips)


def service_pool(svc: Obj) -> str | None:
    """The pool the controller allocated from (annotation), or None when not recorded."""
    ann = annotations_of(svc)
    for name in POOL_ANNOTATIONS:
        if ann.get(name):
            return ann[name]
    return None


def is_announceable(svc: Obj, lb_class: str | None) -> bool:
    """A LoadBalancer Service of our class: the ones the speaker elects owners for."""
    return is_load_balancer(svc) and class_matches(svc, lb_class)


# --- EndpointSlices --------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointSummary:
    """What the election needs from a Service's EndpointSlices."""

    has_endpoints: bool
    ready_nodes: frozenset[str]


NO_ENDPOINTS = EndpointSummary(has_endpoints=False, ready_nodes=frozenset())


def slice_service_key(eps: Obj) -> str | None:
    """``namespace/service`` an EndpointSlice belongs to (label ``kubernetes.io/service-name``)."""
    ns = _meta(eps).get("namespace")
    svc = labels_of(eps).get(SERVICE_NAME_LABEL)
    return f"{ns}/{svc}" if ns and svc else None


def endpoint_usable(endpoint: Obj) -> bool:
    """Ready, or serving (while terminating); unset conditions per discovery/v1."""
    cond = endpoint.get("conditions") or {}
    ready = cond.get("ready")
    serving = cond.get("serving", ready)
    return ready is not False or serving is True


def summarize_endpoints(slices: Iterable[Obj]) -> EndpointSummary:
    """Merge a Service's EndpointSlices: any usable endpoint at all, and the nodes that have one."""
    any_usable = False
    nodes: set[str] = set()
    for eps in slices:
        for endpoint in eps.get("endpoints") or []:
            if not isinstance(endpoint, Mapping) or not endpoint_usable(endpoint):
                continue
            any_usable = True
            node = endpoint.get("nodeName")
            if node:
                nodes.add(str(node))
    return EndpointSummary(has_endpoints=any_usable, ready_nodes=frozenset(nodes))


def service_view(
    svc: Obj,
    *,
    endpoints: EndpointSummary,
    pool_labels: Mapping[str, str] | None = None,
) -> ServiceView:
    """The election's view of one Service (which must hold at least one VIP)."""
    key = object_key(svc)
    vips = service_vips(svc)
    if not vips:
        raise ConversionError(key, "status.loadBalancer.ingress", "no IP assigned yet")
    policy = (svc.get("spec") or {}).get("externalTrafficPolicy")
    return ServiceView(
        key=key,
        vips=vips,
        pool=service_pool(svc),
        pool_labels=freeze_labels(pool_labels or {}),
        labels=freeze_labels(labels_of(svc)),
        traffic_policy_local=policy == "Local",
        ready_endpoint_nodes=endpoints.ready_nodes,
        has_endpoints=endpoints.has_endpoints,
    )


# --- the whole view --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterView:
    """The speaker's last known Kubernetes view (kept as is while the API server is away)."""

    nodes: Sequence[Obj] = ()
    services: Sequence[Obj] = ()
    endpoints: Mapping[str, EndpointSummary] = field(default_factory=dict)
    pool_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    advertisements: Sequence[Advertisement] = ()

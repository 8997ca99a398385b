"""Nodes: the speaker's election inputs (labels, taints, conditions, drain, InternalIP).

Facts about a Node that come from Kubernetes (labels, taints, conditions, the drain annotation)
are read here; facts that come from heartbeats (``alive``, ``interfaces_up``) are passed in by the
caller, because the two sources change independently and the speaker must keep deciding from its
last Kubernetes view while the API server is away. ``Ready=Unknown`` is ``None``, not ``False``:
the kubelet may be cut off from the API server while the node forwards traffic fine; heartbeats
decide liveness (docs/SPEAKER.md). A malformed field raises :class:`ConversionError` naming the
field path; the caller logs and skips that one object.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lbd.core.election import DRAIN_ANNOTATION, Labels, NodeView
from lbd.k8s.meta import (
    ConversionError,
    ObjectRef,
    labels_of,
    meta_field,
    strict_annotations,
    strict_labels,
)

Obj = Mapping[str, Any]


def _condition(node: Obj, type_: str) -> str | None:
    """The ``status`` string ("True"/"False"/"Unknown") of a Node condition, None if absent."""
    for cond in (node.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return str(cond.get("status"))
    return None


def node_view(node: Obj, *, alive: bool, interfaces_up: frozenset[str]) -> NodeView:
    """The election's view of one Node; ``alive``/``interfaces_up`` come from membership."""
    name = meta_field(node, "name")
    if not name:
        raise ConversionError("<node>", "metadata.name", "missing")
    taints = (node.get("spec") or {}).get("taints") or []
    if not isinstance(taints, list):
        raise ConversionError(name, "spec.taints", "must be a list")
    ready = _condition(node, "Ready")
    drain = strict_annotations(node).get(DRAIN_ANNOTATION, "").strip().lower() == "true"
    return NodeView(
        name=name,
        labels=freeze_labels(strict_labels(node)),
        taint_keys=frozenset(str(t.get("key")) for t in taints if isinstance(t, Mapping)),
        ready=None if ready in (None, "Unknown") else ready == "True",
        network_unavailable=_condition(node, "NetworkUnavailable") == "True",
        drain=drain,
        alive=alive,
        interfaces_up=interfaces_up,
    )


def node_fingerprint(node: Obj | None) -> object:
    """What of a Node can change a speaker's decision, compared to tell a real change from a
    kubelet's status update (those rewrite heartbeat timestamps every few seconds and would
    otherwise cost a reconcile pass each).

    It covers every field the speaker reads from a Node, each as it stands in the object:
    the labels, the drain annotation, the taint keys, each condition's type and status (not its
    timestamps), and the addresses (heartbeat peers). Equal fingerprints, no pass needed.
    """
    if node is None:
        return None
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    return (
        meta.get("labels"),
        (meta.get("annotations") or {}).get(DRAIN_ANNOTATION),
        [t.get("key") for t in (node.get("spec") or {}).get("taints") or []],
        [(c.get("type"), c.get("status")) for c in status.get("conditions") or []],
        status.get("addresses"),
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
        name = meta_field(node, "name")
        if not name or name == self_name:
            continue
        ip = node_internal_ip(node, family=family) or node_internal_ip(node)
        if ip is not None:
            peers[name] = ip
    return peers


@dataclass(frozen=True)
class ObservedNode:
    """What the controller and the operator tools read of a Node: its labels (which
    L2Advertisements select it), addresses, pod CIDRs and readiness."""

    ref: ObjectRef
    internal_ips: tuple[str, ...] = ()
    """Every ``InternalIP`` (both families), in order."""
    addresses: tuple[str, ...] = ()
    """Every IP address the Node reports (InternalIP, ExternalIP), hostnames left out."""
    pod_cidrs: tuple[str, ...] = ()
    """``spec.podCIDRs`` (else ``spec.podCIDR``): empty when the cluster does not assign them."""
    ready: bool | None = None
    """The Ready condition (None: Unknown or absent, see the module docstring)."""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def name(self) -> str:
        return self.ref.name


def observe_node(node: Obj) -> ObservedNode:
    """Read one Node (never raises: malformed entries are skipped, malformed labels read as
    none)."""
    spec = node.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    status = node.get("status")
    status = status if isinstance(status, dict) else {}
    internal: list[str] = []
    addresses: list[str] = []
    for addr in status.get("addresses") or []:
        if not isinstance(addr, Mapping):
            continue
        try:
            ip = str(ipaddress.ip_address(str(addr.get("address", ""))))
        except ValueError:
            continue  # a Hostname entry, or garbage
        if addr.get("type") == "InternalIP":
            internal.append(ip)
        if ip not in addresses:
            addresses.append(ip)
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    ready = _condition(node, "Ready")
    return ObservedNode(
        ref=ObjectRef.of(node),
        internal_ips=tuple(internal),
        addresses=tuple(addresses),
        pod_cidrs=tuple(str(c) for c in cidrs) if isinstance(cidrs, list) else (),
        ready=None if ready in (None, "Unknown") else ready == "True",
        labels=labels_of(node),
    )

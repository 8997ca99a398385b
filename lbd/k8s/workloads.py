"""Pods, DaemonSets, Deployments, Leases and CRDs as the operator tools read them.

API::

    observe_pod(obj) -> ObservedPod            # node, phase, ready, IPs, named container ports
    observe_workload(obj) -> ObservedWorkload  # a DaemonSet or Deployment: images, labels
    observe_lease(obj) -> ObservedLease        # namespace/name, holder
    crd_group_kind(obj) -> (group, plural)     # a CustomResourceDefinition's identity

``lbd status`` and ``lbd doctor`` (lbd/tools) decide from these frozen views only. They read
just what those tools need; the controller and the speaker never read these kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lbd.k8s.meta import ObjectRef, labels_of

Obj = Mapping[str, Any]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class ObservedPod:
    """One Pod: where it runs, whether it is Ready, how its ports are reached."""

    ref: ObjectRef
    node: str
    phase: str
    ready: bool
    pod_ips: tuple[str, ...]
    host_network: bool
    ports: Mapping[str, int] = field(default_factory=dict, hash=False)
    """Named container ports (``metrics`` -> 7473)."""
    deleting: bool = False
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def running(self) -> bool:
        """Running, Ready and not being deleted: a speaker that works."""
        return self.phase == "Running" and self.ready and not self.deleting


def observe_pod(obj: Obj) -> ObservedPod:
    spec, status, meta = _map(obj.get("spec")), _map(obj.get("status")), _map(obj.get("metadata"))
    ports: dict[str, int] = {}
    for container in _list(spec.get("containers")):
        for raw in _list(_map(container).get("ports")):
            port = _map(raw)
            if port.get("name") and isinstance(port.get("containerPort"), int):
                ports[str(port["name"])] = int(port["containerPort"])
    ready = any(
        _map(c).get("type") == "Ready" and _map(c).get("status") == "True"
        for c in _list(status.get("conditions"))
    )
    ips = [str(_map(p).get("ip")) for p in _list(status.get("podIPs")) if _map(p).get("ip")]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    return ObservedPod(
        ref=ObjectRef.of(obj),
        node=str(spec.get("nodeName") or ""),
        phase=str(status.get("phase") or ""),
        ready=ready,
        pod_ips=tuple(ips),
        host_network=bool(spec.get("hostNetwork")),
        ports=ports,
        deleting=bool(meta.get("deletionTimestamp")),
        labels=labels_of(obj),
    )


@dataclass(frozen=True)
class ObservedWorkload:
    """A DaemonSet or Deployment: enough to recognise what runs (names, labels, images)."""

    ref: ObjectRef
    labels: Mapping[str, str] = field(hash=False)
    images: tuple[str, ...]
    ready: int
    """Pods ready (``numberReady`` of a DaemonSet, ``readyReplicas`` of a Deployment)."""


def observe_workload(obj: Obj) -> ObservedWorkload:
    spec, status = _map(obj.get("spec")), _map(obj.get("status"))
    pod_spec = _map(_map(spec.get("template")).get("spec"))
    images = tuple(
        str(_map(c).get("image"))
        for key in ("initContainers", "containers")
        for c in _list(pod_spec.get(key))
        if _map(c).get("image")
    )
    ready = status.get("numberReady", status.get("readyReplicas", 0))
    return ObservedWorkload(
        ref=ObjectRef.of(obj),
        labels=labels_of(obj),
        images=images,
        ready=ready if isinstance(ready, int) else 0,
    )


@dataclass(frozen=True)
class ObservedLease:
    ref: ObjectRef
    holder: str


def observe_lease(obj: Obj) -> ObservedLease:
    return ObservedLease(
        ref=ObjectRef.of(obj),
        holder=str(_map(obj.get("spec")).get("holderIdentity") or ""),
    )


def crd_group_kind(obj: Obj) -> tuple[str, str]:
    """(group, plural) of a CustomResourceDefinition."""
    spec = _map(obj.get("spec"))
    return str(spec.get("group") or ""), str(_map(spec.get("names")).get("plural") or "")

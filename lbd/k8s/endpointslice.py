"""EndpointSlices: which nodes have a usable endpoint of a Service (for the speaker's election).

EndpointSlice conditions follow the discovery/v1 contract: a missing ``ready`` means ready, and
a missing ``serving`` takes the value of ``ready``. An endpoint counts when it is ready, or
serving while terminating (kube-proxy falls back to those for ``externalTrafficPolicy: Local``,
so announcing from their nodes keeps connections draining instead of black-holing them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lbd.core.model import service_key
from lbd.k8s.meta import meta_field, strict_labels

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class EndpointSummary:
    """What the election needs from a Service's EndpointSlices."""

    has_endpoints: bool
    ready_nodes: frozenset[str]


NO_ENDPOINTS = EndpointSummary(has_endpoints=False, ready_nodes=frozenset())


def slice_service_key(eps: Obj) -> str | None:
    """``namespace/service`` an EndpointSlice belongs to (label ``kubernetes.io/service-name``)."""
    ns = meta_field(eps, "namespace")
    svc = strict_labels(eps).get(SERVICE_NAME_LABEL)
    return service_key(ns, svc) if ns and svc else None


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

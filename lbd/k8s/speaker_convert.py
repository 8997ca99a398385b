"""The speaker's reading of Kubernetes objects: one import for the wiring in :mod:`lbd.speaker`.

Services are read by the same reader as the controller's (:func:`lbd.k8s.service.observe_service`),
so both agree on every annotation prefix (``lbd.io/``, ``metallb.io/``, ``metallb.universe.tf/``)
and on which addresses a Service shows. Nodes are read in :mod:`lbd.k8s.node`, EndpointSlices in
:mod:`lbd.k8s.endpointslice`; this module re-exports what the speaker uses and adds the
election's :class:`~lbd.core.election.ServiceView` and the whole :class:`ClusterView`.

It does no I/O and never imports ``kubernetes``, so every rule is unit-tested on literal dicts.
A malformed field raises :class:`ConversionError` naming the field path; the caller logs and
skips that one object instead of stopping the speaker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lbd.core.election import ServiceView
from lbd.core.model import Advertisement
from lbd.k8s.endpointslice import (
    NO_ENDPOINTS,
    SERVICE_NAME_LABEL,
    EndpointSummary,
    endpoint_usable,
    slice_service_key,
    summarize_endpoints,
)
from lbd.k8s.meta import ConversionError, object_key, strict_annotations, strict_labels
from lbd.k8s.node import freeze_labels, node_internal_ip, node_view, peers_from_nodes
from lbd.k8s.service import ObservedService, observe_service

__all__ = [
    "NO_ENDPOINTS",
    "SERVICE_NAME_LABEL",
    "ClusterView",
    "ConversionError",
    "EndpointSummary",
    "annotations_of",
    "class_matches",
    "endpoint_usable",
    "freeze_labels",
    "is_announceable",
    "is_load_balancer",
    "labels_of",
    "node_internal_ip",
    "node_view",
    "object_key",
    "observed",
    "peers_from_nodes",
    "service_pool",
    "service_view",
    "service_vips",
    "slice_service_key",
    "summarize_endpoints",
]

Obj = Mapping[str, Any]

labels_of = strict_labels
annotations_of = strict_annotations


_last: tuple[Obj, ObservedService] | None = None


def observed(svc: Obj) -> ObservedService:
    """The Service's view (the same reader as the controller's), read once for the several
    questions the plan asks in a row about the same object (the informers replace objects,
    they never change one in place, so the identity of the dict is enough)."""
    global _last  # noqa: PLW0603 (a one-entry memo; a tuple swap is atomic)
    last = _last
    if last is not None and last[0] is svc:
        return last[1]
    view = observe_service(svc)
    _last = (svc, view)
    return view


def class_matches(svc: Obj, lb_class: str | None) -> bool:
    """The ``--lb-class`` rule (same as the controller): unset handles only class-less Services."""
    return observed(svc).class_matches(lb_class)


def is_load_balancer(svc: Obj) -> bool:
    return observed(svc).load_balancer


def is_announceable(svc: Obj, lb_class: str | None) -> bool:
    """A LoadBalancer Service of our class: the ones the speaker elects owners for."""
    return observed(svc).ours(lb_class)


def service_vips(svc: Obj) -> tuple[str, ...]:
    """The Service's addresses: canonical, in order (the same the controller sees). A garbage
    entry is skipped, as the controller skips it; when nothing but garbage is there, the
    :class:`ConversionError` names the field (the speaker reports it)."""
    view = observed(svc)
    if not view.addresses and view.address_errors:
        problem = view.address_errors[0]
        raise ConversionError(view.key, problem.path, problem.reason)
    return view.addresses


def service_pool(svc: Obj) -> str | None:
    """The pool the controller allocated from (annotation, any prefix), or None."""
    return observed(svc).pool_hint


def service_view(
    svc: Obj,
    *,
    endpoints: EndpointSummary,
    pool_labels: Mapping[str, str] | None = None,
) -> ServiceView:
    """The election's view of one Service (which must hold at least one VIP)."""
    view = observed(svc)
    if not service_vips(svc):
        raise ConversionError(view.key, "status.loadBalancer.ingress", "no IP assigned yet")
    return ServiceView(
        key=view.key,
        vips=view.addresses,
        pool=view.pool_hint,
        pool_labels=freeze_labels(pool_labels or {}),
        labels=freeze_labels(view.labels),
        traffic_policy_local=view.traffic_policy_local,
        ready_endpoint_nodes=endpoints.ready_nodes,
        has_endpoints=endpoints.has_endpoints,
    )


@dataclass(frozen=True)
class ClusterView:
    """The speaker's last known Kubernetes view (kept as is while the API server is away)."""

    nodes: Sequence[Obj] = ()
    services: Sequence[Obj] = ()
    endpoints: Mapping[str, EndpointSummary] = field(default_factory=dict)
    pool_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    advertisements: Sequence[Advertisement] = ()

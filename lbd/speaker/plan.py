"""One pass of the speaker's decision: a snapshot of the cluster + who is alive -> a plan.

:func:`make_plan` is a pure function of its inputs (the raw objects the informers hold, the live
peers with the interfaces each reported up, and this node's name). It runs
:func:`lbd.core.election.decide` for every Service - cheap enough to do for all of them on any
change, which keeps the speaker level-triggered: a plan never depends on which event woke it, so
a lost or reordered event cannot leave a VIP announced from the wrong node. A
:class:`PlanCache` passed along only saves work (unchanged Services are neither converted nor
decided again); the result is the same with or without it.

Every speaker computes every decision, not just its own, because what the others will do is part
of the answer (the status writer must know when it stopped being the owner) and because a
Service's decision is the same on every node that shares the same view.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lbd.core.election import Decision, NodeView, ServiceView, decide
from lbd.k8s.speaker_convert import (
    NO_ENDPOINTS,
    ClusterView,
    ConversionError,
    is_announceable,
    node_view,
    object_key,
    service_pool,
    service_view,
    service_vips,
)
from lbd.k8s.speaker_status import Ownership

Obj = Mapping[str, Any]

InterfaceResolver = Callable[[str, tuple[str, ...]], tuple[str, ...]]
"""``(vip, interfaces from the advertisements or () for the default rule) -> local interfaces``."""


Snapshot = ClusterView
"""Raw Nodes and Services, endpoint summaries, pool labels, validated advertisements."""


@dataclass(frozen=True)
class Plan:
    """What this node should do now."""

    decisions: Mapping[str, Decision]  # every announceable Service with a VIP, by "ns/name"
    owned: Mapping[str, tuple[str, ...]]  # VIP -> interfaces this node answers on
    ownerships: Mapping[str, Ownership]  # Services this node announces, by "ns/name"
    errors: Mapping[str, str] = field(default_factory=dict)  # objects skipped, and why

    def owner_of(self, vip: str) -> str | None:
        """The Service key owning ``vip`` on this node, if any."""
        for key, own in self.ownerships.items():
            if vip in own.vips:
                return key
        return None


EMPTY_PLAN = Plan(decisions={}, owned={}, ownerships={})


def node_views(
    nodes: Sequence[Obj], *, self_name: str, alive: Mapping[str, frozenset[str]]
) -> tuple[list[NodeView], dict[str, str]]:
    """NodeViews with heartbeat facts: ``alive`` maps each live speaker to its interfaces up."""
    views: list[NodeView] = []
    errors: dict[str, str] = {}
    for obj in nodes:
        name = str((obj.get("metadata") or {}).get("name") or "")
        try:
            views.append(
                node_view(
                    obj,
                    alive=name == self_name or name in alive,
                    interfaces_up=alive.get(name, frozenset()),
                )
            )
        except ConversionError as exc:
            errors[name or "<node>"] = str(exc)
    return views, errors


@dataclass
class PlanCache:
    """Results of the last pass that the next one may reuse (one per reconciler).

    A pass over 1 000 Services and 10 nodes costs about 60 ms, half of it converting Service
    dicts and half deciding. Informer objects are replaced, never mutated, so a Service whose
    resourceVersion, endpoints and pool labels are unchanged has the same view; a view decided
    against the same nodes and advertisements has the same decision. With the cache, an
    EndpointSlice update costs one conversion and one decision instead of a thousand, while the
    result stays exactly what :func:`make_plan` computes without it (a test checks).
    """

    views: dict[str, tuple[tuple[Any, ...], ServiceView]] = field(default_factory=dict)
    decisions: dict[ServiceView, Decision] = field(default_factory=dict)
    context: tuple[Any, ...] | None = None  # (nodes, advertisements) the decisions assume


def _service_view(
    svc: Obj,
    key: str,
    snap: Snapshot,
    *,
    lb_class: str | None,
    cache: PlanCache | None,
    seen: dict[str, tuple[tuple[Any, ...], ServiceView]],
) -> ServiceView | None:
    """The Service's view, or None when it is not ours to announce (raises ConversionError)."""
    endpoints = snap.endpoints.get(key, NO_ENDPOINTS)
    pool = service_pool(svc)
    pool_labels = snap.pool_labels.get(pool, {}) if pool else {}
    rv = (svc.get("metadata") or {}).get("resourceVersion")
    fingerprint = (rv, endpoints, tuple(sorted(pool_labels.items())))
    if cache is not None and rv:
        hit = cache.views.get(key)
        if hit is not None and hit[0] == fingerprint:
            seen[key] = hit
            return hit[1]
    if not is_announceable(svc, lb_class) or not service_vips(svc):
        return None
    view = service_view(svc, endpoints=endpoints, pool_labels=pool_labels)
    seen[key] = (fingerprint, view)
    return view


def make_plan(
    snap: Snapshot,
    *,
    self_name: str,
    alive: Mapping[str, frozenset[str]],
    lb_class: str | None,
    resolve_interfaces: InterfaceResolver,
    cache: PlanCache | None = None,
) -> Plan:
    """Decide every Service; collect the VIPs and Services this node owns."""
    nodes, errors = node_views(snap.nodes, self_name=self_name, alive=alive)
    ads = tuple(snap.advertisements)
    context = (frozenset(nodes), frozenset(ads))
    known: dict[ServiceView, Decision] = {}
    if cache is not None and cache.context == context:
        known = cache.decisions
    seen_views: dict[str, tuple[tuple[Any, ...], ServiceView]] = {}
    used: dict[ServiceView, Decision] = {}
    decisions: dict[str, Decision] = {}
    owned: dict[str, tuple[str, ...]] = {}
    ownerships: dict[str, Ownership] = {}
    for svc in snap.services:
        key = object_key(svc)
        try:
            view = _service_view(svc, key, snap, lb_class=lb_class, cache=cache, seen=seen_views)
        except ConversionError as exc:
            errors[key] = str(exc)
            continue
        if view is None:
            continue
        decision = known[view] if view in known else decide(view, nodes, ads)
        used[view] = decision
        decisions[key] = decision
        if decision.owner != self_name:
            continue
        interfaces: set[str] = set()
        for vip in view.vips:
            found = resolve_interfaces(vip, decision.interfaces)
            if not found:
                continue  # no local interface for this family/subnet: nothing to answer on
            # Services sharing a VIP rank on the same key, so they agree on the owner; merge.
            owned[vip] = tuple(sorted(set(owned.get(vip, ())) | set(found)))
            interfaces.update(found)
        meta = svc.get("metadata") or {}
        ownerships[key] = Ownership(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            vips=view.vips,
            interfaces=tuple(sorted(interfaces)),
        )
    if cache is not None:
        cache.views, cache.decisions, cache.context = seen_views, used, context
    return Plan(decisions=decisions, owned=owned, ownerships=ownerships, errors=errors)

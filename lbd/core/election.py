"""Who may own a Service's VIPs, and which of those nodes does.

Two pure steps, both free of I/O so that every speaker computes the same answer from the same view:

1. :func:`eligibility` applies every rule of docs/SPEAKER.md to one (node, Service) pair and returns
   ``None`` or the *first* rule that says no, as an :class:`Ineligible` value. Naming every "no"
   (MetalLB's ``processRequest`` drop reasons, same idea) makes the decision countable, loggable
   and table-testable.
2. :func:`rank` orders nodes by rendezvous (highest-random-weight) hashing:
   ``sha256(node_name + "#" + key)``, ascending. The key is the Service's *first* VIP, so all VIPs
   of a Service and all Services sharing an address land on one node. Rendezvous hashing needs no
   shared state, spreads keys evenly, and when a node leaves only the keys it owned move (each
   key's order of the remaining nodes is unchanged) - the property that keeps failover local.

:func:`decide` combines both. Its result never depends on the order of its inputs: nodes are
ranked by hash with the name as tie-breaker, and advertisements are folded with order-independent
set operations.

Advertisements are ``lbd.core.model.Advertisement`` values (validated L2Advertisements).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lbd.core.model import Advertisement

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"
DRAIN_ANNOTATION = "lbd.io/drain"


class Ineligible(StrEnum):
    """Why a node may not own a Service's VIPs (checked in this order; the first one wins)."""

    DEAD = "Dead"
    EXCLUDED_LABEL = "ExcludedLabel"
    OUT_OF_SERVICE = "OutOfService"
    NETWORK_UNAVAILABLE = "NetworkUnavailable"
    NOT_READY = "NotReady"
    DRAINED = "Drained"
    NO_ENDPOINTS = "NoEndpoints"
    NO_ADVERTISEMENT = "NoAdvertisement"
    NO_INTERFACE = "NoInterface"
    NO_LOCAL_ENDPOINT = "NoLocalEndpoint"


class Labels(Mapping[str, str]):
    """An immutable, hashable label map (frozen dataclasses holding it stay hashable)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, str] = dict(pairs)

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"Labels({self._items!r})"


def _freeze(obj: Any, name: str, value: Mapping[str, str]) -> None:
    if not isinstance(value, Labels):
        object.__setattr__(obj, name, Labels(value))


@dataclass(frozen=True)
class NodeView:
    """What election needs to know about one node (from the Node object and its heartbeats)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=Labels)
    taint_keys: frozenset[str] = frozenset()
    ready: bool | None = True  # None = condition Unknown, which does not exclude
    network_unavailable: bool = False
    drain: bool = False
    alive: bool = True
    interfaces_up: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("NodeView.name: must not be empty")
        _freeze(self, "labels", self.labels)


@dataclass(frozen=True)
class ServiceView:
    """What election needs to know about one Service."""

    key: str  # "namespace/name"
    vips: tuple[str, ...]
    pool: str | None = None
    pool_labels: Mapping[str, str] = field(default_factory=Labels)
    labels: Mapping[str, str] = field(default_factory=Labels)
    traffic_policy_local: bool = False
    ready_endpoint_nodes: frozenset[str] = frozenset()
    has_endpoints: bool = True

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("ServiceView.key: must not be empty")
        _freeze(self, "pool_labels", self.pool_labels)
        _freeze(self, "labels", self.labels)


@dataclass(frozen=True)
class Decision:
    """The outcome for one Service: its owner (or None) and why every other node is out."""

    service: str
    owner: str | None
    interfaces: tuple[str, ...] = ()  # empty = default interface rule
    reasons: Mapping[str, Ineligible] = field(default_factory=dict)


def matching_advertisements(
    node: NodeView, svc: ServiceView, ads: Sequence[Advertisement]
) -> list[Advertisement]:
    """The advertisements that let ``node`` announce ``svc`` (pool, Service and node selectors)."""
    if svc.pool is None:
        return []
    return [
        ad
        for ad in ads
        if ad.selects_pool(svc.pool, svc.pool_labels)
        and ad.selects_service(svc.labels)
        and ad.selects_node(node.labels)
    ]


def announce_interfaces(ads: Iterable[Advertisement]) -> tuple[str, ...]:
    """Interfaces to announce on: the union over ``ads``; empty (default rule) if any ad is open.

    An advertisement without ``interfaces`` means "the default interfaces", which is a superset of
    any explicit list, so it wins over the others (MetalLB behaves the same).
    """
    names: set[str] = set()
    for ad in ads:
        if not ad.interfaces:
            return ()
        names.update(ad.interfaces)
    return tuple(sorted(names))


def eligibility(
    node: NodeView, svc: ServiceView, ads: Sequence[Advertisement]
) -> Ineligible | None:
    """None if ``node`` may own ``svc``'s VIPs, else the first rule that says no
    (docs/SPEAKER.md)."""
    if not node.alive:
        return Ineligible.DEAD
    if EXCLUDE_LABEL in node.labels:
        return Ineligible.EXCLUDED_LABEL
    if OUT_OF_SERVICE_TAINT in node.taint_keys:
        return Ineligible.OUT_OF_SERVICE
    if node.network_unavailable:
        return Ineligible.NETWORK_UNAVAILABLE
    if node.ready is False:  # Unknown (None) does not exclude: heartbeats decide
        return Ineligible.NOT_READY
    if node.drain:
        return Ineligible.DRAINED
    if not svc.has_endpoints:
        return Ineligible.NO_ENDPOINTS
    matching = matching_advertisements(node, svc, ads)
    if not matching:
        return Ineligible.NO_ADVERTISEMENT
    # Default rule (no list): any announce interface up will do; else one of the listed ones.
    wanted = announce_interfaces(matching)
    usable = node.interfaces_up.intersection(wanted) if wanted else node.interfaces_up
    if not usable:
        return Ineligible.NO_INTERFACE
    if svc.traffic_policy_local and node.name not in svc.ready_endpoint_nodes:
        return Ineligible.NO_LOCAL_ENDPOINT
    return None


def _weight(node: str, key: str) -> bytes:
    return hashlib.sha256(f"{node}#{key}".encode()).digest()


def rank(key: str, nodes: Iterable[str]) -> list[str]:
    """Nodes in rendezvous order for ``key``: ascending ``sha256(node + "#" + key)``.

    Duplicates are removed; the node name breaks (astronomically unlikely) hash ties so that the
    order is total and independent of the input order.
    """
    return sorted(set(nodes), key=lambda n: (_weight(n, key), n))


def decide(svc: ServiceView, nodes: Sequence[NodeView], ads: Sequence[Advertisement]) -> Decision:
    """Elect the owner of ``svc``'s VIPs among ``nodes``; independent of the input order."""
    reasons: dict[str, Ineligible] = {}
    eligible: dict[str, NodeView] = {}
    seen: set[str] = set()
    for node in nodes:
        if node.name in seen:  # two views of one node: which wins would depend on the order
            raise ValueError(f"nodes: node {node.name!r} appears more than once")
        seen.add(node.name)
        why = eligibility(node, svc, ads)
        if why is None:
            eligible[node.name] = node
        else:
            reasons[node.name] = why
    if not svc.vips or not eligible:
        return Decision(service=svc.key, owner=None, reasons=dict(sorted(reasons.items())))
    owner = rank(svc.vips[0], eligible)[0]
    interfaces = announce_interfaces(matching_advertisements(eligible[owner], svc, ads))
    return Decision(
        service=svc.key,
        owner=owner,
        interfaces=interfaces,
        reasons=dict(sorted(reasons.items())),
    )

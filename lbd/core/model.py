"""Value types shared by the pure core and its adapters.

Everything here is a frozen dataclass or an enum: the adapters (``lbd.k8s``) turn Kubernetes
objects into these values, the core decides on values, and the adapters write the decision back.
No value here knows about Kubernetes objects, so the core is tested with plain tables.

Design decisions worth knowing:

* Addresses cross the core boundary as canonical strings (``"198.18.100.7"``, ``"2001:db8::7"``,
  as :mod:`ipaddress` prints them) because that is what Service status carries. Inside a
  :class:`PoolRange` they are plain ``int`` s: integer arithmetic is what makes an IPv6 /64 pool
  as cheap as a /28 (nothing is ever enumerated).
* Label maps (``labels``) are ``Mapping`` fields excluded from hashing: the values stay immutable
  by convention (adapters build fresh dicts), equality still compares them.
* Counters are exact Python integers. A /64 pool has 2**64 addresses, which no JSON number
  consumer can hold exactly; :func:`render_count` is the one place that decides how such a count
  is shown (see its docstring) so status and metrics agree.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NewType

ServiceKey = NewType("ServiceKey", str)
"""``"namespace/name"`` of a Service: the identity the allocator keys everything by."""


def service_key(namespace: str, name: str) -> ServiceKey:
    """The :data:`ServiceKey` of a Service."""
    return ServiceKey(f"{namespace}/{name}")


class Family(StrEnum):
    """IP family, spelled like Kubernetes' ``spec.ipFamilies``."""

    IPV4 = "IPv4"
    IPV6 = "IPv6"


class FamilyPolicy(StrEnum):
    """``spec.ipFamilyPolicy`` of a Service."""

    SINGLE_STACK = "SingleStack"
    PREFER_DUAL_STACK = "PreferDualStack"
    REQUIRE_DUAL_STACK = "RequireDualStack"


class Reason(StrEnum):
    """Reason of the ``lbd.io/AddressAssigned`` condition (docs/API.md); every refusal names one."""

    ASSIGNED = "Assigned"
    NO_MATCHING_POOL = "NoMatchingPool"
    POOL_EXHAUSTED = "PoolExhausted"
    REQUESTED_IP_UNAVAILABLE = "RequestedIPUnavailable"
    REQUESTED_IP_NOT_IN_POOL = "RequestedIPNotInPool"
    SHARING_CONFLICT = "SharingConflict"
    INVALID_REQUEST = "InvalidRequest"
    POOL_CONFLICTING = "PoolConflicting"


def family_of(address: str) -> Family:
    """Family of an address string; raises ``ValueError`` for anything that is not one."""
    return Family.IPV4 if ipaddress.ip_address(address).version == 4 else Family.IPV6


def address_to_int(address: str) -> tuple[Family, int]:
    """Parse an address string into its family and integer value (``ValueError`` if invalid)."""
    ip = ipaddress.ip_address(address)
    return (Family.IPV4 if ip.version == 4 else Family.IPV6), int(ip)


def int_to_address(family: Family, value: int) -> str:
    """Canonical string form of an integer address of ``family``."""
    if family is Family.IPV4:
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(value))


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
"""Four decimal octets up to 255 in ASCII digits, no leading zeros: the text ipaddress accepts
and prints back unchanged."""


def canonical_address(address: str) -> str:
    """``"2001:DB8:0::7"`` -> ``"2001:db8::7"``; raises ``ValueError`` if not an address.

    An IPv4 address already in canonical form (:data:`_CANONICAL_IPV4`) is returned as it is,
    without parsing it: every Service's ingress is read this way (10 000 in lbd status,
    tests/bench/bench_status.py, each address a different one). One regular expression match
    is 0.6 us, the per-octet check it replaced 3.1 us, parsing about ten times that."""
    if _CANONICAL_IPV4.fullmatch(address):
        return address
    return str(ipaddress.ip_address(address))


# --------------------------------------------------------------------------- label selectors


class SelectorOperator(StrEnum):
    """``matchExpressions[].operator`` of a Kubernetes LabelSelector."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True)
class SelectorRequirement:
    """One ``matchExpressions`` entry. Validity (values present iff In/NotIn) is config.py's job."""

    key: str
    operator: SelectorOperator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes semantics: ``NotIn`` also matches when the key is absent."""
        if self.operator is SelectorOperator.IN:
            return self.key in labels and labels[self.key] in self.values
        if self.operator is SelectorOperator.NOT_IN:
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator is SelectorOperator.EXISTS:
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes LabelSelector: all ``match_labels`` and all expressions must hold.

    An empty selector matches everything (as ``metav1.LabelSelectorAsSelector`` does for ``{}``).
    """

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy every requirement of this selector."""
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(req.matches(labels) for req in self.match_expressions)


def any_selector_matches(selectors: tuple[LabelSelector, ...], labels: Mapping[str, str]) -> bool:
    """Lists of selectors in the API are ORed; an empty list matches everything."""
    return not selectors or any(sel.matches(labels) for sel in selectors)


# --------------------------------------------------------------------------- pools


@dataclass(frozen=True, order=True)
class PoolRange:
    """An inclusive range of addresses of one family, as integers.

    ``text`` is the entry as the user wrote it (for messages); it does not take part in equality.
    """

    family: Family
    first: int
    last: int
    text: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        limit = 2**32 if self.family is Family.IPV4 else 2**128
        if not 0 <= self.first <= self.last < limit:
            raise ValueError(f"invalid {self.family} range {self.first}..{self.last}")

    @property
    def size(self) -> int:
        """Number of addresses in the range (exact, may exceed 2**64)."""
        return self.last - self.first + 1

    def contains(self, family: Family, value: int) -> bool:
        """Whether ``value`` of ``family`` lies in this range."""
        return family is self.family and self.first <= value <= self.last

    def overlaps(self, other: PoolRange) -> bool:
        """Whether the two ranges share at least one address."""
        return self.family is other.family and self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        if self.text:
            return self.text
        return f"{int_to_address(self.family, self.first)}-{int_to_address(self.family, self.last)}"


@dataclass(frozen=True)
class ServiceAllocation:
    """``spec.serviceAllocation`` of a pool: which Services may use it, and its rank.

    Namespace rule (as in MetalLB): when ``namespaces`` or ``namespace_selectors`` is non-empty,
    the Service's namespace must be listed or its labels match one selector. Service rule: when
    ``service_selectors`` is non-empty, the Service's labels must match one of them.
    """

    priority: int | None = None
    namespaces: frozenset[str] = frozenset()
    namespace_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()

    def matches(
        self, namespace: str, namespace_labels: Mapping[str, str], labels: Mapping[str, str]
    ) -> bool:
        """Whether a Service in ``namespace`` with ``labels`` may use the pool."""
        if (self.namespaces or self.namespace_selectors) and not (
            namespace in self.namespaces
            or any(sel.matches(namespace_labels) for sel in self.namespace_selectors)
        ):
            return False
        return any_selector_matches(self.service_selectors, labels)


@dataclass(frozen=True)
class Pool:
    """A validated IPAddressPool."""

    name: str
    ranges: tuple[PoolRange, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    allocation: ServiceAllocation | None = None
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def families(self) -> frozenset[Family]:
        """Families the pool has addresses of."""
        return frozenset(r.family for r in self.ranges)


# --------------------------------------------------------------------------- advertisements


@dataclass(frozen=True)
class Advertisement:
    """A validated L2Advertisement."""

    name: str
    pools: frozenset[str] = frozenset()
    pool_selectors: tuple[LabelSelector, ...] = ()
    node_selectors: tuple[LabelSelector, ...] = ()
    interfaces: tuple[str, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()

    def selects_pool(self, pool_name: str, pool_labels: Mapping[str, str]) -> bool:
        """``ipAddressPools`` and ``ipAddressPoolSelectors`` are ORed; both empty = all pools."""
        if not self.pools and not self.pool_selectors:
            return True
        return pool_name in self.pools or any(s.matches(pool_labels) for s in self.pool_selectors)

    def selects_node(self, node_labels: Mapping[str, str]) -> bool:
        """Whether a node with ``node_labels`` may announce (empty list = every node)."""
        return any_selector_matches(self.node_selectors, node_labels)

    def selects_service(self, service_labels: Mapping[str, str]) -> bool:
        """Whether a Service with ``service_labels`` is announced (empty list = every Service)."""
        return any_selector_matches(self.service_selectors, service_labels)


# --------------------------------------------------------------------------- services


@dataclass(frozen=True, order=True)
class Port:
    """One (protocol, port) pair of a Service: the unit of the sharing rule."""

    protocol: str
    port: int


@dataclass(frozen=True)
class ServiceRequest:
    """What the allocator needs to know about one LoadBalancer Service.

    ``requested`` holds the addresses from ``lbd.io/loadBalancerIPs`` or ``spec.loadBalancerIP``
    (already merged and checked by the caller, see ``config.parse_requested_ips``).
    ``created`` is the RFC 3339 creationTimestamp; ``(created, key)`` decides who is older (RFC
    3339 strings in UTC with the same precision sort like the times they name).
    """

    key: ServiceKey
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    namespace_labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    created: str = ""
    ip_families: tuple[Family, ...] = (Family.IPV4,)
    family_policy: FamilyPolicy = FamilyPolicy.SINGLE_STACK
    requested: tuple[str, ...] = ()
    pool: str | None = None
    sharing_key: str | None = None
    sharing_namespaces: frozenset[str] = frozenset()
    ports: frozenset[Port] = frozenset()
    traffic_policy: str = "Cluster"
    selector: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.key != f"{self.namespace}/{self.name}":
            raise ValueError(f"key {self.key!r} is not {self.namespace!r}/{self.name!r}")

    @property
    def age_rank(self) -> tuple[str, str]:
        """Sort key: smaller is older (creationTimestamp, then namespace/name)."""
        return (self.created, self.key)


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Allocation:
    """Addresses a Service holds, all from one pool, primary family first."""

    key: ServiceKey
    pool: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Refusal:
    """Why a Service got no (new) addresses; ``message`` names the pool / address / field."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class FamilyCounters:
    """Address counts of one family of one pool. Exact integers (IPv6 counts may be huge)."""

    total: int = 0
    assigned: int = 0

    @property
    def available(self) -> int:
        """Addresses that could still be handed out (total minus assigned)."""
        return self.total - self.assigned


@dataclass(frozen=True)
class PoolCounters:
    """Counters of one pool per family. ``total`` excludes addresses avoidBuggyIPs skips."""

    pool: str
    ipv4: FamilyCounters = FamilyCounters()
    ipv6: FamilyCounters = FamilyCounters()

    def of(self, family: Family) -> FamilyCounters:
        """Counters of ``family``."""
        return self.ipv4 if family is Family.IPV4 else self.ipv6


MAX_EXACT_JSON_INT = 2**53
"""Largest integer every JSON consumer (JavaScript, kubectl's jsonpath) holds exactly."""


def render_count(value: int) -> int | str:
    """How status writes a counter: an int up to 2**53, above that its decimal string.

    IPv4 counts always stay ints. Prometheus gauges are floats anyway; the metrics layer passes
    ``float(value)`` (rounding a /64's 2**64 is harmless for a graph), status uses this function.
    """
    return value if value <= MAX_EXACT_JSON_INT else str(value)

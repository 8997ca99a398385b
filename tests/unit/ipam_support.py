"""Builders shared by the allocator tests (no tests in here): pools and Services in one line."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lbd.core.config import parse_pool
from lbd.core.ipam import Allocator
from lbd.core.model import (
    Allocation,
    Family,
    FamilyPolicy,
    Pool,
    Port,
    Reason,
    Refusal,
    ServiceRequest,
    service_key,
)

V4, V6 = Family.IPV4, Family.IPV6
SINGLE = FamilyPolicy.SINGLE_STACK
PREFER = FamilyPolicy.PREFER_DUAL_STACK
REQUIRE = FamilyPolicy.REQUIRE_DUAL_STACK


def pool(
    name: str,
    *addresses: str,
    auto: bool = True,
    buggy: bool = False,
    allocation: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Pool:
    spec: dict[str, Any] = {
        "addresses": list(addresses),
        "autoAssign": auto,
        "avoidBuggyIPs": buggy,
    }
    if allocation is not None:
        spec["serviceAllocation"] = dict(allocation)
    parsed = parse_pool(name, spec, labels)
    assert isinstance(parsed, Pool), parsed
    return parsed


def ports(*specs: str) -> frozenset[Port]:
    """``ports("TCP/80", "UDP/53")``."""
    out = set()
    for spec in specs:
        proto, _, num = spec.partition("/")
        out.add(Port(proto, int(num)))
    return frozenset(out)


def svc(
    name: str,
    ns: str = "default",
    *,
    created: str = "2026-01-01T00:00:00Z",
    families: tuple[Family, ...] = (V4,),
    policy: FamilyPolicy = SINGLE,
    ips: Iterable[str] = (),
    pool: str | None = None,
    key: str | None = None,
    share_ns: Iterable[str] = (),
    tcp: Iterable[int] = (),
    udp: Iterable[int] = (),
    etp: str = "Cluster",
    selector: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    ns_labels: Mapping[str, str] | None = None,
) -> ServiceRequest:
    return ServiceRequest(
        key=service_key(ns, name),
        namespace=ns,
        name=name,
        labels=dict(labels or {}),
        namespace_labels=dict(ns_labels or {}),
        created=created,
        ip_families=families,
        family_policy=policy,
        requested=tuple(ips),
        pool=pool,
        sharing_key=key,
        sharing_namespaces=frozenset(share_ns),
        ports=frozenset({Port("TCP", p) for p in tcp} | {Port("UDP", p) for p in udp}),
        traffic_policy=etp,
        selector=tuple(sorted((selector or {}).items())),
    )


def allocator(
    *pools: Pool, conflicting: Iterable[str] = (), invalid: Iterable[str] = ()
) -> Allocator:
    a = Allocator()
    assert a.set_pools(pools, conflicting=frozenset(conflicting), invalid=frozenset(invalid)) == ()
    return a


def must(result: Allocation | Refusal) -> Allocation:
    assert isinstance(result, Allocation), result
    return result


@dataclass(frozen=True)
class Got:
    """Expected allocation: pool and addresses in order."""

    pool: str
    addresses: tuple[str, ...]

    def __init__(self, pool: str, *addresses: str) -> None:
        object.__setattr__(self, "pool", pool)
        object.__setattr__(self, "addresses", addresses)


@dataclass(frozen=True)
class Refused:
    """Expected refusal: reason, and a fragment the message must contain."""

    reason: Reason
    fragment: str = ""


def check(a: Allocator, result: Allocation | Refusal, expected: Got | Refused) -> None:
    if isinstance(expected, Got):
        assert isinstance(result, Allocation), result
        assert (result.pool, result.addresses) == (expected.pool, expected.addresses)
    else:
        assert isinstance(result, Refusal), result
        assert result.reason is expected.reason, result
        assert expected.fragment in result.message, result.message

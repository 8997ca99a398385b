"""Hypothesis drives random allocate / release / restore / set_pools sequences.

A tiny reference model (pools enumerated address by address, which is fine for a dozen addresses)
checks after every step:

* no address is held by two Services that may not share it;
* every held address lies in a pool its Service may use (annotation, serviceAllocation, ranges,
  avoidBuggyIPs);
* counters equal a recount;
* a refused call changes no address (snapshot before == after);
* an address a Service lost stays taken (leaving) until ``settle``, and is never handed out
  before that;
* an address handed out fresh is the lowest never-used one of its pool and family, or, when none
  is left, the one released longest ago;
* the released queue holds exactly the addresses ever held, not held now, and still in a pool.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from lbd.core.config import find_conflicts
from lbd.core.ipam import Allocator, sharing_problem
from lbd.core.model import (
    Allocation,
    Family,
    Pool,
    Reason,
    Refusal,
    ServiceKey,
    ServiceRequest,
    address_to_int,
)
from tests.unit.ipam_support import PREFER, REQUIRE, SINGLE, V4, V6, pool, svc

VARIANTS: dict[str, list[Pool]] = {
    "a": [
        pool("a", "198.18.100.0/30"),
        pool("a", "198.18.100.0/30", "2001:db8::/126"),
        pool("a", "198.18.100.0/29", buggy=True),
    ],
    "b": [
        pool("b", "198.18.100.4/30", auto=False),
        pool("b", "198.18.100.4/31", "2001:db8::4/126", allocation={"namespaces": ["ns1"]}),
    ],
    "c": [
        pool("c", "198.18.100.3-198.18.100.5"),
        pool(
            "c",
            "2001:db8::6-2001:db8::7",
            allocation={"priority": 1, "serviceSelectors": [{"matchLabels": {"app": "x"}}]},
        ),
    ],
}
UNIVERSE = [f"198.18.100.{i}" for i in range(9)] + [f"2001:db8::{i:x}" for i in range(1, 9)]
UNIVERSE.append("2001:db8::")
NAMES = [f"s{i}" for i in range(4)]
NAMESPACES = ["ns1", "ns2"]
# Fixed per Service: creation time does not change over a Service's life.
CREATED = {
    (ns, n): f"2026-01-0{1 + (i * 3 + j) % 4}T00:00:00Z"
    for i, n in enumerate(NAMES)
    for j, ns in enumerate(NAMESPACES)
}

FAMILY_CHOICES = [
    ((V4,), SINGLE),
    ((V4,), SINGLE),
    ((V4,), SINGLE),
    ((V6,), SINGLE),
    ((V4, V6), PREFER),
    ((V6, V4), REQUIRE),
    ((V4, V6), REQUIRE),
]


@st.composite
def requests(draw: st.DrawFn) -> ServiceRequest:
    name = draw(st.sampled_from(NAMES))
    ns = draw(st.sampled_from(NAMESPACES))
    families, policy = draw(st.sampled_from(FAMILY_CHOICES))
    ips: tuple[str, ...] = ()
    if draw(st.integers(0, 5)) == 0:
        ips = (draw(st.sampled_from(UNIVERSE)),)
    return svc(
        name,
        ns,
        created=CREATED[(ns, name)],
        families=families,
        policy=policy,
        ips=ips,
        pool=draw(st.sampled_from([None] * 12 + ["a", "b", "c", "gone"])),
        key=draw(st.sampled_from([None, "k", "k", "k", "other"])),
        share_ns=draw(st.sampled_from([(), ("*",), ("*",), ("ns1",), ("ns2",), ("ns1", "ns2")])),
        tcp=draw(st.sampled_from([(), (80,), (443,), (80, 443)])),
        udp=draw(st.sampled_from([(), (53,)])),
        etp=draw(st.sampled_from(["Cluster", "Cluster", "Cluster", "Local"])),
        selector=draw(st.sampled_from([{}, {"app": "x"}])),
        labels=draw(st.sampled_from([{}, {"app": "x"}])),
    )


def addresses_of(p: Pool) -> list[tuple[Family, int]]:
    """Every address of a (tiny) pool, lowest first per family, avoidBuggyIPs applied."""
    out = []
    for r in sorted(p.ranges):
        for v in range(r.first, r.last + 1):
            if p.avoid_buggy_ips and r.family is V4 and (v & 0xFF) in (0, 255):
                continue
            out.append((r.family, v))
    return out


def may_use(p: Pool, s: ServiceRequest) -> bool:
    a = p.allocation
    return a is None or a.matches(s.namespace, s.namespace_labels, s.labels)


def may_share(a: ServiceRequest, b: ServiceRequest) -> bool:
    """docs/IPAM.md's sharing rule, written again independently of the allocator's."""
    if not a.sharing_key or a.sharing_key != b.sharing_key:
        return False
    if a.namespace != b.namespace and not (
        (b.namespace in a.sharing_namespaces or "*" in a.sharing_namespaces)
        and (a.namespace in b.sharing_namespaces or "*" in b.sharing_namespaces)
    ):
        return False
    if any(p in b.ports for p in a.ports):
        return False
    if a.traffic_policy != b.traffic_policy:
        return False
    return a.traffic_policy != "Local" or a.selector == b.selector


def numeric(address: str) -> tuple[Family, int]:
    return address_to_int(address)


class AllocatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.alloc = Allocator()
        self.defs: dict[str, Pool] = {}  # what the allocator should consider each pool to be
        self.blind: set[str] = set()  # invalid pools restored into without a known definition
        self.requests: dict[ServiceKey, ServiceRequest] = {}  # request each holder was kept for
        self.ever_held: set[str] = set()
        # (key, address) -> the request under which the key last held (and so shows) it
        self.shown_as: dict[tuple[ServiceKey, str], ServiceRequest] = {}
        start = [VARIANTS["a"][1], VARIANTS["b"][1]]
        assert self.alloc.set_pools(start) == ()
        self.defs = {p.name: p for p in start}

    # ------------------------------------------------------------------ helpers

    def held(self) -> dict[str, set[ServiceKey]]:
        out: dict[str, set[ServiceKey]] = {}
        for k in self.requests:
            h = self.alloc.holding(k)
            assert h is not None
            for addr in h.addresses:
                out.setdefault(addr, set()).add(k)
        return out

    def leaving(self) -> dict[str, set[ServiceKey]]:
        out: dict[str, set[ServiceKey]] = {}
        for ns in NAMESPACES:
            for n in NAMES:
                k = ServiceKey(f"{ns}/{n}")
                for addr in self.alloc.leaving(k):
                    out.setdefault(addr, set()).add(k)
        return out

    def in_some_pool(self, address: str) -> bool:
        return any(numeric(address) in addresses_of(p) for p in self.defs.values())

    def expect_unchanged(self, before: Any) -> None:
        assert self.alloc.snapshot() == before, "a refused call changed the allocator"

    def check_fresh_pick(
        self,
        result: Allocation,
        held_before: Mapping[str, set[ServiceKey]],
        leaving_before: Mapping[str, set[ServiceKey]],
        released: tuple[str, ...],
    ) -> None:
        p = self.defs.get(result.pool)
        if p is None:
            return
        for addr in result.addresses:
            if addr in held_before or addr in leaving_before:
                continue  # shared, kept, taken back, or requested: not a fresh pick
            fam, _ = numeric(addr)
            free = [
                (f, v)
                for f, v in addresses_of(p)
                if f is fam
                and str(ipaddress.ip_address(v)) not in held_before
                and str(ipaddress.ip_address(v)) not in leaving_before
            ]
            free_text = [str(ipaddress.ip_address(v)) for _, v in free]
            never = [t for t in free_text if t not in self.ever_held]
            if never:
                event("never-used pick")
                assert addr == never[0], f"{addr} given while never-used {never[0]} was free"
            else:
                candidates = [t for t in released if t in free_text]
                event(f"released pick among {min(len(candidates), 3)}")
                oldest = candidates[0]
                assert addr == oldest, f"{addr} given while {oldest} was released longer ago"

    def record(self, svc_: ServiceRequest, result: Allocation) -> None:
        self.requests[svc_.key] = svc_
        self.ever_held.update(result.addresses)
        for addr in result.addresses:
            self.shown_as[(svc_.key, addr)] = svc_

    def forget_poolless(self, addresses: tuple[str, ...]) -> None:
        """A freed address of no pool has no reuse history (the allocator drops it)."""
        for a in addresses:
            if not self.alloc.holders(a) and not self.in_some_pool(a):
                self.ever_held.discard(a)

    def forget_released(self) -> None:
        for k in list(self.requests):
            if self.alloc.holding(k) is None:
                del self.requests[k]

    # ------------------------------------------------------------------ rules

    @rule(
        choice=st.fixed_dictionaries(
            {
                n: st.sampled_from(["absent", "invalid", *range(len(v)), *range(len(v))])
                for n, v in VARIANTS.items()
            }
        )
    )
    def set_pools(self, choice: dict[str, Any]) -> None:
        pools = [VARIANTS[n][c] for n, c in choice.items() if isinstance(c, int)]
        invalid = {n for n, c in choice.items() if c == "invalid"}
        conflicting = find_conflicts(pools)
        before = {k: self.alloc.holding(k) for k in self.requests}
        released = self.alloc.set_pools(pools, conflicting=conflicting, invalid=invalid)
        self.defs = {n: d for n, d in self.defs.items() if n in invalid} | {
            p.name: p for p in pools
        }
        self.blind = {n for n in self.blind if n in invalid and n not in self.defs}
        for k in released:
            now, had = self.alloc.holding(k), before[k]
            assert had is not None
            # keep what fits: nothing, or a part of what it had (a PreferDualStack Service)
            assert now is None or set(now.addresses) < set(had.addresses), (had, now)
        self.forget_released()
        # The allocator forgets the reuse history of addresses that left every pool.
        taken = set(self.held()) | set(self.leaving())
        self.ever_held = {a for a in self.ever_held if a in taken or self.in_some_pool(a)}

    @rule(s=requests())
    def allocate(self, s: ServiceRequest) -> None:
        before = self.alloc.snapshot()
        held_before = self.held()
        leaving_before = self.leaving()
        result = self.alloc.allocate(s)
        event(f"allocate: {type(result).__name__} {getattr(result, 'reason', '')}")
        if isinstance(result, Refusal):
            self.expect_unchanged(before)
            return
        assert self.alloc.holding(s.key) == result
        for addr in result.addresses:
            others = held_before.get(addr, set()) - {s.key}
            if others:
                cross = any(k.split("/")[0] != s.namespace for k in others)
                event(f"joined a sharer{' across namespaces' if cross else ''}")
        for addr in result.addresses:
            for other in leaving_before.get(addr, set()) - {s.key}:
                # Still shown by ``other``: only a Service that may share it with ``other`` may
                # have it (what ``other`` shows, it shows under its last request).
                assert may_share(s, self.shown_as[(other, addr)]), (
                    f"{addr} handed to {s.key} while {other} still shows it"
                )
        if not s.requested:
            self.check_fresh_pick(result, held_before, leaving_before, before.released)
        self.record(s, result)
        # idempotent: asking again changes nothing
        again = self.alloc.snapshot()
        assert self.alloc.allocate(s) == result
        assert self.alloc.snapshot() == again

    @rule(
        data=st.data(),
        name=st.sampled_from(NAMES),
        ns=st.sampled_from(NAMESPACES),
        share_ns=st.sampled_from([("*",), (), ("ns1", "ns2")]),
    )
    def join_sharer(
        self, data: st.DataObject, name: str, ns: str, share_ns: tuple[str, ...]
    ) -> None:
        """Ask for an address somebody holds, set up to (usually) be allowed to share it."""
        if not self.requests:
            return
        holder = self.requests[data.draw(st.sampled_from(sorted(self.requests)))]
        h = self.alloc.holding(holder.key)
        assert h is not None
        address = h.addresses[0]
        s = svc(
            name,
            ns,
            created=CREATED[(ns, name)],
            families=(numeric(address)[0],),
            ips=[address],
            key=holder.sharing_key or "k",
            share_ns=share_ns,
            udp=[9999],
            etp=holder.traffic_policy,
            selector=dict(holder.selector),
        )
        self.allocate(s)

    @rule(name=st.sampled_from(NAMES), ns=st.sampled_from(NAMESPACES))
    def release(self, name: str, ns: str) -> None:
        key = ServiceKey(f"{ns}/{name}")
        had = self.alloc.holding(key)
        lost = self.alloc.leaving(key)
        before = self.alloc.snapshot().released
        out = self.alloc.release(key)
        assert out == (had.addresses if had else ())
        assert self.alloc.leaving(key) == () and self.alloc.waits(key) == ()
        self.forget_poolless((*lost, *out))
        freed = [a for a in (*lost, *out) if not self.alloc.holders(a) and self.in_some_pool(a)]
        after = self.alloc.snapshot().released
        assert list(after[len(after) - len(freed) :]) == freed, "freed addresses go to the back"
        assert len(after) == len(before) + len(freed)
        self.requests.pop(key, None)

    @rule(
        s=requests(),
        addrs=st.lists(st.sampled_from(UNIVERSE), min_size=1, max_size=2, unique=True),
        hint=st.sampled_from([None, "a", "b", "c"]),
    )
    def restore(self, s: ServiceRequest, addrs: list[str], hint: str | None) -> None:
        before = self.alloc.snapshot()
        holders_before = {a: set(self.alloc.holders(a)) for a in addrs}
        result = self.alloc.restore(s, addrs, hint)
        if isinstance(result, Refusal):
            if result.reason is not Reason.REQUESTED_IP_NOT_IN_POOL:
                self.expect_unchanged(before)
                return
            # Nothing fits a pool: no holding changes, but what it shows stays taken.
            assert self.alloc.snapshot().holdings == before.holdings
            for a in addrs:
                assert set(self.alloc.holders(a)) <= holders_before[a] | {s.key}
            self.ever_held.update(self.alloc.leaving(s.key))
            for addr in self.alloc.leaving(s.key):
                self.shown_as.setdefault((s.key, addr), s)
            self.forget_released()
            return
        # What fits one pool is held (keep what fits); the rest stays taken as leaving.
        assert result.addresses and set(result.addresses) <= set(addrs)
        self.ever_held.update(self.alloc.leaving(s.key))
        for addr in self.alloc.leaving(s.key):
            self.shown_as.setdefault((s.key, addr), s)
        for a in addrs:  # a restore never takes an address from anybody
            assert holders_before[a] <= set(self.alloc.holders(a))
        if result.pool not in self.defs:
            self.blind.add(result.pool)
        self.record(s, result)
        self.forget_released()
        # idempotent
        again = self.alloc.snapshot()
        assert self.alloc.restore(s, addrs, hint) == result
        assert self.alloc.snapshot() == again

    @rule(name=st.sampled_from(NAMES), ns=st.sampled_from(NAMESPACES))
    def settle(self, name: str, ns: str) -> None:
        """The status write that stops showing lost addresses was made."""
        key = ServiceKey(f"{ns}/{name}")
        lost = self.alloc.leaving(key)
        freed = self.alloc.settle(key)
        assert set(freed) <= set(lost)
        self.forget_poolless(lost)
        assert self.alloc.leaving(key) == ()

    @rule(name=st.sampled_from(NAMES), ns=st.sampled_from(NAMESPACES))
    def retire(self, name: str, ns: str) -> None:
        """A refused Service gives up what it holds (until settled)."""
        key = ServiceKey(f"{ns}/{name}")
        had = self.alloc.holding(key)
        out = self.alloc.retire(key)
        assert out == (had.addresses if had else ())
        assert self.alloc.holding(key) is None
        for addr in out:
            assert key in self.alloc.holders(addr)
        self.requests.pop(key, None)

    @rule()
    def wake(self) -> None:
        woken = self.alloc.wake()
        assert len(set(woken)) == len(woken)
        assert self.alloc.wake() == ()  # each once until decided again

    # ------------------------------------------------------------------ invariants

    @invariant()
    def nobody_shares_unless_allowed(self) -> None:
        leaving = self.leaving()
        for addr, keys in self.held().items():
            ks = sorted(keys)
            assert set(self.alloc.holders(addr)) == keys | leaving.get(addr, set())
            for i, k1 in enumerate(ks):
                for k2 in ks[i + 1 :]:
                    r1, r2 = self.requests[k1], self.requests[k2]
                    assert may_share(r1, r2), f"{addr} held by {k1} and {k2}"
                    assert sharing_problem(r1, r2) is None

    @invariant()
    def holdings_lie_in_pools_their_service_may_use(self) -> None:
        for k, s in self.requests.items():
            h = self.alloc.holding(k)
            assert h is not None
            fams = [numeric(a)[0] for a in h.addresses]
            assert len(set(fams)) == len(fams) >= 1
            if h.pool in self.blind and h.pool not in self.defs:
                continue
            p = self.defs.get(h.pool)
            assert p is not None, f"{k} holds from unknown pool {h.pool}"
            assert s.pool is None or s.pool == h.pool
            assert may_use(p, s), f"{k} may not use {p.name}"
            members = set(addresses_of(p))
            for a in h.addresses:
                assert numeric(a) in members, f"{k}: {a} not in {p.name}"

    @invariant()
    def counters_equal_a_recount(self) -> None:
        held = self.held()
        for name, p in self.defs.items():
            c = self.alloc.counters(name)
            for fam in (V4, V6):
                members = [(f, v) for f, v in addresses_of(p) if f is fam]
                texts = {str(ipaddress.ip_address(v)) for _, v in members}
                got = c.of(fam)
                assert got.total == len(members)
                taken = set(held) | set(self.leaving())  # leaving addresses stay taken
                assert got.assigned == len(texts & taken), (name, fam)

    @invariant()
    def released_queue_is_exactly_the_used_free_addresses(self) -> None:
        released = self.alloc.snapshot().released
        assert len(set(released)) == len(released)
        taken = set(self.held()) | set(self.leaving())
        expected = {a for a in self.ever_held - taken if self.in_some_pool(a)}
        assert set(released) == expected


AllocatorMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("LBD_HYPOTHESIS_EXAMPLES", "60")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAllocatorMachine = pytest.mark.slow(AllocatorMachine.TestCase)  # ~5 s

"""The address allocator: which pool, which address, who may share it (IPAM.md).

One :class:`Allocator` lives in the active controller. It is pure and deterministic (no clock, no
randomness, no I/O) and single-threaded: the controller serialises calls.

Public surface::

    set_pools(pools, conflicting=frozenset(), invalid=frozenset()) -> tuple[ServiceKey, ...]
    allocate(svc) -> Allocation | Refusal          # idempotent; re-evaluates a changed request
    restore(svc, addresses, pool=None) -> Allocation | Refusal
    restore_all(items) -> dict[ServiceKey, Allocation | Refusal]   # oldest first
    pop_displaced() -> tuple[ServiceKey, ...]      # lost an address to an older Service in restore
    release(key) -> tuple[str, ...]                # the addresses the Service held
    holding(key) -> Allocation | None
    holders(address) -> tuple[ServiceKey, ...]
    counters(pool_name) -> PoolCounters            # KeyError for an unknown pool
    pool_status(pool_name) -> PoolStatus | None    # Ready / Conflicting / Invalid
    pools_for(svc) -> tuple[str, ...]              # pools the Service may get new addresses from
    snapshot() -> Snapshot                         # everything observable, for tests and `status`

Every refusal is a :class:`Refusal` value and a refused call changes nothing: each call first
*plans* (reads only) and then *commits* the plan in one step that cannot fail. A Service whose
changed request cannot be met keeps its old addresses and gets the Refusal; the controller decides
whether to release them (it does, with a ``ClearAssignment`` event).

How the cost stays independent of pool size (an IPv6 /64 is as cheap as a /28):

* Addresses are integers. Per range a *cursor* points at the lowest address never handed out.
  Addresses at or above the cursor that are in use (requested, restored) or released are skipped
  lazily when the cursor reaches them; every skip is paid for by the hand-out that made the
  address used, so the cursor costs amortised O(1) per allocation. avoidBuggyIPs skips .0/.255
  in O(1) each.
* Every address that lost its last holder goes to the end of an ordered queue, per pool and
  family, and globally (so a changed pool rebuilds its queue in release order). Addresses that
  leave every pool are dropped from it, which bounds its memory by the pools' use. "Used" means
  *held or in the released queue*, which is why the cursor never hands out a released address.
  The oldest released address is the first of the queue: O(1) with ``OrderedDict``.
* Requested addresses are checked by membership (bisect over a pool's sorted ranges).
* Holders per address are a tuple of keys (most addresses have one holder; a set would cost
  ~200 bytes per address).

Decisions the spec leaves open:

* Pool order for automatic assignment: pools with ``serviceAllocation`` first, by ``priority``
  ascending (pools without a priority after those with one), then by name; then pools without
  ``serviceAllocation`` by name.
* A Service with a sharing key first reuses an address of a compatible sharer in the chosen pool
  (that is what the key is for), then takes a fresh one.
* A requested address held by Services with the *same* sharing key that still may not share it
  (common port, namespace, traffic policy) is ``SharingConflict``; held by anyone else (no key,
  another key) it is ``RequestedIPUnavailable``. The message names the holder and the rule.
* Families: ``spec.ipFamilies`` as filled in by the API server is the preference order
  (default IPv4). SingleStack takes its first family; RequireDualStack needs a pool with both;
  PreferDualStack takes every family of ``ipFamilies`` the pool has. Requested addresses fix the
  families: one address for SingleStack, two for RequireDualStack, each of a listed family.
* An existing allocation *satisfies* a request when: the pool is the annotated one (if any), the
  Service may use it (serviceAllocation), every address lies in it (avoidBuggyIPs included),
  requested addresses are exactly the held ones, the families fit the policy, and every sharer is
  still compatible. A partly fitting allocation keeps what fits (e.g. the IPv4 address when a
  Service becomes dual-stack).
* Invalid pools: the allocator keeps the last valid definition it saw (so Services keep their
  addresses while a user fixes a typo); a restore naming (``pool=``) an invalid pool it never saw
  is accepted as is. Neither gives new addresses.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from lbd.core.model import (
    Allocation,
    Family,
    FamilyCounters,
    FamilyPolicy,
    Pool,
    PoolCounters,
    Reason,
    Refusal,
    ServiceKey,
    ServiceRequest,
)

_V6 = 1 << 128
"""An address key is the address as an int, IPv6 ones offset by 2**128 so families never collide."""

_BOTH = (Family.IPV4, Family.IPV6)


def _akey(family: Family, value: int) -> int:
    return value if family is Family.IPV4 else value | _V6


def _split(akey: int) -> tuple[Family, int]:
    return (Family.IPV6, akey ^ _V6) if akey >= _V6 else (Family.IPV4, akey)


def _text(akey: int) -> str:
    """Canonical text of an address key (RFC 5952 for IPv6, as :mod:`ipaddress` prints it).

    Hand-written because it is on the hot path: ``str(IPv6Address)`` costs ~10 us, this ~2 us.
    """
    if akey < _V6:
        return f"{akey >> 24}.{(akey >> 16) & 255}.{(akey >> 8) & 255}.{akey & 255}"
    v = akey ^ _V6
    words = [(v >> s) & 0xFFFF for s in range(112, -1, -16)]
    # longest run of zero words (first one on ties), compressed only if at least two long
    best_at, best_len, at, run = -1, 0, -1, 0
    for i, w in enumerate(words):
        if w == 0:
            if run == 0:
                at = i
            run += 1
            if run > best_len:
                best_at, best_len = at, run
        else:
            run = 0
    hexes = [f"{w:x}" for w in words]
    if best_len < 2:
        return ":".join(hexes)
    return ":".join(hexes[:best_at]) + "::" + ":".join(hexes[best_at + best_len :])


def _parse(address: str) -> int | None:
    """Address string -> key, or None if it is not an address."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    return int(ip) if ip.version == 4 else int(ip) | _V6


def _is_buggy(value: int) -> bool:
    """x.x.x.0 and x.x.x.255 upset some CPE firmwares' smurf protection (MetalLB's reason)."""
    return (value & 0xFF) in (0, 0xFF)


def _count_buggy(first: int, last: int) -> int:
    """How many of first..last end in .0 or .255, without enumerating."""
    return sum((last - r) // 256 - (first - 1 - r) // 256 for r in (0, 255))


def sharing_problem(a: ServiceRequest, b: ServiceRequest) -> str | None:
    """Why ``a`` and ``b`` may not hold one address, or None if they may (IPAM.md "Sharing")."""
    if not a.sharing_key or not b.sharing_key:
        who = a.key if not a.sharing_key else b.key
        return f"{who} has no allow-shared-ip key"
    if a.sharing_key != b.sharing_key:
        return f"sharing keys differ ({a.sharing_key!r} vs {b.key}'s {b.sharing_key!r})"
    if a.namespace != b.namespace:
        if not ({"*", b.namespace} & a.sharing_namespaces):
            return f"{a.key} does not allow sharing with namespace {b.namespace!r}"
        if not ({"*", a.namespace} & b.sharing_namespaces):
            return f"{b.key} does not allow sharing with namespace {a.namespace!r}"
    common = a.ports & b.ports
    if common:
        p = min(common)
        return f"both {a.key} and {b.key} use {p.protocol}/{p.port}"
    if a.traffic_policy != b.traffic_policy:
        return f"externalTrafficPolicy differs from {b.key}'s ({b.traffic_policy})"
    if a.traffic_policy == "Local" and a.selector != b.selector:
        return f"externalTrafficPolicy Local needs the same selector as {b.key}"
    return None


def _may_use(pool: Pool, svc: ServiceRequest) -> bool:
    alloc = pool.allocation
    return alloc is None or alloc.matches(svc.namespace, svc.namespace_labels, svc.labels)


class PoolStatus(StrEnum):
    """Whether a pool gives new addresses."""

    READY = "Ready"
    CONFLICTING = "Conflicting"
    INVALID = "Invalid"


class _RangeState:
    __slots__ = ("base", "buggy", "cursor", "family", "first", "last")

    def __init__(self, family: Family, first: int, last: int, buggy: bool) -> None:
        self.family = family
        self.first = first
        self.last = last
        self.buggy = buggy
        self.base = 0 if family is Family.IPV4 else _V6
        self.cursor = first  # lowest address not yet known to be used


class _PoolState:
    """A pool plus its cursors, released queues and counters."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.status = PoolStatus.READY
        self.others: frozenset[str] = frozenset()  # pools it conflicts with, for messages
        buggy = pool.avoid_buggy_ips
        self.ranges: dict[Family, list[_RangeState]] = {f: [] for f in _BOTH}
        for r in sorted(pool.ranges):
            self.ranges[r.family].append(
                _RangeState(r.family, r.first, r.last, buggy and r.family is Family.IPV4)
            )
        self.firsts = {f: [rs.first for rs in self.ranges[f]] for f in _BOTH}
        self.families = frozenset(f for f in _BOTH if self.ranges[f])
        self.released: dict[Family, OrderedDict[int, None]] = {f: OrderedDict() for f in _BOTH}
        self.assigned = dict.fromkeys(_BOTH, 0)
        self.total = dict.fromkeys(_BOTH, 0)
        for f in _BOTH:
            for rs in self.ranges[f]:
                self.total[f] += rs.last - rs.first + 1
                if rs.buggy:
                    self.total[f] -= _count_buggy(rs.first, rs.last)

    @property
    def name(self) -> str:
        return self.pool.name

    def contains(self, akey: int) -> bool:
        family, value = _split(akey)
        ranges = self.ranges[family]
        i = bisect.bisect_right(self.firsts[family], value) - 1
        if i < 0 or value > ranges[i].last:
            return False
        return not (ranges[i].buggy and _is_buggy(value))


@dataclass(slots=True)
class _Holding:
    svc: ServiceRequest
    pool: str
    akeys: tuple[int, ...]
    addresses: tuple[str, ...]
    cached: Allocation | None = None  # built once: frozen dataclasses are slow to construct

    def allocation(self) -> Allocation:
        if self.cached is None:
            self.cached = Allocation(self.svc.key, self.pool, self.addresses)
        return self.cached


@dataclass(frozen=True)
class _Wanted:
    """A request, parsed: families in preference order and requested address keys (in order)."""

    families: tuple[Family, ...]
    requested: tuple[int, ...]
    policy: FamilyPolicy
    # need() per pool family set; at most three keys. Cached because _Wanted values are cached.
    memo: dict[frozenset[Family], tuple[Family, ...] | None] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def need(self, families: frozenset[Family]) -> tuple[Family, ...] | None:
        """Families to take from a pool that has ``families``; None if it cannot serve."""
        try:
            return self.memo[families]
        except KeyError:
            got = self.memo[families] = self._need(families)
            return got

    def _need(self, families: frozenset[Family]) -> tuple[Family, ...] | None:
        if self.policy is FamilyPolicy.SINGLE_STACK:
            return self.families[:1] if self.families[0] in families else None
        if self.policy is FamilyPolicy.REQUIRE_DUAL_STACK:
            return self.families if len(families) == 2 else None
        got = tuple(f for f in self.families if f in families)
        return got or None


@dataclass(frozen=True)
class Snapshot:
    """Everything observable about an allocator (tests compare these before/after a call)."""

    holdings: tuple[Allocation, ...]
    released: tuple[str, ...]
    counters: tuple[PoolCounters, ...]
    statuses: tuple[tuple[str, str], ...]


class Allocator:
    """In-memory address allocator; see the module docstring for the rules and the surface."""

    def __init__(self) -> None:
        self._pools: dict[str, _PoolState] = {}
        self._invalid: frozenset[str] = frozenset()
        self._auto_order: list[_PoolState] = []
        self._holdings: dict[ServiceKey, _Holding] = {}
        self._holders: dict[int, tuple[ServiceKey, ...]] = {}
        # Every address whose last holder left, oldest release first. Together with _holders
        # this is the set of addresses ever handed out (and still in a pool): the cursors skip
        # exactly these.
        self._released: OrderedDict[int, None] = OrderedDict()
        self._sharing: dict[str, dict[int, int]] = {}  # key -> address -> holders with that key
        # (first, last, pool, avoid buggy) of every range, by first: address -> pools in O(log n)
        self._index: list[tuple[int, int, _PoolState, bool]] = []
        self._disjoint = True  # no two ranges overlap: the common case, one bisect suffices
        self._index_firsts: list[int] = []
        self._index_maxlast: list[int] = []
        self._displaced: list[ServiceKey] = []

    # ------------------------------------------------------------------ pools

    def set_pools(
        self,
        pools: Iterable[Pool],
        conflicting: Iterable[str] = frozenset(),
        invalid: Iterable[str] = frozenset(),
    ) -> tuple[ServiceKey, ...]:
        """Install a new configuration; return (sorted) the keys released because their
        addresses now lie outside every pool they may use. Everyone else keeps addresses.

        ``conflicting`` and ``invalid`` pools give no new addresses. An invalid pool missing from
        ``pools`` keeps the last valid definition this allocator saw, if any.
        """
        conflicting = frozenset(conflicting)
        self._invalid = frozenset(invalid)
        new: dict[str, _PoolState] = {}
        rebuilt = False
        for pool in pools:
            old = self._pools.get(pool.name)
            if old is not None and old.pool == pool:
                new[pool.name] = old
            else:
                new[pool.name] = _PoolState(pool)
                rebuilt = True
        for name in self._invalid:
            if name not in new and name in self._pools:
                new[name] = self._pools[name]
        if set(new) != set(self._pools):
            rebuilt = True
        for name, ps in new.items():
            if name in self._invalid:
                ps.status = PoolStatus.INVALID
            elif name in conflicting:
                ps.status = PoolStatus.CONFLICTING
            else:
                ps.status = PoolStatus.READY
        self._pools = new
        self._auto_order = sorted(
            (ps for ps in new.values() if ps.pool.auto_assign), key=_auto_rank
        )
        if rebuilt:
            self._rebuild_index()
        for ps in new.values():
            # Only for messages, and only conflicting pools need it (pairwise, but rare).
            ps.others = frozenset(
                o.name
                for o in new.values()
                if ps.status is PoolStatus.CONFLICTING and o is not ps and _overlap(o, ps)
            )

        released: list[ServiceKey] = []
        for key, h in list(self._holdings.items()):
            if h.pool in self._invalid:
                continue
            if self._fits(h.svc, h.pool, h.akeys):
                continue
            other = self._pool_for_held(h.svc, h.akeys)
            if other is None:
                self.release(key)
                released.append(key)
            else:
                h.pool, h.cached = other.name, None
        return tuple(sorted(released))

    def _rebuild_index(self) -> None:
        """Recompute the address -> pools index, assigned counts and released queues."""
        self._index = sorted(
            (
                (rs.first | rs.base, rs.last | rs.base, ps, rs.buggy)
                for ps in self._pools.values()
                for f in _BOTH
                for rs in ps.ranges[f]
            ),
            key=lambda t: (t[0], t[1], t[2].name),
        )
        self._index_firsts = [t[0] for t in self._index]
        self._index_maxlast = []
        top = -1
        self._disjoint = True
        for first, last, _, _ in self._index:
            if first <= top:
                self._disjoint = False
            top = max(top, last)
            self._index_maxlast.append(top)
        for ps in self._pools.values():
            for f in _BOTH:
                ps.assigned[f] = 0
                ps.released[f].clear()
        for akey in self._holders:
            fam = _split(akey)[0]
            for ps in self._containing(akey):
                ps.assigned[fam] += 1
        gone: list[int] = []
        for akey in self._released:
            fam, value = _split(akey)
            pools = self._containing(akey)
            for ps in pools:
                ps.released[fam][value] = None
            if not pools:
                gone.append(akey)
        # Forget the history of addresses no pool has any more, so memory stays bounded by the
        # pools' use (a deleted and re-created pool starts with a clean history).
        for akey in gone:
            del self._released[akey]

    def _containing(self, akey: int) -> list[_PoolState]:
        """Pools that contain ``akey`` (more than one only while pools overlap)."""
        i = bisect.bisect_right(self._index_firsts, akey) - 1
        if self._disjoint:
            if i < 0:
                return []
            _, last, ps, buggy = self._index[i]
            return [ps] if akey <= last and not (buggy and _is_buggy(akey)) else []
        found: list[_PoolState] = []
        while i >= 0 and self._index_maxlast[i] >= akey:
            first, last, ps, buggy = self._index[i]
            if first <= akey <= last and not (buggy and _is_buggy(akey)) and ps not in found:
                found.append(ps)
            i -= 1
        return found

    def pools_for(self, svc: ServiceRequest) -> tuple[str, ...]:
        """Pools ``svc`` may get new addresses from, in the order they are tried."""
        if svc.pool is not None:
            ps = self._pools.get(svc.pool)
            ok = ps is not None and ps.status is PoolStatus.READY and _may_use(ps.pool, svc)
            return (svc.pool,) if ok else ()
        return tuple(
            ps.name
            for ps in self._auto_order
            if ps.status is PoolStatus.READY and _may_use(ps.pool, svc)
        )

    def counters(self, pool_name: str) -> PoolCounters:
        """Total / assigned / available per family of a pool (raises KeyError if unknown)."""
        ps = self._pools[pool_name]
        c = {f: FamilyCounters(ps.total[f], ps.assigned[f]) for f in _BOTH}
        return PoolCounters(pool_name, c[Family.IPV4], c[Family.IPV6])

    def pool_status(self, pool_name: str) -> PoolStatus | None:
        """Ready / Conflicting / Invalid, or None for a pool the allocator does not know."""
        ps = self._pools.get(pool_name)
        return None if ps is None else ps.status

    # ------------------------------------------------------------------ queries

    def holding(self, key: ServiceKey) -> Allocation | None:
        """What ``key`` holds, or None."""
        h = self._holdings.get(key)
        return None if h is None else h.allocation()

    def holders(self, address: str) -> tuple[ServiceKey, ...]:
        """Services holding ``address`` (empty if none or not an address)."""
        akey = _parse(address)
        return () if akey is None else self._holders.get(akey, ())

    def snapshot(self) -> Snapshot:
        """Everything observable. O(state): for tests and diagnostics, not the hot path."""
        return Snapshot(
            holdings=tuple(self._holdings[k].allocation() for k in sorted(self._holdings)),
            released=tuple(_text(a) for a in self._released),
            counters=tuple(self.counters(n) for n in sorted(self._pools)),
            statuses=tuple((n, self._pools[n].status.value) for n in sorted(self._pools)),
        )

    # ------------------------------------------------------------------ allocate

    def allocate(self, svc: ServiceRequest) -> Allocation | Refusal:
        """Give ``svc`` addresses, or keep the ones it holds if they still satisfy its request."""
        wanted = _parse_request(svc)
        if isinstance(wanted, Refusal):
            return wanted
        current = self._holdings.get(svc.key)
        if current is not None and self._satisfies(svc, current, wanted):
            self._commit(svc, current.pool, current.akeys)
            return self._holdings[svc.key].allocation()
        plan = self._plan(svc, wanted)
        if isinstance(plan, Refusal):
            return plan
        self._commit(svc, plan[0], plan[1])
        return self._holdings[svc.key].allocation()

    def _satisfies(self, svc: ServiceRequest, h: _Holding, wanted: _Wanted) -> bool:
        if svc.pool is not None and svc.pool != h.pool:
            return False
        if not self._fits(svc, h.pool, h.akeys):
            return False
        if wanted.requested:
            if set(wanted.requested) != set(h.akeys):
                return False
        else:
            fams = [_split(a)[0] for a in h.akeys]
            if wanted.policy is FamilyPolicy.SINGLE_STACK and fams != [wanted.families[0]]:
                return False
            if wanted.policy is FamilyPolicy.REQUIRE_DUAL_STACK and set(fams) != set(_BOTH):
                return False
            if not set(fams) <= set(wanted.families):
                return False
        return all(self._share_problem(svc, a) is None for a in h.akeys)

    def _fits(self, svc: ServiceRequest, pool_name: str, akeys: tuple[int, ...]) -> bool:
        """Whether ``akeys`` all lie in ``pool_name`` and ``svc`` may use that pool."""
        ps = self._pools.get(pool_name)
        if ps is None:
            return pool_name in self._invalid
        if svc.pool is not None and svc.pool != pool_name:
            return False
        return _may_use(ps.pool, svc) and all(ps.contains(a) for a in akeys)

    def _pool_for_held(self, svc: ServiceRequest, akeys: tuple[int, ...]) -> _PoolState | None:
        """Another pool that holds all of ``akeys`` and ``svc`` may use (pools changed)."""
        candidates = [ps for ps in self._containing(akeys[0]) if self._fits(svc, ps.name, akeys)]
        candidates.sort(key=lambda ps: (ps.status is not PoolStatus.READY, ps.name))
        return candidates[0] if candidates else None

    def _plan(self, svc: ServiceRequest, wanted: _Wanted) -> tuple[str, tuple[int, ...]] | Refusal:
        """Decide what ``svc`` would get, without changing anything."""
        if svc.pool is not None:
            ps = self._pools.get(svc.pool)
            if ps is None:
                why = "is invalid" if svc.pool in self._invalid else "does not exist"
                return Refusal(
                    Reason.NO_MATCHING_POOL, f"pool {svc.pool!r} (lbd.io/address-pool) {why}"
                )
            if not _may_use(ps.pool, svc):
                return Refusal(
                    Reason.NO_MATCHING_POOL,
                    f"pool {ps.name!r} does not serve {svc.key} (serviceAllocation)",
                )
            for akey in wanted.requested:
                if not ps.contains(akey):
                    return Refusal(
                        Reason.REQUESTED_IP_NOT_IN_POOL,
                        f"requested {_text(akey)} is not in pool {ps.name!r}",
                    )
            unusable = _unusable(ps)
            if unusable is not None:
                return unusable
            if wanted.requested:
                return self._take_requested(svc, ps, wanted)
            got = self._take_from_pool(svc, ps, wanted)
            if got is None:
                return _no_room(svc, wanted, [ps])
            return got
        if wanted.requested:
            return self._plan_requested(svc, wanted)
        need_of = wanted.need
        for ps in self._auto_order:  # fast path: the first pool that can serve wins
            if (
                ps.status is PoolStatus.READY
                and need_of(ps.families) is not None
                and _may_use(ps.pool, svc)
            ):
                got = self._take_from_pool(svc, ps, wanted)
                if got is not None:
                    return got
        # Refused: find out why (only now, so the common path stays short).
        matching = [ps for ps in self._auto_order if _may_use(ps.pool, svc)]
        ready = [ps for ps in matching if ps.status is PoolStatus.READY]
        if not ready:
            refusal = _unusable(matching[0]) if matching else None
            if refusal is not None:  # every matching pool is conflicting or invalid
                return refusal
            return Refusal(Reason.NO_MATCHING_POOL, f"no pool with autoAssign serves {svc.key}")
        return _no_room(svc, wanted, ready)

    def _plan_requested(
        self, svc: ServiceRequest, wanted: _Wanted
    ) -> tuple[str, tuple[int, ...]] | Refusal:
        first = wanted.requested[0]
        candidates = [
            ps for ps in self._containing(first) if self._fits(svc, ps.name, wanted.requested)
        ]
        if not candidates:
            for akey in wanted.requested:
                if not any(_may_use(ps.pool, svc) for ps in self._containing(akey)):
                    return Refusal(
                        Reason.REQUESTED_IP_NOT_IN_POOL,
                        f"requested {_text(akey)} is in no pool {svc.key} may use",
                    )
            return Refusal(
                Reason.REQUESTED_IP_NOT_IN_POOL,
                f"requested {', '.join(_text(a) for a in wanted.requested)} are not in one pool",
            )
        candidates.sort(key=lambda ps: (ps.status is not PoolStatus.READY, _auto_rank(ps)))
        ps = candidates[0]
        return _unusable(ps) or self._take_requested(svc, ps, wanted)

    def _take_requested(
        self, svc: ServiceRequest, ps: _PoolState, wanted: _Wanted
    ) -> tuple[str, tuple[int, ...]] | Refusal:
        for akey in wanted.requested:
            problem = self._share_problem(svc, akey)
            if problem is not None:
                others = [k for k in self._holders[akey] if k != svc.key]
                same_key = bool(svc.sharing_key) and all(
                    self._holdings[k].svc.sharing_key == svc.sharing_key for k in others
                )
                reason = Reason.SHARING_CONFLICT if same_key else Reason.REQUESTED_IP_UNAVAILABLE
                return Refusal(reason, f"{_text(akey)} is in use by {', '.join(others)}: {problem}")
        return ps.name, wanted.requested

    def _take_from_pool(
        self, svc: ServiceRequest, ps: _PoolState, wanted: _Wanted
    ) -> tuple[str, tuple[int, ...]] | None:
        need = wanted.need(ps.families)
        if need is None:
            return None
        current = self._holdings.get(svc.key)
        if current is None and not svc.sharing_key and len(need) == 1:
            fresh = self._fresh(ps, need[0])  # the common case: one fresh address
            return None if fresh is None else (ps.name, (fresh,))
        got: list[int] = []
        for fam in need:
            akey = None
            if current is not None:
                akey = self._keepable(svc, ps, fam, current)
            if akey is None and svc.sharing_key:
                akey = self._shareable(svc, ps, fam)
            if akey is None:
                akey = self._fresh(ps, fam)
            if akey is None:
                return None
            got.append(akey)
        return ps.name, tuple(got)

    def _keepable(
        self, svc: ServiceRequest, ps: _PoolState, fam: Family, current: _Holding | None
    ) -> int | None:
        """An address of ``fam`` the Service already holds and may keep in ``ps``."""
        if current is None:
            return None
        for akey in current.akeys:
            if (
                _split(akey)[0] is fam
                and ps.contains(akey)
                and self._share_problem(svc, akey) is None
            ):
                return akey
        return None

    def _shareable(self, svc: ServiceRequest, ps: _PoolState, fam: Family) -> int | None:
        """An address in ``ps`` already held by Services ``svc`` may share with."""
        if not svc.sharing_key:
            return None
        for akey in self._sharing.get(svc.sharing_key, {}):
            if (
                _split(akey)[0] is fam
                and ps.contains(akey)
                and self._share_problem(svc, akey) is None
            ):
                return akey
        return None

    def _fresh(self, ps: _PoolState, fam: Family) -> int | None:
        """Lowest never-used address, else the one released longest ago; None if full."""
        holders, released = self._holders, self._released
        for rs in ps.ranges[fam]:
            # Lazily move the cursor over used and buggy addresses. This changes no observable
            # state (those addresses can never be a cursor pick), so planning may do it.
            v, base, last = rs.cursor, rs.base, rs.last
            while v <= last:
                if rs.buggy and _is_buggy(v):
                    v += 1
                    continue
                ak = v | base
                if ak in holders or ak in released:
                    v += 1
                    continue
                break
            rs.cursor = v
            if v <= last:
                return v | rs.base
        queue = ps.released[fam]
        if queue:
            return next(iter(queue)) | (0 if fam is Family.IPV4 else _V6)
        return None

    def _share_problem(self, svc: ServiceRequest, akey: int) -> str | None:
        for other in self._holders.get(akey, ()):
            if other != svc.key:
                problem = sharing_problem(svc, self._holdings[other].svc)
                if problem is not None:
                    return problem
        return None

    # ------------------------------------------------------------------ commit / release

    def _commit(self, svc: ServiceRequest, pool: str, akeys: tuple[int, ...]) -> None:
        """Make ``svc`` hold exactly ``akeys`` from ``pool``. Cannot fail."""
        key = svc.key
        old = self._holdings.get(key)
        if old is None:  # the common case, kept short
            for akey in akeys:
                self._hold(key, akey)
            h = _Holding(svc, pool, akeys, tuple(map(_text, akeys)))
            self._holdings[key] = h
            if svc.sharing_key:
                self._index_sharing(h)
            return
        self._unindex_sharing(old)
        for akey in old.akeys:
            if akey not in akeys:
                self._unhold(key, akey)
        for akey in akeys:
            if akey not in old.akeys:
                self._hold(key, akey)
        addresses = old.addresses if old.akeys == akeys else tuple(map(_text, akeys))
        h = _Holding(svc, pool, akeys, addresses)
        self._holdings[key] = h
        self._index_sharing(h)

    def _hold(self, key: ServiceKey, akey: int) -> None:
        holders = self._holders.get(akey)
        if holders is not None:
            self._holders[akey] = (*holders, key)
            return
        self._holders[akey] = (key,)
        was_released = self._released.pop(akey, 0) is None
        fam, value = (Family.IPV6, akey ^ _V6) if akey >= _V6 else (Family.IPV4, akey)
        for ps in self._containing(akey):
            if was_released:
                ps.released[fam].pop(value, None)
            ps.assigned[fam] += 1

    def _unhold(self, key: ServiceKey, akey: int) -> None:
        holders = tuple(k for k in self._holders[akey] if k != key)
        if holders:
            self._holders[akey] = holders
            return
        del self._holders[akey]
        fam, value = _split(akey)
        pools = self._containing(akey)
        if pools:  # an address of no pool has no reuse order to keep (see _rebuild_index)
            self._released[akey] = None
        for ps in pools:
            ps.released[fam][value] = None
            ps.assigned[fam] -= 1

    def _index_sharing(self, h: _Holding) -> None:
        sk = h.svc.sharing_key
        if sk:
            index = self._sharing.setdefault(sk, {})
            for akey in h.akeys:
                index[akey] = index.get(akey, 0) + 1

    def _unindex_sharing(self, h: _Holding) -> None:
        sk = h.svc.sharing_key
        if not sk:
            return
        index = self._sharing[sk]
        for akey in h.akeys:
            left = index[akey] - 1
            if left:
                index[akey] = left
            else:
                del index[akey]
        if not index:
            del self._sharing[sk]

    def release(self, key: ServiceKey) -> tuple[str, ...]:
        """Forget what ``key`` holds; return those addresses (an address shared with another
        Service stays held by it). Releasing a key that holds nothing returns ``()``."""
        h = self._holdings.pop(key, None)
        if h is None:
            return ()
        self._unindex_sharing(h)
        for akey in h.akeys:
            self._unhold(key, akey)
        return h.addresses

    # ------------------------------------------------------------------ restore

    def restore(
        self, svc: ServiceRequest, addresses: Iterable[str], pool: str | None = None
    ) -> Allocation | Refusal:
        """Re-register addresses ``svc`` already holds (from its status). Idempotent.

        ``pool`` is the ``ip-allocated-from-pool`` annotation, a hint. If an address is held by
        a Service that may not share it, the older by ``(created, key)`` keeps it: a younger
        incumbent is released and reported by :meth:`pop_displaced`; an older incumbent makes
        this call a Refusal (``RequestedIPUnavailable``) and the caller reallocates ``svc``.
        """
        addresses = tuple(addresses)
        akeys_list: list[int] = []
        for text in addresses:
            akey = _parse(text)
            if akey is None:
                return Refusal(Reason.INVALID_REQUEST, f"status address {text!r} is not an IP")
            akeys_list.append(akey)
        akeys = tuple(akeys_list)
        fams = [_split(a)[0] for a in akeys]
        if not akeys or len(set(fams)) != len(fams):
            return Refusal(
                Reason.INVALID_REQUEST,
                f"status addresses {list(addresses)!r}: want one or two of different families",
            )
        current = self._holdings.get(svc.key)
        if (
            current is not None
            and set(current.akeys) == set(akeys)
            and self._fits(svc, current.pool, current.akeys)
        ):
            self._commit(svc, current.pool, current.akeys)
            return self._holdings[svc.key].allocation()
        pool_name = self._restore_pool(svc, akeys, pool)
        if pool_name is None:
            return Refusal(
                Reason.REQUESTED_IP_NOT_IN_POOL,
                f"{', '.join(_text(a) for a in akeys)} not in one pool {svc.key} may use",
            )
        younger: list[ServiceKey] = []
        for akey in akeys:
            for other in self._holders.get(akey, ()):
                if other == svc.key or other in younger:
                    continue
                theirs = self._holdings[other].svc
                problem = sharing_problem(svc, theirs)
                if problem is None:
                    continue
                if theirs.age_rank < svc.age_rank:
                    return Refusal(
                        Reason.REQUESTED_IP_UNAVAILABLE,
                        f"{_text(akey)} is held by older {other}: {problem}",
                    )
                younger.append(other)
        for other in younger:
            self.release(other)
            self._displaced.append(other)
        self._commit(svc, pool_name, akeys)
        return self._holdings[svc.key].allocation()

    def _restore_pool(
        self, svc: ServiceRequest, akeys: tuple[int, ...], hint: str | None
    ) -> str | None:
        if hint is not None and hint in self._invalid and hint not in self._pools:
            return hint  # cannot check ranges of a pool never seen valid; keep as is
        candidates = [ps for ps in self._containing(akeys[0]) if self._fits(svc, ps.name, akeys)]
        if not candidates:
            return None
        candidates.sort(
            key=lambda ps: (ps.name != hint, ps.status is not PoolStatus.READY, ps.name)
        )
        return candidates[0].name

    def restore_all(
        self, items: Iterable[tuple[ServiceRequest, Iterable[str], str | None]]
    ) -> dict[ServiceKey, Allocation | Refusal]:
        """Restore many Services oldest first, so nobody is displaced: the younger of two
        claimants gets the Refusal. Items are ``(svc, addresses, pool_hint)``."""
        ordered = sorted(items, key=lambda item: item[0].age_rank)
        return {svc.key: self.restore(svc, addrs, hint) for svc, addrs, hint in ordered}

    def pop_displaced(self) -> tuple[ServiceKey, ...]:
        """Services that lost their addresses to an older claimant in :meth:`restore` since
        the last call; the controller reallocates them."""
        out, self._displaced = tuple(self._displaced), []
        return out


# ---------------------------------------------------------------------- helpers


def _auto_rank(ps: _PoolState) -> tuple[int, int, int, str]:
    alloc = ps.pool.allocation
    if alloc is None:
        return (1, 0, 0, ps.name)
    if alloc.priority is None:
        return (0, 1, 0, ps.name)
    return (0, 0, alloc.priority, ps.name)


def _overlap(a: _PoolState, b: _PoolState) -> bool:
    return any(
        x.first <= y.last and y.first <= x.last
        for f in _BOTH
        for x in a.ranges[f]
        for y in b.ranges[f]
    )


def _unusable(ps: _PoolState) -> Refusal | None:
    if ps.status is PoolStatus.CONFLICTING:
        others = ", ".join(sorted(ps.others)) or "another pool"
        return Refusal(
            Reason.POOL_CONFLICTING,
            f"pool {ps.name!r} overlaps {others}; it gives no new addresses until fixed",
        )
    if ps.status is PoolStatus.INVALID:
        return Refusal(Reason.NO_MATCHING_POOL, f"pool {ps.name!r} is invalid")
    return None


def _no_room(svc: ServiceRequest, wanted: _Wanted, pools: list[_PoolState]) -> Refusal:
    names = ", ".join(repr(ps.name) for ps in pools)
    if all(wanted.need(ps.families) is None for ps in pools):
        fams = (
            "+".join(wanted.families)
            if wanted.policy is not FamilyPolicy.SINGLE_STACK
            else (wanted.families[0])
        )
        return Refusal(
            Reason.NO_MATCHING_POOL,
            f"no pool {svc.key} may use has {fams} addresses ({wanted.policy}); tried {names}",
        )
    return Refusal(Reason.POOL_EXHAUSTED, f"no free address for {svc.key} in pool {names}")


_WANTED_CACHE: dict[tuple[tuple[Family, ...], FamilyPolicy], _Wanted | Refusal] = {}


def _parse_request(svc: ServiceRequest) -> _Wanted | Refusal:
    if not svc.requested:
        # Immutable and a handful of distinct values: cache them (hot path).
        cache_key = (svc.ip_families, svc.family_policy)
        cached = _WANTED_CACHE.get(cache_key)
        if cached is None:
            cached = _WANTED_CACHE[cache_key] = _wanted(svc)
        return cached
    return _wanted(svc)


def _wanted(svc: ServiceRequest) -> _Wanted | Refusal:
    listed = tuple(dict.fromkeys(svc.ip_families))
    if svc.family_policy is FamilyPolicy.SINGLE_STACK:
        families = listed[:1] or (Family.IPV4,)
    elif svc.family_policy is FamilyPolicy.REQUIRE_DUAL_STACK:
        first = listed[0] if listed else Family.IPV4
        families = (first, Family.IPV6 if first is Family.IPV4 else Family.IPV4)
    else:
        families = listed or (Family.IPV4, Family.IPV6)
    if not svc.requested:
        return _Wanted(families, (), svc.family_policy)
    keys: list[int] = []
    for text in svc.requested:
        akey = _parse(text)
        if akey is None:
            return Refusal(Reason.INVALID_REQUEST, f"requested {text!r} is not an IP address")
        keys.append(akey)
    fams = [_split(a)[0] for a in keys]
    if len(set(fams)) != len(fams):
        return Refusal(
            Reason.INVALID_REQUEST, f"requested {', '.join(svc.requested)}: one address per family"
        )
    for fam, text in zip(fams, svc.requested, strict=True):
        if fam not in families:
            return Refusal(
                Reason.INVALID_REQUEST,
                f"requested {text} is {fam} but the Service's families are {'+'.join(families)}",
            )
    if svc.family_policy is FamilyPolicy.SINGLE_STACK and len(keys) != 1:
        return Refusal(
            Reason.INVALID_REQUEST, "SingleStack Service requests two addresses; ask for one"
        )
    if svc.family_policy is FamilyPolicy.REQUIRE_DUAL_STACK and len(keys) != 2:
        return Refusal(
            Reason.INVALID_REQUEST, "RequireDualStack Service needs one address of each family"
        )
    order = sorted(range(len(keys)), key=lambda i: families.index(fams[i]))
    return _Wanted(families, tuple(keys[i] for i in order), svc.family_policy)

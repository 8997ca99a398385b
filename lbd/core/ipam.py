"""The address allocator: which pool, which address, who may share it, who waits (docs/IPAM.md).

One :class:`Allocator` lives in the active controller. It is pure and deterministic (no clock, no
randomness, no I/O) and single-threaded: the controller serialises calls.

Public surface::

    set_pools(pools, conflicting={}, invalid={}) -> tuple[ServiceKey, ...]  # lost addresses
    allocate(svc) -> Allocation | Refusal          # idempotent; re-evaluates a changed request
    restore(svc, addresses, pool=None) -> Allocation | Refusal
    restore_all(items) -> dict[ServiceKey, Allocation | Refusal]   # oldest first
    retire(key) -> tuple[str, ...]   # the Service gives its addresses up; they stay taken ...
    settle(key) -> tuple[str, ...]   # ... until its status no longer shows them
    release(key) -> tuple[str, ...]  # the Service is gone: its addresses are free now
    wake() -> tuple[ServiceKey, ...] # waiting Services to decide again, oldest first
    waits(key) -> tuple[Wait, ...]; waiting_on(pool) -> int; stop_waiting(key)
    holding(key) -> Allocation | None; holders(address) -> tuple[ServiceKey, ...]
    counters(pool_name) -> PoolCounters            # KeyError for an unknown pool
    pools_for(svc) -> tuple[str, ...]              # pools the Service may get new addresses from
    snapshot() -> Snapshot                         # every address fact, for tests

Every refusal is a :class:`Refusal` value, and a refused call changes no address: each call first
*plans* (reads only) and then *commits* the plan in one step that cannot fail. A Service whose
changed request cannot be met keeps its old addresses and gets the Refusal; the controller decides
whether to give them up (it does, with ``retire`` and a ``ClearAssignment`` event).

**An address on the wire is never handed out twice.** An address a Service loses while it still
exists (a move to a new address, a refusal, a pool change) is *leaving*: it stays taken, by that
Service, until the controller has written the status that no longer shows it and calls
:meth:`settle`. Only :meth:`release` (the Service was deleted) frees addresses at once.

**Liveness: who waits for what** (docs/IPAM.md "Liveness"). A refused Service is remembered as
waiting, keyed by what would unblock it, and re-decided only when that changes:

* ``PoolExhausted``: a free address of a family in a pool (one :class:`Wait` per pool and
  family that lacked room). Freeing one address wakes only as many waiters of that pool and
  family as there are free addresses, oldest first.
* ``RequestedIPUnavailable`` / ``SharingConflict``: the requested address; any change of its
  holders (one leaves, one changes its sharing key or ports) wakes its waiters.
* ``NoMatchingPool``, ``PoolConflicting``, ``RequestedIPNotInPool``: the pool configuration; any
  change of it wakes every waiter (rare, and bounded by the number of waiters).
* A PreferDualStack Service holding one family waits for the other in its own pool.
* A Service with an allow-shared-ip key refused ``PoolExhausted`` also waits for what is held
  under its key (a partner's address it may share): a holding with that key that changes, or a
  change of the holders of an address held under it, wakes its waiters (chaos, issue 10).

So freeing one address with 10 000 Services of which 1 000 wait costs one re-decision, not
10 000. Why an index in the allocator and not in the controller: the allocator is the one that
knows why it refused and when an address frees, so the rule lives next to the decisions it
depends on, in pure code that table tests can drive.

**Fairness**: the oldest waiting Service (creationTimestamp, then namespace/name) gets a freed
address. The allocator enforces it rather than hoping the work queue runs in the right order:
a Service may take a fresh address of a pool and family only while more addresses are free than
older Services wait for that pool and family (the others are *kept* for them), and a free
requested address is kept for an older Service waiting for exactly that address.

How the cost stays independent of pool size (an IPv6 /64 is as cheap as a /28):

* Addresses are integers. Per range a *cursor* points at the lowest address never handed out.
  Addresses at or above the cursor that are in use (requested, restored) or released are skipped
  lazily when the cursor reaches them; every skip is paid for by the hand-out that made the
  address used, so the cursor costs amortised O(1) per allocation. avoidBuggyIPs skips .0/.255
  in O(1) each.
* Every address that lost its last holder goes to the end of an ordered queue, per pool and
  family, and globally (so a changed pool rebuilds its queue in release order). Addresses that
  leave every pool are dropped from it, which bounds its memory by the pools' use. "Used" means
  *held (or leaving) or in the released queue*, which is why the cursor never hands out a
  released address. The oldest released address is the first of the queue: O(1).
* Requested addresses are checked by membership (bisect over a pool's sorted ranges).
* Holders per address are a tuple of keys (most addresses have one holder; a set would cost
  ~200 bytes per address). Waiters per pool and family are a sorted list (bisect).

Decisions the spec leaves open:

* Pool order for automatic assignment: pools with ``serviceAllocation`` first, by ``priority``
  ascending (pools without a priority after those with one), then by name; then pools without
  ``serviceAllocation`` by name. A PreferDualStack Service without a pool annotation or request
  takes the first pool in that order that can give both families, else the first that can give
  its primary family, else the other one (MetalLB's order).
* A Service with a sharing key first reuses an address of a compatible sharer in the chosen pool
  (that is what the key is for), then takes a fresh one.
* A requested address held by Services with the *same* sharing key that still may not share it
  (common port, namespace, traffic policy) is ``SharingConflict``; held by anyone else (no key,
  another key) it is ``RequestedIPUnavailable``. The message names the holder and the rule.
* Families: ``spec.ipFamilies`` as filled in by the API server is the preference order
  (default IPv4). SingleStack takes its first family; RequireDualStack needs a pool with both;
  PreferDualStack takes every family of ``ipFamilies`` the pool can give now and waits for the
  others. Requested addresses fix the families and are honoured exactly: one address for
  SingleStack, two for RequireDualStack, one or two for PreferDualStack.
* An existing allocation *satisfies* a request when: the pool is the annotated one (if any), the
  Service may use it (serviceAllocation), every address lies in it (avoidBuggyIPs included),
  requested addresses are exactly the held ones, the families fit the policy, and every sharer is
  still compatible.
* Pool changes keep what fits: a holder whose addresses all lie in another pool it may use moves
  to that pool; a PreferDualStack holder keeps the family that still fits; only what fits
  nowhere is given up (MetalLB drops both addresses of a dual-stack Service when one leaves the
  pool; keeping the one that still works spares its clients and DNS).
* Restores never take an address from its holder: at the start of a session
  :meth:`restore_all` goes oldest first (so the older of two claimants keeps an address), and a
  later claim on an address somebody holds is refused (the claimant's status is stale).
* Invalid pools: the allocator keeps the last valid definition it saw (so Services keep their
  addresses while a user fixes a typo); a restore naming (``pool=``) an invalid pool it never saw
  is accepted as is. Neither gives new addresses.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections import OrderedDict
from collections.abc import Iterable, Mapping
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


SHARING_CROSS_NAMESPACE = "lbd.io/sharing-cross-namespace"
"""Named in refusal messages: the annotation that allows sharing across namespaces."""


def sharing_problem(a: ServiceRequest, b: ServiceRequest) -> str | None:
    """Why ``a`` and ``b`` may not hold one address, or None if they may
    (docs/IPAM.md "Sharing")."""
    if not a.sharing_key or not b.sharing_key:
        who = a.key if not a.sharing_key else b.key
        return f"{who} has no allow-shared-ip key"
    if a.sharing_key != b.sharing_key:
        return f"sharing keys differ ({a.sharing_key!r} vs {b.key}'s {b.sharing_key!r})"
    if a.namespace != b.namespace:
        for x, y in ((a, b), (b, a)):
            if not ({"*", y.namespace} & x.sharing_namespaces):
                return (
                    f"{x.key} does not allow sharing with namespace {y.namespace!r} (add the "
                    f"annotation {SHARING_CROSS_NAMESPACE}: {y.namespace} to it, and "
                    f"{SHARING_CROSS_NAMESPACE}: {x.namespace} to its partners in "
                    f"{y.namespace})"
                )
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


class WaitKind(StrEnum):
    """What a waiting Service waits for (see :class:`Wait`)."""

    POOL_ADDRESS = "PoolAddress"
    """A free address of ``family`` in ``pool``."""
    ADDRESS = "Address"
    """A change of the holders of one address (the requested one)."""
    CONFIG = "Config"
    """A change of the pool configuration (``pool``: the pool it asked for, if any)."""
    SHARED = "Shared"
    """A change of what is held under the allow-shared-ip key ``sharing`` (a partner to share
    an address with may have appeared, or one it clashed with may have left)."""


@dataclass(frozen=True)
class Wait:
    """One thing a refused (or partly served) Service waits for."""

    kind: WaitKind
    pool: str = ""
    family: Family | None = None
    akey: int = -1
    sharing: str = ""

    @property
    def address(self) -> str:
        """The awaited address (``ADDRESS`` waits), canonical text."""
        return _text(self.akey) if self.akey >= 0 else ""

    def __str__(self) -> str:
        if self.kind is WaitKind.POOL_ADDRESS:
            return f"a free {self.family} address in pool {self.pool!r}"
        if self.kind is WaitKind.ADDRESS:
            return f"{self.address} to be released"
        if self.kind is WaitKind.SHARED:
            return f"an address shared under key {self.sharing!r}"
        return f"pool {self.pool!r} to become usable" if self.pool else "a pool change"


_CONFIG = Wait(WaitKind.CONFIG)
_Rank = tuple[str, str]  # ServiceRequest.age_rank: (creationTimestamp, namespace/name)


@dataclass(slots=True)
class _Waiter:
    svc: ServiceRequest
    waits: frozenset[Wait]
    generation: int  # of the pool configuration it was refused under


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
        self.why = ""  # why it gives nothing (Conflicting / Invalid), for messages
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

    def free(self, family: Family) -> int:
        return self.total[family] - self.assigned[family]

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

    @property
    def prefers_both(self) -> bool:
        """PreferDualStack asking for two families and no particular address."""
        return (
            self.policy is FamilyPolicy.PREFER_DUAL_STACK
            and len(self.families) == 2
            and not self.requested
        )


@dataclass(frozen=True)
class Snapshot:
    """Every address fact of an allocator (tests compare these before/after a call)."""

    holdings: tuple[Allocation, ...]
    released: tuple[str, ...]
    counters: tuple[PoolCounters, ...]
    statuses: tuple[tuple[str, str], ...]
    leaving: tuple[tuple[ServiceKey, tuple[str, ...]], ...] = ()


class Allocator:
    """In-memory address allocator; see the module docstring for the rules and the surface."""

    def __init__(self) -> None:
        self._pools: dict[str, _PoolState] = {}
        self._invalid: frozenset[str] = frozenset()
        self._auto_order: list[_PoolState] = []
        self._holdings: dict[ServiceKey, _Holding] = {}
        # Addresses a Service lost but may still show in its status: taken until settle().
        self._leaving: dict[ServiceKey, dict[int, ServiceRequest]] = {}
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
        # Liveness: who waits for what, oldest first per Wait; which Waits changed since wake().
        self._waiters: dict[ServiceKey, _Waiter] = {}
        self._queues: dict[Wait, list[_Rank]] = {}
        self._woken: set[ServiceKey] = set()
        self._dirty: set[Wait] = set()
        self._generation = 0  # of the pool configuration: bumped by every change
        self._woken_generation = 0

    # ------------------------------------------------------------------ pools

    def set_pools(
        self,
        pools: Iterable[Pool],
        conflicting: Mapping[str, Iterable[str]] | Iterable[str] = (),
        invalid: Mapping[str, str] | Iterable[str] = (),
    ) -> tuple[ServiceKey, ...]:
        """Install a new configuration; return (sorted) the keys that lost addresses because
        those lie outside every pool they may use. Everyone else keeps addresses.

        ``conflicting`` (pool -> the older pools it overlaps, or just names) and ``invalid``
        (pool -> the reason, or just names) pools give no new addresses. An invalid pool missing
        from ``pools`` keeps the last valid definition this allocator saw, if any.
        """
        overlaps = {n: sorted(map(str, _names(v))) for n, v in _as_map(conflicting).items()}
        reasons = {n: str(r) for n, r in _as_map(invalid).items()}
        self._invalid = frozenset(reasons)
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
        changed = rebuilt
        for name, ps in new.items():
            before = (ps.status, ps.why)
            if name in reasons:
                ps.status, ps.why = PoolStatus.INVALID, f"Invalid ({reasons[name]})"
            elif name in overlaps:
                others = overlaps[name] or sorted(
                    o.name for o in new.values() if o is not ps and _overlap(o, ps)
                )
                older = ", ".join(repr(o) for o in others) or "another pool"
                ps.status, ps.why = PoolStatus.CONFLICTING, f"Conflicting (overlaps {older})"
            else:
                ps.status, ps.why = PoolStatus.READY, ""
            changed = changed or (ps.status, ps.why) != before
        self._pools = new
        self._auto_order = sorted(
            (ps for ps in new.values() if ps.pool.auto_assign), key=_auto_rank
        )
        if rebuilt:
            self._rebuild_index()
        if changed:
            self._generation += 1  # anything may fit now: every waiter decides again

        lost: list[ServiceKey] = []
        for key, h in list(self._holdings.items()):
            if h.pool in self._invalid or self._fits(h.svc, h.pool, h.akeys):
                continue
            other = self._pool_for_held(h.svc, h.akeys)
            if other is not None:
                h.pool, h.cached = other.name, None
                continue
            lost.append(key)
            kept = self._what_fits(h)
            if kept is None:
                self.retire(key)
            else:
                self._commit(h.svc, kept[0], kept[1])
        return tuple(sorted(lost))

    def _what_fits(self, h: _Holding) -> tuple[str, tuple[int, ...]] | None:
        """The addresses of a PreferDualStack holder that still lie in one pool it may use."""
        svc = h.svc
        if svc.family_policy is not FamilyPolicy.PREFER_DUAL_STACK or svc.requested:
            return None
        for akey in h.akeys:
            pools = [ps for ps in self._containing(akey) if self._fits(svc, ps.name, (akey,))]
            if pools:
                pools.sort(key=lambda ps: (ps.name != h.pool, ps.name))
                return pools[0].name, (akey,)
        return None

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

    # ------------------------------------------------------------------ queries

    def holding(self, key: ServiceKey) -> Allocation | None:
        """What ``key`` holds (not counting addresses it is leaving), or None."""
        h = self._holdings.get(key)
        return None if h is None else h.allocation()

    def leaving(self, key: ServiceKey) -> tuple[str, ...]:
        """Addresses ``key`` lost but may still show: taken until :meth:`settle`."""
        return tuple(_text(a) for a in self._leaving.get(key, ()))

    def holders(self, address: str) -> tuple[ServiceKey, ...]:
        """Services holding (or leaving) ``address`` (empty if none or not an address)."""
        akey = _parse(address)
        return () if akey is None else self._holders.get(akey, ())

    def snapshot(self) -> Snapshot:
        """Every address fact. O(state): for tests and diagnostics, not the hot path."""
        return Snapshot(
            holdings=tuple(self._holdings[k].allocation() for k in sorted(self._holdings)),
            released=tuple(_text(a) for a in self._released),
            counters=tuple(self.counters(n) for n in sorted(self._pools)),
            statuses=tuple((n, self._pools[n].status.value) for n in sorted(self._pools)),
            leaving=tuple(
                (k, tuple(sorted(map(_text, v)))) for k, v in sorted(self._leaving.items())
            ),
        )

    # ------------------------------------------------------------------ allocate

    def allocate(self, svc: ServiceRequest) -> Allocation | Refusal:
        """Give ``svc`` addresses, or keep the ones it holds if they still satisfy its request.

        A refusal changes no address; it records what the Service waits for (see
        :meth:`wake`). So does an allocation that could not give every family a
        PreferDualStack Service prefers.
        """
        wanted = _parse_request(svc)
        if isinstance(wanted, Refusal):
            self.stop_waiting(svc.key)
            return wanted
        current = self._holdings.get(svc.key)
        if current is not None and self._satisfies(svc, current, wanted):
            akeys, waits = current.akeys, frozenset[Wait]()
            if wanted.prefers_both and len(akeys) < 2:
                akeys, waits = self._gain(svc, current, wanted)
            self._commit(svc, current.pool, akeys)
            self._set_waiting(svc, waits)
            return self._holdings[svc.key].allocation()
        plan = self._plan(svc, wanted)
        if isinstance(plan, Refusal):
            self._set_waiting(svc, self._waits_for(svc, wanted, plan))
            return plan
        pool, akeys = plan
        self._commit(svc, pool, akeys)
        waits = frozenset[Wait]()
        if wanted.prefers_both and len(akeys) < 2:
            waits = self._gain(svc, self._holdings[svc.key], wanted)[1]
        self._set_waiting(svc, waits)
        return self._holdings[svc.key].allocation()

    def _gain(
        self, svc: ServiceRequest, h: _Holding, wanted: _Wanted
    ) -> tuple[tuple[int, ...], frozenset[Wait]]:
        """A PreferDualStack holder of one family: the other one from its pool, if it can
        give it now (keeping what it holds); else what to wait for."""
        have = {_split(a)[0] for a in h.akeys}
        ps = self._pools.get(h.pool)
        got = list(h.akeys)
        waits: set[Wait] = set()
        for fam in wanted.families:
            if fam in have:
                continue
            if ps is None or ps.status is not PoolStatus.READY or not ps.ranges[fam]:
                waits.add(Wait(WaitKind.CONFIG, pool=h.pool))
                continue
            akey = self._shareable(svc, ps, fam)
            if akey is None:
                akey = self._fresh_for(svc, ps, fam)
            if akey is None:
                waits.add(Wait(WaitKind.POOL_ADDRESS, ps.name, fam))
            else:
                got.append(akey)
        got.sort(key=lambda a: wanted.families.index(_split(a)[0]))
        return tuple(got), frozenset(waits)

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
                    f"pool {ps.name!r} does not serve {svc.key} (its serviceAllocation)",
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
            got = self._take_from_pool(svc, ps, wanted, partial=wanted.prefers_both)
            return got if got is not None else self._no_room(svc, wanted, [ps], [])
        if wanted.requested:
            return self._plan_requested(svc, wanted)
        need_of = wanted.need
        if wanted.prefers_both:
            got = self._plan_prefer_dual_stack(svc, wanted)
            if got is not None:
                return got
        else:
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
        skipped = [ps for ps in matching if ps.status is not PoolStatus.READY]
        if not ready:
            refusal = _unusable(matching[0]) if matching else None
            if refusal is not None:  # every matching pool is conflicting or invalid
                return _with_skipped(refusal, skipped[1:])
            return Refusal(
                Reason.NO_MATCHING_POOL,
                f"no pool with autoAssign serves {svc.key} (namespace {svc.namespace!r})",
            )
        return self._no_room(svc, wanted, ready, skipped)

    def _plan_prefer_dual_stack(
        self, svc: ServiceRequest, wanted: _Wanted
    ) -> tuple[str, tuple[int, ...]] | None:
        """The first pool that gives both families; else the first that gives the primary one,
        else the first that gives the other (MetalLB's order); None if none gives any."""
        usable = [
            ps
            for ps in self._auto_order
            if ps.status is PoolStatus.READY and ps.families and _may_use(ps.pool, svc)
        ]
        for ps in usable:
            if len(ps.families) == 2:
                got = self._take_from_pool(svc, ps, wanted)
                if got is not None:
                    return got
        for fam in wanted.families:
            for ps in usable:
                if fam in ps.families and (
                    self._keepable(svc, ps, fam) is not None
                    or self._fresh_for(svc, ps, fam) is not None
                ):
                    return self._take_from_pool(svc, ps, wanted, partial=True)
        return None

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
                    self._svc_holding(k, akey).sharing_key == svc.sharing_key for k in others
                )
                reason = Reason.SHARING_CONFLICT if same_key else Reason.REQUESTED_IP_UNAVAILABLE
                return Refusal(reason, f"{_text(akey)} is in use by {', '.join(others)}: {problem}")
            if akey not in self._holders:
                first = self._older_waiter_for(svc, akey)
                if first is not None:
                    return Refusal(
                        Reason.REQUESTED_IP_UNAVAILABLE,
                        f"{_text(akey)} is free but kept for {first}, an older Service that "
                        "waits for it",
                    )
        return ps.name, wanted.requested

    def _older_waiter_for(self, svc: ServiceRequest, akey: int) -> ServiceKey | None:
        """The oldest Service older than ``svc`` waiting for ``akey`` that ``svc`` cannot
        share it with (fairness for requested addresses)."""
        queue = self._queues.get(Wait(WaitKind.ADDRESS, akey=akey)) if self._queues else None
        if not queue:
            return None
        for _, key in queue[: bisect.bisect_left(queue, svc.age_rank)]:
            if key != svc.key and sharing_problem(svc, self._waiters[ServiceKey(key)].svc):
                return ServiceKey(key)
        return None

    def _take_from_pool(
        self, svc: ServiceRequest, ps: _PoolState, wanted: _Wanted, *, partial: bool = False
    ) -> tuple[str, tuple[int, ...]] | None:
        """What ``svc`` would get from ``ps``; with ``partial`` (PreferDualStack) the families
        it can give now, at least one. None if it cannot serve."""
        need = wanted.need(ps.families)
        if need is None:
            return None
        key = svc.key
        if (
            not partial
            and not svc.sharing_key
            and len(need) == 1
            and key not in self._holdings
            and key not in self._leaving
        ):
            fresh = self._fresh_for(svc, ps, need[0])  # the common case: one fresh address
            return None if fresh is None else (ps.name, (fresh,))
        got: list[int] = []
        for fam in need:
            akey = self._keepable(svc, ps, fam)
            if akey is None and svc.sharing_key:
                akey = self._shareable(svc, ps, fam)
            if akey is None:
                akey = self._fresh_for(svc, ps, fam)
            if akey is None:
                if partial:
                    continue
                return None
            got.append(akey)
        return (ps.name, tuple(got)) if got else None

    def _keepable(self, svc: ServiceRequest, ps: _PoolState, fam: Family) -> int | None:
        """An address of ``fam`` the Service holds (or is leaving) and may keep in ``ps``."""
        current = self._holdings.get(svc.key)
        own: list[int] = list(current.akeys) if current is not None else []
        own.extend(self._leaving.get(svc.key, {}))
        return self._first_usable(svc, ps, fam, own)

    def _shareable(self, svc: ServiceRequest, ps: _PoolState, fam: Family) -> int | None:
        """An address in ``ps`` already held by Services ``svc`` may share with."""
        if not svc.sharing_key:
            return None
        return self._first_usable(svc, ps, fam, self._sharing.get(svc.sharing_key, {}))

    def _first_usable(
        self, svc: ServiceRequest, ps: _PoolState, fam: Family, akeys: Iterable[int]
    ) -> int | None:
        """The first of ``akeys`` of family ``fam`` in ``ps`` that ``svc`` may hold."""
        for akey in akeys:
            if (
                _split(akey)[0] is fam
                and ps.contains(akey)
                and self._share_problem(svc, akey) is None
            ):
                return akey
        return None

    def _fresh_for(self, svc: ServiceRequest, ps: _PoolState, fam: Family) -> int | None:
        """A fresh address for ``svc``, unless the free ones are kept for older waiters."""
        if self._queues:
            queue = self._queues.get(Wait(WaitKind.POOL_ADDRESS, ps.name, fam))
            if queue and ps.free(fam) <= bisect.bisect_left(queue, svc.age_rank):
                return None
        return self._fresh(ps, fam)

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

    def _svc_holding(self, key: ServiceKey, akey: int) -> ServiceRequest:
        """The request under which ``key`` holds (or leaves) ``akey``."""
        h = self._holdings.get(key)
        if h is not None and akey in h.akeys:
            return h.svc
        return self._leaving[key][akey]

    def _share_problem(self, svc: ServiceRequest, akey: int) -> str | None:
        for other in self._holders.get(akey, ()):
            if other != svc.key:
                problem = sharing_problem(svc, self._svc_holding(other, akey))
                if problem is not None:
                    return problem
        return None

    def _no_room(
        self,
        svc: ServiceRequest,
        wanted: _Wanted,
        pools: list[_PoolState],
        skipped: list[_PoolState],
    ) -> Refusal:
        names = ", ".join(repr(ps.name) for ps in pools)
        if all(wanted.need(ps.families) is None for ps in pools):
            fams = (
                "+".join(wanted.families)
                if wanted.policy is not FamilyPolicy.SINGLE_STACK
                else (wanted.families[0])
            )
            return _with_skipped(
                Refusal(
                    Reason.NO_MATCHING_POOL,
                    f"no pool {svc.key} may use has {fams} addresses ({wanted.policy}); "
                    f"tried {names}",
                ),
                skipped,
            )
        # No counts in this message: it becomes the Service's condition, and a condition that
        # changes is a status write and an Event. With counts, every pool change and every
        # re-decision after a release rewrote the waiting Services: in a CI chaos run (seed
        # 1966916827, 300 waiters) one controller made 2 672 such writes, 170 of them after the
        # workload went quiet, and settled late. The pool's status carries the counts.
        full: dict[Family, list[str]] = {}
        for ps in pools:
            for fam in wanted.families if wanted.prefers_both else wanted.need(ps.families) or ():
                if ps.ranges[fam] and self._fresh_for(svc, ps, fam) is None:
                    full.setdefault(fam, []).append(repr(ps.name))
        detail = "; ".join(
            f"no {fam} address of pool {_either(full[fam])} is free" for fam in sorted(full)
        )
        return _with_skipped(
            Refusal(
                Reason.POOL_EXHAUSTED,
                f"waiting for a free address: {detail or f'no address of {names} is free'} "
                "(each is assigned or kept for an older waiting Service); the oldest waiting "
                "Service gets the next one released",
            ),
            skipped,
        )

    def _waits_for(self, svc: ServiceRequest, wanted: _Wanted, refusal: Refusal) -> frozenset[Wait]:
        """What would unblock a refused Service."""
        reason = refusal.reason
        if reason is Reason.POOL_EXHAUSTED:
            pools = (
                [self._pools[svc.pool]]
                if svc.pool is not None
                else [
                    ps
                    for ps in self._auto_order
                    if ps.status is PoolStatus.READY and _may_use(ps.pool, svc)
                ]
            )
            waits: set[Wait] = set()
            for ps in pools:
                fams = wanted.families if wanted.prefers_both else wanted.need(ps.families) or ()
                for fam in fams:
                    if ps.ranges[fam] and self._fresh_for(svc, ps, fam) is None:
                        waits.add(Wait(WaitKind.POOL_ADDRESS, ps.name, fam))
            if svc.sharing_key:  # or an address a partner holds, once it may share it
                waits.add(Wait(WaitKind.SHARED, sharing=svc.sharing_key))
            return frozenset(waits) or frozenset({_CONFIG})
        if reason in (Reason.REQUESTED_IP_UNAVAILABLE, Reason.SHARING_CONFLICT):
            return frozenset(Wait(WaitKind.ADDRESS, akey=a) for a in wanted.requested)
        if reason is Reason.INVALID_REQUEST:
            return frozenset()
        return frozenset({Wait(WaitKind.CONFIG, pool=svc.pool or "")})

    # ------------------------------------------------------------------ liveness

    def _set_waiting(self, svc: ServiceRequest, waits: frozenset[Wait]) -> None:
        """Record what ``svc`` waits for now (nothing: it is served)."""
        key = svc.key
        self._woken.discard(key)
        old = self._waiters.get(key)
        if old is None and not waits:
            return
        before = old.waits if old is not None else frozenset()
        rank = old.svc.age_rank if old is not None else svc.age_rank
        for w in before - waits:
            self._dequeue(w, rank)
            self._dirty.add(w)  # what was kept for it may go to the next in line
        for w in waits - before:
            bisect.insort(self._queues.setdefault(w, []), svc.age_rank)
        if waits:
            self._waiters[key] = _Waiter(svc, waits, self._generation)
        else:
            del self._waiters[key]

    def _dequeue(self, w: Wait, rank: _Rank) -> None:
        queue = self._queues[w]
        i = bisect.bisect_left(queue, rank)
        if i < len(queue) and queue[i] == rank:
            del queue[i]
        if not queue:
            del self._queues[w]

    def stop_waiting(self, key: ServiceKey) -> None:
        """``key`` waits for nothing any more (deleted, not ours, or an invalid request)."""
        w = self._waiters.get(key)
        if w is not None:
            self._set_waiting(w.svc, frozenset())

    def describe(self, most: int = 10, held: int = 500) -> dict[str, object]:
        """A summary of the state for a diagnostic dump (``SIGUSR1`` to the controller): at most
        ``most`` entries per list, and the first ``held`` holdings (by key) in full."""
        return {
            "pools": {
                ps.name: {
                    "status": ps.status.value,
                    "ranges": [str(r) for r in ps.pool.ranges],
                    "free": {f.value: ps.free(f) for f in ps.families},
                    "released": {f.value: len(ps.released[f]) for f in ps.families},
                }
                for ps in self._pools.values()
            },
            "holdings": len(self._holdings),
            "leaving": {k: self.leaving(k) for k in sorted(self._leaving)[:most]},
            "leaving_total": len(self._leaving),
            "waiters": len(self._waiters),
            "woken": sorted(self._woken)[:most],
            "queues": {
                str(w): [k for _, k in q[:most]]
                for w, q in sorted(self._queues.items(), key=lambda item: str(item[0]))[:most]
            },
            "generation": (self._generation, self._woken_generation),
            "held": {
                k: ",".join(self._holdings[k].addresses) for k in sorted(self._holdings)[:held]
            },
        }

    def waits(self, key: ServiceKey) -> tuple[Wait, ...]:
        """What ``key`` waits for (empty: nothing)."""
        w = self._waiters.get(key)
        return () if w is None else tuple(sorted(w.waits, key=str))

    def waiting_on(self, pool: str) -> int:
        """How many Services wait for an address of ``pool`` or for it to become usable."""
        keys: set[str] = set()
        for w, queue in self._queues.items():
            if w.pool == pool:
                keys.update(k for _, k in queue)
        return len(keys)

    def wake(self) -> tuple[ServiceKey, ...]:
        """Waiting Services to decide again now, oldest first; each is returned once until it
        is decided again (allocate, release, stop_waiting).

        After a pool change: every waiter. Otherwise, per thing that changed since the last
        call: for a free address of a pool and family, as many of its waiters (oldest first)
        as there are free addresses; for a requested address whose holders changed, all of its
        waiters.
        """
        picked: list[_Rank] = []
        if self._woken_generation < self._generation:
            # Refused under an older configuration: decide again under this one.
            picked = [
                w.svc.age_rank
                for k, w in self._waiters.items()
                if w.generation < self._generation and k not in self._woken
            ]
            self._woken_generation = self._generation
        for w in self._dirty:
            queue = self._queues.get(w)
            if not queue:
                continue
            if w.kind is WaitKind.POOL_ADDRESS:
                ps = self._pools.get(w.pool)
                if ps is None or ps.status is not PoolStatus.READY or w.family is None:
                    continue
                queue = queue[: max(0, min(len(queue), ps.free(w.family)))]
            elif w.kind not in (WaitKind.ADDRESS, WaitKind.SHARED):
                continue  # configuration waits: only a pool change wakes them
            picked.extend(r for r in queue if r[1] not in self._woken)
        self._dirty.clear()
        out = tuple(ServiceKey(k) for _, k in sorted(set(picked)))
        self._woken.update(out)
        return out

    def _note_holders_changed(self, akey: int, freed: bool, pools: list[_PoolState]) -> None:
        if not self._queues:
            return
        self._dirty.add(Wait(WaitKind.ADDRESS, akey=akey))
        for key in self._holders.get(akey, ()):  # who shares it now may take in someone else
            h = self._holdings.get(key)
            sharer = h.svc if h is not None and akey in h.akeys else None
            if sharer is None:
                sharer = self._leaving.get(key, {}).get(akey)
            if sharer is not None and sharer.sharing_key:
                self._dirty.add(Wait(WaitKind.SHARED, sharing=sharer.sharing_key))
        if freed:
            fam = _split(akey)[0]
            for ps in pools:
                self._dirty.add(Wait(WaitKind.POOL_ADDRESS, ps.name, fam))

    # ------------------------------------------------------------------ commit / release

    def _commit(self, svc: ServiceRequest, pool: str, akeys: tuple[int, ...]) -> None:
        """Make ``svc`` hold exactly ``akeys`` from ``pool``; addresses it drops are leaving.
        Cannot fail."""
        key = svc.key
        old = self._holdings.get(key)
        leaving = self._leaving.get(key)
        if old is None and leaving is None:  # the common case, kept short
            for akey in akeys:
                self._hold(key, akey)
            h = _Holding(svc, pool, akeys, tuple(map(_text, akeys)))
            self._holdings[key] = h
            if svc.sharing_key:
                self._index_sharing(h)
                self._note_shared(svc.sharing_key)
            return
        had = set(old.akeys) if old is not None else set()
        if old is not None:
            self._unindex_sharing(old)
            for akey in old.akeys:
                if akey not in akeys:
                    self._leave(key, akey, old.svc)
                elif self._queues and old.svc != svc:
                    self._note_holders_changed(akey, False, [])  # its sharing terms changed
        for akey in akeys:
            if leaving is not None and akey in leaving:
                del leaving[akey]  # taken back before the status stopped showing it
            elif akey not in had:
                self._hold(key, akey)
        if leaving is not None and not leaving:
            del self._leaving[key]
        addresses = old.addresses if old is not None and old.akeys == akeys else None
        h = _Holding(svc, pool, akeys, addresses or tuple(map(_text, akeys)))
        self._holdings[key] = h
        self._index_sharing(h)
        if svc.sharing_key and (old is None or old.akeys != akeys or old.svc != svc):
            self._note_shared(svc.sharing_key)

    def _note_shared(self, sharing_key: str) -> None:
        """Something held under ``sharing_key`` changed: its waiters may share now."""
        if self._queues:
            self._dirty.add(Wait(WaitKind.SHARED, sharing=sharing_key))

    def _leave(self, key: ServiceKey, akey: int, svc: ServiceRequest) -> None:
        self._leaving.setdefault(key, {})[akey] = svc

    def _hold(self, key: ServiceKey, akey: int) -> None:
        holders = self._holders.get(akey)
        if holders is not None:
            self._holders[akey] = (*holders, key)
            if self._queues:
                self._note_holders_changed(akey, False, [])
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
            self._note_holders_changed(akey, False, [])
            return
        del self._holders[akey]
        fam, value = _split(akey)
        pools = self._containing(akey)
        if pools:  # an address of no pool has no reuse order to keep (see _rebuild_index)
            self._released[akey] = None
        for ps in pools:
            ps.released[fam][value] = None
            ps.assigned[fam] -= 1
        self._note_holders_changed(akey, True, pools)

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

    def retire(self, key: ServiceKey) -> tuple[str, ...]:
        """``key`` gives up what it holds (refused, or no longer a LoadBalancer). The addresses
        stay taken until :meth:`settle`: its status still shows them. Returns them."""
        h = self._holdings.pop(key, None)
        if h is None:
            return ()
        self._unindex_sharing(h)
        for akey in h.akeys:
            self._leave(key, akey, h.svc)
        return h.addresses

    def settle(self, key: ServiceKey) -> tuple[str, ...]:
        """``key``'s status no longer shows the addresses it lost: free them. Returns the
        addresses that became free (an address shared with another Service stays held)."""
        leaving = self._leaving.pop(key, None)
        if not leaving:
            return ()
        for akey in leaving:
            self._unhold(key, akey)
        return tuple(_text(a) for a in leaving if a not in self._holders)

    def release(self, key: ServiceKey) -> tuple[str, ...]:
        """The Service is gone: forget everything it holds or is leaving, and what it waits
        for. Returns the addresses it held (an address shared with another Service stays
        held by it). Releasing a key that holds nothing returns ``()``."""
        self.stop_waiting(key)
        self.settle(key)
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
        """Re-register addresses ``svc`` already shows (in its status). Idempotent.

        ``pool`` is the ``ip-allocated-from-pool`` annotation, a hint. An address held by a
        Service that may not share it stays with its holder, and this call is a Refusal
        (``RequestedIPUnavailable``) that changes nothing: :meth:`restore_all` restores oldest
        first, so at the start of a session the older of two claimants keeps an address.

        Addresses that do not lie in one pool the Service may use (a pool changed while no
        leader was looking) are not lost from sight: what fits one pool is held (keep what
        fits), and the rest is *leaving* (taken until :meth:`settle`), because the Service
        still shows it. Only if nothing fits is the result a Refusal (``RequestedIPNotInPool``).
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
            and all(self._share_problem(svc, a) is None for a in akeys)
        ):
            self._commit(svc, current.pool, current.akeys)
            return self._holdings[svc.key].allocation()
        for akey in akeys:
            for other in self._holders.get(akey, ()):
                if other == svc.key:
                    continue
                problem = sharing_problem(svc, self._svc_holding(other, akey))
                if problem is not None:
                    return Refusal(
                        Reason.REQUESTED_IP_UNAVAILABLE,
                        f"{_text(akey)} is held by {other}: {problem}",
                    )
        pool_name = self._restore_pool(svc, akeys, pool)
        held: tuple[int, ...] = akeys if pool_name is not None else ()
        if pool_name is None:  # keep what fits
            for akey in akeys:
                pool_name = self._restore_pool(svc, (akey,), pool)
                if pool_name is not None:
                    held = (akey,)
                    break
        if current is None:
            for akey in akeys:
                if akey not in held and svc.key not in self._holders.get(akey, ()):
                    self._hold(svc.key, akey)  # shown, so taken: leaving until settled
                    self._leave(svc.key, akey, svc)
        if pool_name is None:
            return Refusal(
                Reason.REQUESTED_IP_NOT_IN_POOL,
                f"{', '.join(_text(a) for a in akeys)} not in one pool {svc.key} may use",
            )
        self._commit(svc, pool_name, held)
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


# ---------------------------------------------------------------------- helpers


def _as_map(value: Mapping[str, object] | Iterable[str]) -> dict[str, object]:
    if isinstance(value, Mapping):
        return dict(value)
    return dict.fromkeys(value, "")


def _names(value: object) -> Iterable[object]:
    return value if isinstance(value, Iterable) and not isinstance(value, str) else ()


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
        return Refusal(
            Reason.POOL_CONFLICTING,
            f"pool {ps.name!r} is {ps.why}: it gives no new addresses until the overlap is gone",
        )
    if ps.status is PoolStatus.INVALID:
        return Refusal(Reason.NO_MATCHING_POOL, f"pool {ps.name!r} is {ps.why}")
    return None


def _either(names: list[str]) -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _with_skipped(refusal: Refusal, skipped: list[_PoolState]) -> Refusal:
    """Name the pools that were skipped as unusable, and why: that is what would fix it."""
    if not skipped:
        return refusal
    why = "; ".join(f"pool {ps.name!r} is {ps.why}" for ps in skipped)
    return Refusal(refusal.reason, f"{refusal.message}; skipped: {why}")


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

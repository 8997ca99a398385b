"""What an IPAddressPool shows: one pure function of the configuration and the allocator.

API::

    shown = pool_shown("beta", config, allocator)   # PoolShown
    shown.state                 # PoolState.READY / EXHAUSTED / CONFLICTING / INVALID
    shown.counts[Family.IPV4]   # ShownCount(total, assigned, available)
    shown.waiting               # Services waiting for an address of this pool
    shown.conditions            # Ready, Conflicting, Invalid (PoolCondition values)

The controller writes this into the pool's status and metrics (:mod:`lbd.k8s.pool`) and derives
its Events from the difference to what the pool showed before; nothing else decides what a pool
shows.

Decisions:

* A pool that hands out nothing (Conflicting or Invalid) shows 0 available, not its size: what
  it holds stays assigned, nothing more can be had from it.
* ``Ready`` is False with reason ``Exhausted`` when no family of the pool has a free address
  left (a dual-stack pool with IPv6 left is still Ready, and its message says IPv4 is full), so
  ``kubectl get ipaddresspools`` answers "why is my Service pending".
* ``Conflicting`` names the *older* pools it overlaps (only the newer of two overlapping pools is
  Conflicting, see :func:`lbd.core.config.find_conflicts`); ``Invalid`` gives every field error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from lbd.core.config import Config
from lbd.core.ipam import Allocator
from lbd.core.model import Family

READY, CONFLICTING, INVALID = "Ready", "Conflicting", "Invalid"
"""Condition types of a pool."""


class PoolState(StrEnum):
    READY = "Ready"
    EXHAUSTED = "Exhausted"
    CONFLICTING = "Conflicting"
    INVALID = "Invalid"


@dataclass(frozen=True)
class ShownCount:
    """Addresses of one family: how many, how many held, how many can still be had."""

    total: int = 0
    assigned: int = 0
    available: int = 0


@dataclass(frozen=True)
class PoolCondition:
    type: str
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class PoolShown:
    name: str
    state: PoolState
    counts: Mapping[Family, ShownCount]
    waiting: int
    conditions: tuple[PoolCondition, ...]
    warnings: tuple[str, ...] = ()
    """What was read differently from how it was written (a CIDR with host bits set)."""

    def condition(self, ctype: str) -> PoolCondition | None:
        return next((c for c in self.conditions if c.type == ctype), None)


def pool_shown(name: str, config: Config, allocator: Allocator) -> PoolShown:
    """What pool ``name`` shows, from the configuration and the allocator."""
    errors = config.invalid.get(name, ())
    older = config.conflicting.get(name, frozenset())
    try:
        counters = allocator.counters(name)
    except KeyError:  # invalid and never seen valid: nothing known about its addresses
        counters = None
    gives = not errors and not older
    counts: dict[Family, ShownCount] = {}
    for fam in (Family.IPV4, Family.IPV6):
        c = counters.of(fam) if counters is not None else None
        total, assigned = (c.total, c.assigned) if c is not None else (0, 0)
        counts[fam] = ShownCount(total, assigned, max(0, total - assigned) if gives else 0)
    waiting = allocator.waiting_on(name)
    families = [f for f, c in counts.items() if c.total]
    full = [f for f in families if counts[f].available == 0]
    if errors:
        state = PoolState.INVALID
        ready = PoolCondition(READY, False, "Invalid", f"gives no addresses: {errors[0]}")
    elif older:
        state = PoolState.CONFLICTING
        ready = PoolCondition(
            READY,
            False,
            "Conflicting",
            f"gives no new addresses: overlaps older pool(s) {_names(older)}",
        )
    elif families and len(full) == len(families):
        state = PoolState.EXHAUSTED
        held = ", ".join(f"{counts[f].assigned} of {counts[f].total} {f}" for f in families)
        ready = PoolCondition(
            READY,
            False,
            "Exhausted",
            f"every address is assigned ({held}); {_waiting(waiting)}",
        )
    else:
        state = PoolState.READY
        message = "addresses can be assigned"
        if full:
            message += f" ({' and '.join(full)} exhausted; {_waiting(waiting)})"
        ready = PoolCondition(READY, True, "Ready", message)
    conflicting = (
        PoolCondition(
            CONFLICTING,
            True,
            "Overlap",
            f"overlaps older pool(s) {_names(older)}; the older pool keeps working",
        )
        if older
        else PoolCondition(CONFLICTING, False, "NoOverlap", "no overlap with older pools")
    )
    invalid = (
        PoolCondition(INVALID, True, "InvalidSpec", "; ".join(str(e) for e in errors))
        if errors
        else PoolCondition(INVALID, False, "Valid", "spec is valid")
    )
    return PoolShown(
        name=name,
        state=state,
        counts=counts,
        waiting=waiting,
        conditions=(ready, conflicting, invalid),
        warnings=tuple(str(w) for w in config.warnings.get(name, ())),
    )


def _names(names: frozenset[str]) -> str:
    return ", ".join(repr(n) for n in sorted(names))


def _waiting(n: int) -> str:
    return "1 Service waits" if n == 1 else f"{n} Services wait"

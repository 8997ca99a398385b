"""What users see of the controller's decisions: a pure function from before/after to effects.

API::

    service_effects(key, before, decision, wrote) -> tuple[Effect, ...]
    pool_effects(name, before, shown, warned) -> tuple[Effect, ...]

An :data:`Effect` is a value: an Event on the object (:class:`Emit`), a log line (:class:`Log`),
a counter to bump (:class:`Count`) or a gauge to set (:class:`Gauge`). The controller decides
(allocator), writes (:mod:`lbd.k8s.service`), and then hands the effects to one small applier;
so the rules "an Event once per change, never from a resync or a restart" live here, in one
place that table tests read (as the speaker does with its ``EventSpec`` values).

The rules:

- Events only when a write changed what a user sees; a Service whose status was already right
  (resync, restart, a repeated decision) produces nothing.
- Assigned: ``IPAllocated`` (Normal) naming what it got, and ``ClearAssignment`` (Warning) if it
  lost an address on the way (moved, or a pool shrank). Gaining a family while keeping the other
  address is an ``IPAllocated`` that says what it kept.
- Refused: ``AllocationFailed`` (Warning) when the reason or message changed or it lost its
  addresses (then ``ClearAssignment`` first). A refusal that repeats what the Service already
  shows is silent.
- Invalid request: ``InvalidRequest`` (Warning) when the condition changed.
- No longer a LoadBalancer: ``IPReleased`` (Normal). Deleted: a log line (the object is gone).
- Pools: gauges always (usage by family, and ``lbd_pool_state``: one series per state, 1 for
  the one the pool is in, as kube-state-metrics shows a phase); a Warning when the pool
  becomes Exhausted, Conflicting or Invalid (its Ready reason changes to one of these), and
  when the way its addresses are read changes (a CIDR with host bits set).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from lbd.core.model import Family, ServiceRequest
from lbd.core.poolstatus import READY, PoolShown, PoolState
from lbd.k8s.conditions import ObservedCondition
from lbd.k8s.service import ObservedService


class Metric(StrEnum):
    ALLOCATIONS = "lbd_allocations_total"
    POOL_TOTAL = "lbd_pool_addresses_total"
    POOL_ASSIGNED = "lbd_pool_addresses_assigned"
    POOL_STATE = "lbd_pool_state"


@dataclass(frozen=True)
class Emit:
    """An Event about the object in question."""

    warning: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Log:
    level: int
    message: str
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Count:
    """One more of ``lbd_allocations_total{result, reason}``: the single counter of outcomes
    (a refusal is ``result="refused"`` with its reason, never a second counter that could
    disagree)."""

    metric: Metric
    labels: tuple[str, str]


@dataclass(frozen=True)
class Gauge:
    metric: Metric
    labels: tuple[str, str]
    value: float | None
    """None: remove the series (the pool is gone)."""


Effect = Emit | Log | Count | Gauge


class Verdict(StrEnum):
    ASSIGNED = "Assigned"
    REFUSED = "Refused"
    INVALID = "InvalidRequest"
    RELEASED = "Released"
    DELETED = "Deleted"


@dataclass(frozen=True)
class Shown:
    """What a Service showed before the decision."""

    addresses: tuple[str, ...] = ()
    condition: ObservedCondition | None = None


@dataclass(frozen=True)
class Decision:
    """What the controller decided for a Service (and wrote, if ``wrote``)."""

    verdict: Verdict
    addresses: tuple[str, ...] = ()
    pool: str | None = None
    reason: str = ""
    message: str = ""
    released: tuple[str, ...] = ()
    """RELEASED / DELETED: the addresses it gave up."""


def _condition_changed(before: Shown, decision: Decision, status: bool) -> bool:
    c = before.condition
    return c is None or (c.status, c.reason, c.message) != (
        "True" if status else "False",
        decision.reason,
        decision.message,
    )


def service_effects(key: str, before: Shown, decision: Decision, wrote: bool) -> tuple[Effect, ...]:
    """Events, logs and counters for one decision about Service ``key``."""
    who = (("service", key),)
    v = decision.verdict
    if v is Verdict.DELETED:
        if not decision.released:
            return ()
        return (Log(logging.INFO, "released (Service deleted)", (*who, _addr(decision.released))),)
    if not wrote:
        return ()
    if v is Verdict.ASSIGNED:
        if before.addresses == decision.addresses:
            return ()
        lost = tuple(a for a in before.addresses if a not in decision.addresses)
        kept = tuple(a for a in decision.addresses if a in before.addresses)
        got = tuple(a for a in decision.addresses if a not in before.addresses)
        out: list[Effect] = [Count(Metric.ALLOCATIONS, ("assigned", "Assigned"))]
        if lost:
            out.append(
                Emit(True, "ClearAssignment", f"{_join(lost)} no longer valid for this Service")
            )
        message = f"assigned {_join(got)} from pool {decision.pool}"
        if kept:
            message += f" (kept {_join(kept)})"
        out.append(Emit(False, "IPAllocated", message))
        out.append(Log(logging.INFO, "assigned", (*who, ("pool", decision.pool or ""), _addr(got))))
        return tuple(out)
    if v is Verdict.REFUSED:
        if not _condition_changed(before, decision, False) and not before.addresses:
            return ()
        out = [Count(Metric.ALLOCATIONS, ("refused", decision.reason))]
        if before.addresses:
            cleared = f"cleared {_join(before.addresses)}: {decision.message}"
            out.append(Emit(True, "ClearAssignment", cleared))
        out.append(Emit(True, "AllocationFailed", f"{decision.reason}: {decision.message}"))
        out.append(
            Log(
                logging.WARNING,
                f"allocation failed: {decision.message}",
                (*who, ("reason", decision.reason)),
            )
        )
        return tuple(out)
    if v is Verdict.INVALID:
        if not _condition_changed(before, decision, False):
            return ()
        return (
            Count(Metric.ALLOCATIONS, ("invalid", decision.reason)),
            Emit(True, "InvalidRequest", decision.message),
            Log(
                logging.WARNING,
                f"invalid request: {decision.message}",
                (*who, ("reason", decision.reason)),
            ),
        )
    # RELEASED: no longer a LoadBalancer
    if not decision.released:
        return ()
    return (
        Emit(False, "IPReleased", f"released {_join(decision.released)}"),
        Log(logging.INFO, "released", (*who, _addr(decision.released))),
    )


_POOL_WARNINGS = {
    "Exhausted": "PoolExhausted",
    "Conflicting": "PoolConflicting",
    "Invalid": "PoolInvalid",
}


def pool_effects(
    name: str,
    before: ObservedCondition | None,
    shown: PoolShown | None,
    warned: tuple[str, ...],
) -> tuple[Effect, ...]:
    """Gauges and Events of pool ``name``: ``before`` is the Ready condition it showed,
    ``shown`` what it shows now (None: the pool is gone), ``warned`` the read-as warnings
    already announced."""
    out: list[Effect] = []
    for fam in (Family.IPV4, Family.IPV6):
        labels = (name, fam.lower())
        counts = shown.counts[fam] if shown is not None else None
        out.append(Gauge(Metric.POOL_TOTAL, labels, None if counts is None else counts.total))
        out.append(Gauge(Metric.POOL_ASSIGNED, labels, None if counts is None else counts.assigned))
    for state in PoolState:
        value = None if shown is None else float(shown.state is state)
        out.append(Gauge(Metric.POOL_STATE, (name, state.value), value))
    if shown is None:
        return tuple(out)
    ready = shown.condition(READY)
    became = ready is not None and (before is None or before.reason != ready.reason)
    if ready is not None and became and ready.reason in _POOL_WARNINGS:
        out.append(Emit(True, _POOL_WARNINGS[ready.reason], ready.message))
        out.append(
            Log(logging.WARNING, f"pool {ready.reason.lower()}: {ready.message}", (("pool", name),))
        )
    if shown.warnings and shown.warnings != warned:
        for text in shown.warnings:
            out.append(Emit(True, "AddressesNormalized", text))
    return tuple(out)


PENDING = "Pending"
"""``lbd_services_waiting`` reason of a Service the controller has not decided about yet."""


def services_waiting(
    views: Iterable[ObservedService], lb_class: str | None
) -> dict[tuple[str, str], float]:
    """``lbd_services_waiting{reason, pool}``: LoadBalancer Services of our class without an
    address, by the reason their AddressAssigned condition gives (``Pending`` while none is
    written yet) and the pool they ask for (``""``: any pool)."""
    out: Counter[tuple[str, str]] = Counter()
    for view in views:
        if view.addresses or not view.ours(lb_class):
            continue
        c = view.condition
        reason = c.reason if c is not None and c.status == "False" and c.reason else PENDING
        pool = view.request.pool if isinstance(view.request, ServiceRequest) else None
        out[(reason, pool or "")] += 1
    return {labels: float(n) for labels, n in out.items()}


def _join(addresses: tuple[str, ...]) -> str:
    return ", ".join(addresses)


def _addr(addresses: tuple[str, ...]) -> tuple[str, str]:
    return ("address", ",".join(addresses))


def apply_fields(effect: Log) -> Mapping[str, str]:
    """A log effect's fields, as ``extra`` for :mod:`logging` (the JSON log keeps them)."""
    return dict(effect.fields)

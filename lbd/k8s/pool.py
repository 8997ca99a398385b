"""IPAddressPools: read into an :class:`ObservedPool`; their status written by the controller.

API::

    view = observe_pool(obj)               # name, created, spec (for lbd.core.config), labels,
    view.config_input()                    # status as shown
    writer = PoolStatusWriter(patcher)
    writer.write(view, shown) -> bool      # a PoolShown (lbd.core.poolstatus) -> status fields

The spec goes to :func:`lbd.core.config.build_config` as the plain map it is: validating it,
with field paths in the errors, is the core's job. The status fields written here are rendered
from :class:`lbd.core.poolstatus.PoolShown`, the one pure function of configuration and allocator
that decides them. Pool status does not depend on what changed, so a 409 re-reads the pool and
writes again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lbd.core.config import PoolInput
from lbd.core.model import Family, render_count
from lbd.core.poolstatus import PoolCondition, PoolShown
from lbd.k8s.client import IPADDRESSPOOLS, JsonDict
from lbd.k8s.conditions import (
    Condition,
    Conditions,
    ObservedCondition,
    conditions_of,
    merge_conditions,
)
from lbd.k8s.meta import ObjectRef, labels_of, meta_field, rfc3339
from lbd.k8s.patch import Patcher

Obj = Mapping[str, Any]

WAITING_FIELD = "waitingServices"
_SUFFIX = {Family.IPV4: "IPv4", Family.IPV6: "IPv6"}


@dataclass(frozen=True)
class ObservedPool:
    """One IPAddressPool as read."""

    ref: ObjectRef
    name: str
    created: str
    spec: Mapping[str, Any] = field(hash=False)
    labels: Mapping[str, str] = field(hash=False)
    status: Mapping[str, Any] = field(hash=False, repr=False)
    """The status fields as shown (for the writer's diff)."""
    conditions: Conditions = field(repr=False)
    usage: Mapping[Family, PoolUsage] = field(default_factory=dict, hash=False)
    """The counts the controller last wrote (families it wrote none for are absent)."""
    waiting: int = 0
    """``status.waitingServices``: Services waiting for an address of this pool."""

    def config_input(self) -> PoolInput:
        return PoolInput(spec=self.spec, labels=self.labels, created=self.created)

    def condition(self, ctype: str) -> ObservedCondition | None:
        return ObservedCondition.find(self.conditions, ctype)


@dataclass(frozen=True)
class PoolUsage:
    """One family's counts as the pool's status shows them."""

    assigned: int
    available: int

    @property
    def total(self) -> int:
        return self.assigned + self.available


def _count(value: Any) -> int | None:
    """A status counter: an int, or its decimal string above 2**53 (:func:`render_count`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdecimal():
        return int(value)
    return None


def _usage(status: Mapping[str, Any]) -> dict[Family, PoolUsage]:
    out: dict[Family, PoolUsage] = {}
    for fam, suffix in _SUFFIX.items():
        assigned = _count(status.get(f"assigned{suffix}"))
        available = _count(status.get(f"available{suffix}"))
        if assigned is not None and available is not None and assigned + available > 0:
            out[fam] = PoolUsage(assigned, available)
    return out


def observe_pool(obj: Obj) -> ObservedPool:
    spec = obj.get("spec")
    status = obj.get("status")
    status = status if isinstance(status, Mapping) else {}
    return ObservedPool(
        ref=ObjectRef.of(obj),
        name=meta_field(obj, "name"),
        created=meta_field(obj, "creationTimestamp"),
        spec=spec if isinstance(spec, Mapping) else {},
        labels=labels_of(obj),
        status=status,
        conditions=conditions_of(status.get("conditions")),
        usage=_usage(status),
        waiting=w if isinstance(w := status.get(WAITING_FIELD), int) and w > 0 else 0,
    )


def status_fields(view: ObservedPool, shown: PoolShown, stamp: str) -> JsonDict:
    """The status map that shows ``shown`` (conditions merged with what the pool has)."""
    out: JsonDict = {}
    for fam, suffix in _SUFFIX.items():
        counts = shown.counts[fam]
        out[f"assigned{suffix}"] = render_count(counts.assigned)
        out[f"available{suffix}"] = render_count(counts.available)
    out[WAITING_FIELD] = shown.waiting
    conds = view.conditions
    for cond in shown.conditions:
        merged = merge_conditions(conds, cond.type, _as_condition(cond), stamp)
        if merged is not None:
            conds = tuple(merged)
    out["conditions"] = [dict(c) for c in conds]
    return out


def _as_condition(cond: PoolCondition) -> Condition:
    return Condition(cond.status, cond.reason, cond.message)


@dataclass(frozen=True)
class PoolStatusWriter:
    """Writes a pool's status when it differs from what the pool shows."""

    patcher: Patcher

    def write(
        self, view: ObservedPool, shown: PoolShown, *, still: Callable[[], bool] | None = None
    ) -> bool:
        """Make the pool show ``shown``; whether it wrote (the written object goes to the
        patcher's ``on_written``).

        A 409 (the pool changed since ``view``) is raised: the caller decides again from the
        newer view its watch brings. Re-reading here would need ``get`` on pools, which the
        controller's RBAC does not hold (it lists and watches; docs/SECURITY.md)."""
        status = status_fields(view, shown, rfc3339())
        if all(view.status.get(k) == v for k, v in status.items()):
            return False
        body = {"metadata": {"resourceVersion": view.ref.resource_version}, "status": status}
        path = IPADDRESSPOOLS.path(name=view.name, subresource="status")
        return self.patcher.send_unless_gone(path, body, still=still)

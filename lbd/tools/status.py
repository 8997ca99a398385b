"""``lbd status``, decided: a :class:`~lbd.k8s.snapshot.Snapshot` in, a :class:`StatusReport`
out, and the report rendered as a table or as plain data (for ``-o json|yaml``).

API::

    report = build_status(snapshot, lb_class=None)
    print(render_table(report, color=False))
    json.dumps(as_data(report))

Pure: no I/O, no clock (the read happens in :mod:`lbd.tools.status_cli`). Decisions:

- A pool's usage per family is what its status shows (the controller's counts), never
  recounted here: the controller alone decides what is assigned, and a recount from the Services
  would disagree with it while a change is in flight. A pool the controller has not written yet
  shows no family and state ``Unknown``.
- A family is *near exhaustion* at :data:`NEAR_EXHAUSTION` of its addresses assigned, or with
  none left; the table colours it (yellow near, red full) when asked to, and the data form says
  it in ``nearExhaustion`` so a script needs no threshold of its own.
- A Service's owner is the node its ServiceL2Status names (the speakers write it on each change
  of owner), and its two conditions are shown by reason, with the message of the first one that
  is not True: that message is the "why" (docs/API.md).
- A speaker is a pod of the speaker DaemonSet; a node that announces without a speaker pod being
  listed (a lab, or speakers run outside Kubernetes) is shown with ``alive`` unknown rather than
  dropped, so what is announced is always visible.
- Conflicts are the Warning Events lbd writes about a conflict (:data:`CONFLICT_REASONS`), the
  most recent :data:`RECENT_CONFLICTS` first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lbd.core.model import Family, ServiceKey
from lbd.k8s.conditions import ObservedCondition
from lbd.k8s.event_view import ObservedEvent
from lbd.k8s.pool import ObservedPool
from lbd.k8s.service import ObservedService
from lbd.k8s.snapshot import Snapshot

NEAR_EXHAUSTION = 0.9
RECENT_CONFLICTS = 10
CONFLICT_REASONS = frozenset({"VIPConflict", "PoolConflicting"})
"""Event reasons that report a conflict; plus ``AllocationFailed`` for ``SharingConflict``."""
SHARING_CONFLICT = "SharingConflict"
BAR_WIDTH = 20


@dataclass(frozen=True)
class FamilyUsage:
    family: Family
    assigned: int
    total: int

    @property
    def available(self) -> int:
        return self.total - self.assigned

    @property
    def fraction(self) -> float:
        return self.assigned / self.total if self.total else 1.0

    @property
    def near_exhaustion(self) -> bool:
        return self.available <= 0 or self.fraction >= NEAR_EXHAUSTION


@dataclass(frozen=True)
class PoolRow:
    name: str
    state: str
    """The Ready condition: ``Ready``, else its reason (``Exhausted``, ``Invalid``,
    ``Conflicting``); ``Unknown`` before the controller wrote it."""
    message: str
    families: tuple[FamilyUsage, ...]
    waiting: int


@dataclass(frozen=True)
class ServiceRow:
    key: str
    addresses: tuple[str, ...]
    pool: str | None
    node: str | None
    interfaces: tuple[str, ...]
    assigned: ObservedCondition | None
    announced: ObservedCondition | None

    @property
    def waiting(self) -> bool:
        return not self.addresses

    @property
    def why(self) -> str:
        """The message of the first condition that is not True ("" when all are)."""
        for cond in (self.assigned, self.announced):
            if cond is not None and cond.status != "True":
                return cond.message or cond.reason
        return ""


@dataclass(frozen=True)
class SpeakerRow:
    node: str
    pod: str | None
    alive: bool | None
    """Pod Running and Ready; None: no speaker pod listed for a node that announces."""
    announces: tuple[str, ...]
    """Service keys whose ServiceL2Status names this node."""
    vips: tuple[str, ...]


@dataclass(frozen=True)
class ConflictRow:
    last_seen: str
    object: str
    reason: str
    message: str
    count: int


@dataclass(frozen=True)
class StatusReport:
    pools: tuple[PoolRow, ...]
    services: tuple[ServiceRow, ...]
    speakers: tuple[SpeakerRow, ...]
    conflicts: tuple[ConflictRow, ...]
    notes: tuple[str, ...]
    """What could not be read (a kind not served or forbidden)."""

    @property
    def waiting(self) -> int:
        return sum(1 for s in self.services if s.waiting)


# --------------------------------------------------------------------------- deciding


def _pool_row(pool: ObservedPool) -> PoolRow:
    ready = pool.condition("Ready")
    state = "Unknown" if ready is None else "Ready" if ready.status == "True" else ready.reason
    families = tuple(FamilyUsage(fam, u.assigned, u.total) for fam, u in sorted(pool.usage.items()))
    message = "" if ready is None or ready.status == "True" else ready.message
    return PoolRow(pool.name, state or "NotReady", message, families, pool.waiting)


def _service_row(
    svc: ObservedService, owner: Mapping[ServiceKey, tuple[str, tuple[str, ...]]]
) -> ServiceRow:
    node, ifaces = owner.get(svc.key, ("", ()))
    return ServiceRow(
        key=svc.key,
        addresses=svc.addresses,
        pool=svc.recorded_pool or svc.pool_hint,
        node=node or None,
        interfaces=ifaces,
        assigned=svc.condition,
        announced=svc.announced,
    )


def is_conflict(event: ObservedEvent) -> bool:
    return event.reason in CONFLICT_REASONS or (
        event.reason == "AllocationFailed" and event.message.startswith(SHARING_CONFLICT)
    )


def build_status(snap: Snapshot, lb_class: str | None = None) -> StatusReport:
    """The report (see the module docstring for each decision)."""
    owner = {s.service: (s.node, s.interfaces) for s in snap.l2statuses if s.announced}
    services = tuple(
        _service_row(s, owner)
        for s in sorted(snap.services, key=lambda s: s.key)
        if s.ours(lb_class)
    )
    announced: dict[str, list[str]] = {}
    vips: dict[str, list[str]] = {}
    for st in sorted(snap.l2statuses, key=lambda s: s.service):
        if st.announced:  # a reporter's object names a node that does not announce
            announced.setdefault(st.node, []).append(st.service)
            vips.setdefault(st.node, []).extend(st.vips)
    speakers: dict[str, SpeakerRow] = {}
    for pod in sorted(snap.speakers, key=lambda p: (p.node, p.ref.name)):
        node = pod.node or f"<unscheduled {pod.ref.name}>"
        if node in speakers and speakers[node].alive:
            continue  # a rolling update: the running pod speaks for the node
        speakers[node] = SpeakerRow(
            node,
            pod.ref.name,
            pod.running,
            tuple(announced.get(node, ())),
            tuple(vips.get(node, ())),
        )
    for node in sorted(set(announced) - set(speakers)):
        speakers[node] = SpeakerRow(node, None, None, tuple(announced[node]), tuple(vips[node]))
    conflicts = sorted(
        (e for e in snap.events if is_conflict(e)), key=lambda e: e.last_seen, reverse=True
    )[:RECENT_CONFLICTS]
    return StatusReport(
        pools=tuple(_pool_row(p) for p in sorted(snap.pools, key=lambda p: p.name)),
        services=services,
        speakers=tuple(speakers[n] for n in sorted(speakers)),
        conflicts=tuple(
            ConflictRow(
                e.last_seen,
                f"{e.involved.kind}/{e.involved.key}",
                e.reason,
                e.message,
                e.count,
            )
            for e in conflicts
        ),
        notes=tuple(f"{kind}: {why}" for kind, why in sorted(snap.missing.items())),
    )


# --------------------------------------------------------------------------- data form


def _cond_data(cond: ObservedCondition | None) -> dict[str, str] | None:
    if cond is None:
        return None
    return {"status": cond.status, "reason": cond.reason, "message": cond.message}


def as_data(report: StatusReport) -> dict[str, Any]:
    """The report as plain JSON-able data (``-o json``/``-o yaml``); camelCase keys, as
    Kubernetes objects have."""
    return {
        "pools": [
            {
                "name": p.name,
                "state": p.state,
                "message": p.message,
                "waitingServices": p.waiting,
                "families": [
                    {
                        "family": str(f.family),
                        "assigned": f.assigned,
                        "available": f.available,
                        "total": f.total,
                        "nearExhaustion": f.near_exhaustion,
                    }
                    for f in p.families
                ],
            }
            for p in report.pools
        ],
        "waitingServices": report.waiting,
        "services": [
            {
                "service": s.key,
                "addresses": list(s.addresses),
                "pool": s.pool,
                "node": s.node,
                "interfaces": list(s.interfaces),
                "addressAssigned": _cond_data(s.assigned),
                "announced": _cond_data(s.announced),
                "why": s.why,
            }
            for s in report.services
        ],
        "speakers": [
            {
                "node": s.node,
                "pod": s.pod,
                "alive": s.alive,
                "announces": list(s.announces),
                "vips": list(s.vips),
            }
            for s in report.speakers
        ],
        "conflicts": [
            {
                "lastSeen": c.last_seen,
                "object": c.object,
                "reason": c.reason,
                "message": c.message,
                "count": c.count,
            }
            for c in report.conflicts
        ],
        "notes": list(report.notes),
    }


# --------------------------------------------------------------------------- table


YELLOW, RED, RESET = "\x1b[33m", "\x1b[31m", "\x1b[0m"


def usage_bar(f: FamilyUsage, color: bool) -> str:
    """``[##########----------]  50% 5/10``: red when full, yellow near exhaustion."""
    filled = round(f.fraction * BAR_WIDTH) if f.total else BAR_WIDTH
    if f.assigned and not filled:
        filled = 1  # something is used: show it
    bar = "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]"
    text = f"{bar} {f.fraction:4.0%} {f.assigned}/{f.total}"
    if color and f.near_exhaustion:
        return (RED if f.available <= 0 else YELLOW) + text + RESET
    return text


def table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell (ANSI colour codes do not count), 3 spaces apart, as
    kubectl prints; the last column is not padded."""

    def width(cell: str) -> int:
        return len(cell) - (len(YELLOW) + len(RESET) if cell.startswith("\x1b[") else 0)

    widths = [max(width(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c + " " * (w - width(c)) for c, w in zip(r[:-1], widths, strict=False)]
        lines.append("   ".join([*cells, r[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def _cond_cell(cond: ObservedCondition | None) -> str:
    if cond is None:
        return "-"
    return cond.reason if cond.status == "True" else f"{cond.reason or 'False'}!"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _speakers_summary(speakers: Sequence[SpeakerRow]) -> str:
    """``2 of 3 speaker pods alive``, and the nodes that announce with no speaker pod listed."""
    pods = [s for s in speakers if s.alive is not None]
    alive = sum(1 for s in pods if s.alive)
    text = f"{alive} of {len(pods)} speaker pods alive"
    unlisted = len(speakers) - len(pods)
    if unlisted:
        text += f"; {_plural(unlisted, 'node')} announcing without a speaker pod listed"
    return text


def render_table(report: StatusReport, *, color: bool = False) -> str:
    """The human form: four sections (pools, Services, speakers, conflicts). A condition that is
    not True ends in ``!`` and its message is in the WHY column."""
    out: list[str] = []
    out.append(f"POOLS ({_plural(report.waiting, 'Service')} waiting for an address)\n")
    if report.pools:
        rows = [["NAME", "FAMILY", "USAGE", "WAITING", "STATE"]]
        for p in report.pools:
            state = p.state if not p.message else f"{p.state}: {p.message}"
            if not p.families:
                rows.append([p.name, "-", "-", str(p.waiting), state])
            for i, f in enumerate(p.families):
                rows.append(
                    [
                        p.name if i == 0 else "",
                        str(f.family),
                        usage_bar(f, color),
                        str(p.waiting) if i == 0 else "",
                        state if i == 0 else "",
                    ]
                )
        out.append(table(rows))
    else:
        out.append("no IPAddressPool\n")
    with_address = sum(1 for s in report.services if not s.waiting)
    out.append(f"\nSERVICES ({with_address} with an address, {report.waiting} waiting)\n")
    if report.services:
        rows = [["SERVICE", "ADDRESSES", "POOL", "NODE", "ASSIGNED", "ANNOUNCED", "WHY"]]
        for s in report.services:
            rows.append(
                [
                    s.key,
                    ",".join(s.addresses) or "<pending>",
                    s.pool or "-",
                    s.node or "-",
                    _cond_cell(s.assigned),
                    _cond_cell(s.announced),
                    s.why or "-",
                ]
            )
        out.append(table(rows))
    else:
        out.append("no LoadBalancer Service\n")
    out.append(f"\nSPEAKERS ({_speakers_summary(report.speakers)})\n")
    if report.speakers:
        rows = [["NODE", "POD", "ALIVE", "ANNOUNCES"]]
        for sp in report.speakers:
            alive_cell = "unknown" if sp.alive is None else "yes" if sp.alive else "no"
            what = ", ".join(sp.announces) if sp.announces else "-"
            if sp.vips:
                what = f"{len(sp.announces)}: {what} ({','.join(sp.vips)})"
            rows.append([sp.node, sp.pod or "-", alive_cell, what])
        out.append(table(rows))
    else:
        out.append("no speaker pod (label app.kubernetes.io/component=speaker)\n")
    out.append(f"\nRECENT CONFLICTS ({len(report.conflicts)})\n")
    if report.conflicts:
        rows = [["LAST SEEN", "OBJECT", "REASON", "COUNT", "MESSAGE"]]
        for c in report.conflicts:
            rows.append([c.last_seen, c.object, c.reason, str(c.count), c.message])
        out.append(table(rows))
    else:
        out.append("none\n")
    for note in report.notes:
        out.append(f"\nnote: could not read {note}\n")
    return "".join(out)

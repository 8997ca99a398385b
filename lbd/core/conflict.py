"""When another MAC answering for an owned VIP is an address conflict, and when it is a hand-over.

Every normal change of owner (failover, a node returning, a graceful leave) has a moment where
the previous owner still answers: it stops only when it hears the new owner's heartbeat (one
heartbeat interval later), and a leaving speaker keeps answering a short grace on purpose so
that there is no gap. The new owner sees those replies (and maybe the tail of the old owner's
gratuitous burst). Counting them as conflicts would make ``lbd_vip_conflicts_total`` rise, a
warning be logged and a Warning event be emitted on *every* failover, so an alert on the metric
would be useless.

The rule, shared by the responder (metric and log) and the reconciler (event): a frame from
another MAC within ``grace`` seconds of this node gaining the VIP is a hand-over, not a
conflict. A MAC that keeps claiming the VIP after that is a conflict. Both outcomes still make
the owner re-announce (cheap, rate limited by the caller): during a hand-over that re-asserts
the new owner's MAC right after the old owner's last reply.

The grace (1 s by default) is several heartbeat intervals plus the leave grace (0.15 s); a real
duplicate address is rarely that short-lived, and if it is, it is still detected on its next
frame after the grace.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_GRACE = 1.0


class Verdict(StrEnum):
    CONFLICT = "Conflict"
    HANDOVER = "HandOver"  # the previous owner, still answering for a moment


@dataclass(frozen=True, slots=True)
class ConflictRule:
    """``grace``: seconds after gaining a VIP during which another MAC is the previous owner."""

    grace: float = DEFAULT_GRACE

    def __post_init__(self) -> None:
        if not self.grace >= 0:
            raise ValueError(f"ConflictRule.grace: must be >= 0 seconds, got {self.grace!r}")

    def judge(self, *, now: float, gained_at: float | None) -> Verdict:
        """Verdict on a frame from another MAC for a VIP owned since ``gained_at``.

        ``gained_at`` None means the time is unknown (e.g. owned since before a restart of the
        component): treat it as long owned, so a real conflict is never hidden.
        """
        if gained_at is not None and now - gained_at < self.grace:
            return Verdict.HANDOVER
        return Verdict.CONFLICT

"""When another MAC answering for an owned VIP is an address conflict, and when it is a hand-over.

Every normal change of owner (failover, a node returning, a graceful leave) has a moment where
two nodes answer for the VIP: the new owner starts answering (and sends its gratuitous burst)
first, and the previous owner stops only when the new owner's heartbeat reaches it (a leaving
speaker even keeps answering a short grace on purpose, so that there is no gap). Each of them
sees the other's frames. Counting those as conflicts would make ``lbd_vip_conflicts_total`` rise,
a warning be logged and a Warning event be emitted on *every* failover and node return, so an
alert on the metric would be useless. Worse, an old owner that answers the newcomer's gratuitous
ARP with its own re-announcement pulls the clients' neighbour caches back to itself for the
moment before it yields (a client may then keep the old MAC until its cache entry expires).

So a frame from another MAC, seen at ``seen_at``, is judged like this:

- the VIP is no longer owned when we judge: it was handed over (we are the previous owner);
  nothing to do;
- it came within ``grace`` seconds of this node gaining the VIP: we are the new owner and the
  frame is the previous owner's tail. Not a conflict, but re-announce at once (cheap, rate
  limited by the caller), which puts our MAC back in caches after the old owner's last reply;
- otherwise wait until ``settle`` seconds after the frame: a peer that takes the VIP over tells
  us in its next heartbeat (sent at once, a few ms; ``settle`` allows for lost heartbeats), and
  we lose the VIP without ever fighting for it. Still owned after ``settle``: a real conflict
  (counted, logged, one Warning event, re-announced).

The grace (1 s) covers several heartbeat intervals, the leave grace (0.15 s) and the newcomer's
socket wait; a real duplicate address is rarely that short-lived, and if it is, it is detected on
its next frame after the grace. ``settle`` (0.5 s) only delays the re-announcement against a real
rogue host, which is then counted and reported just the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_GRACE = 1.0
DEFAULT_SETTLE = 0.5


class Verdict(StrEnum):
    CONFLICT = "Conflict"  # count, log, warn once, re-announce
    HANDOVER = "HandOver"  # we just gained it: the previous owner's tail; re-announce only
    HANDED_OVER = "HandedOver"  # we lost it meanwhile: we were the previous owner; nothing
    WAIT = "Wait"  # too early to tell: judge again at ``seen_at + settle``


@dataclass(frozen=True, slots=True)
class ConflictRule:
    """``grace``: seconds after gaining a VIP during which another MAC is the previous owner;
    ``settle``: seconds a long-time owner waits for a hand-over before calling it a conflict."""

    grace: float = DEFAULT_GRACE
    settle: float = DEFAULT_SETTLE

    def __post_init__(self) -> None:
        if not self.grace >= 0:
            raise ValueError(f"ConflictRule.grace: must be >= 0 seconds, got {self.grace!r}")
        if not self.settle >= 0:
            raise ValueError(f"ConflictRule.settle: must be >= 0 seconds, got {self.settle!r}")

    def judge(self, *, now: float, seen_at: float, gained_at: float | None, owned: bool) -> Verdict:
        """Verdict on a frame from another MAC for a VIP, seen at ``seen_at``, judged at ``now``.

        ``gained_at``: when this node gained the VIP; None means unknown (e.g. owned since
        before a restart of the component): treated as long owned, so a real conflict is never
        hidden. ``owned``: whether this node still owns the VIP now.
        """
        if not owned:
            return Verdict.HANDED_OVER
        if gained_at is not None and seen_at - gained_at < self.grace:
            return Verdict.HANDOVER
        if now - seen_at < self.settle:
            return Verdict.WAIT
        return Verdict.CONFLICT

    def due(self, seen_at: float) -> float:
        """When a frame judged ``WAIT`` is to be judged again."""
        return seen_at + self.settle

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

:class:`ConflictJudge` is the one owner of this verdict (issue 13: the responder and the
reconciler used to judge it each with their own record of when the VIP was gained). It holds when
each owned VIP was gained, the claims not yet decided, and when each VIP was last re-announced on
each interface; the responder feeds it claims and the owned table and acts on its outcomes, and
the reconciler only turns a ``CONFLICT`` outcome into the Service's Warning event.

Every claim is answered: a claim that arrives while an earlier one for the same VIP and interface
waits for its verdict joins it, and the one re-announcement that verdict brings comes after both.
So an owned VIP's answer to any claim goes out within ``settle`` of it (issue 16: the responder
used to drop a claim that came less than a second after the previous one, and two forged
gratuitous ARPs 0.7 s apart left a client on the wrong MAC for 8.3 s). A flood of claims costs at
most one re-announcement per ``settle`` (conflicts) or per ``reannounce_gap`` (hand-overs) per
VIP and interface.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

DEFAULT_GRACE = 1.0
DEFAULT_SETTLE = 0.5
DEFAULT_REANNOUNCE_GAP = 0.1


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
    reannounce_gap: float = DEFAULT_REANNOUNCE_GAP  # at least this between two re-announcements

    def __post_init__(self) -> None:
        if not self.grace >= 0:
            raise ValueError(f"ConflictRule.grace: must be >= 0 seconds, got {self.grace!r}")
        if not self.settle >= 0:
            raise ValueError(f"ConflictRule.settle: must be >= 0 seconds, got {self.settle!r}")
        if not self.reannounce_gap >= 0:  # (every claim is answered within max(settle, gap))
            raise ValueError(
                f"ConflictRule.reannounce_gap: must be >= 0 seconds, got {self.reannounce_gap!r}"
            )

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
        if now < self.due(seen_at):  # (the same sum as due(): no rounding disagreement)
            return Verdict.WAIT
        return Verdict.CONFLICT

    def due(self, seen_at: float) -> float:
        """When a frame judged ``WAIT`` is to be judged again."""
        return seen_at + self.settle


@dataclass(frozen=True, slots=True)
class Claim:
    """A frame from ``mac`` claiming ``vip`` on ``interface``, received at ``at`` (monotonic)."""

    vip: str
    interface: str
    mac: str
    at: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decided claim: ``first`` and the ``claims - 1`` later ones that joined it."""

    first: Claim
    verdict: Verdict  # never WAIT
    claims: int = 1

    @property
    def reannounce(self) -> bool:
        """Send the gratuitous frames again on ``first.interface`` now."""
        return self.verdict in (Verdict.HANDOVER, Verdict.CONFLICT)


@dataclass
class _Open:
    first: Claim
    claims: int = 1


@dataclass
class ConflictJudge:
    """Decides every claim on an owned VIP; no I/O, the caller passes the time.

    Not thread-safe: the responder calls it under its lock. Use: :meth:`set_owned` whenever the
    owned table changes, :meth:`claim` for each claim, :meth:`decide` when woken (and again at
    the time it returns).
    """

    rule: ConflictRule = field(default_factory=ConflictRule)
    _owned: dict[str, frozenset[str]] = field(default_factory=dict)
    _gained_at: dict[str, float] = field(default_factory=dict)
    _open: dict[tuple[str, str], _Open] = field(default_factory=dict)
    _answered_at: dict[tuple[str, str], float] = field(default_factory=dict)

    def set_owned(self, owned: Mapping[str, Collection[str]], now: float) -> None:
        """The VIPs owned now and their interfaces; VIPs new to the table were gained ``now``."""
        for vip in self._owned.keys() - owned.keys():
            self._gained_at.pop(vip, None)
            for key in [k for k in self._answered_at if k[0] == vip]:
                del self._answered_at[key]
        for vip in owned.keys() - self._owned.keys():
            self._gained_at[vip] = now
        self._owned = {vip: frozenset(ifs) for vip, ifs in owned.items()}

    def gained_at(self, vip: str) -> float | None:
        return self._gained_at.get(vip)

    def claim(self, claim: Claim) -> None:
        """Record a claim; one that comes while an earlier one on the same VIP and interface
        waits joins it (the earlier one's re-announcement will answer both)."""
        key = (claim.vip, claim.interface)
        pending = self._open.get(key)
        if pending is None:
            self._open[key] = _Open(claim)
        else:
            pending.claims += 1

    def decide(self, now: float) -> tuple[list[Outcome], float | None]:
        """Claims decided at ``now``, and when to call again (None: nothing waits)."""
        rule = self.rule
        out: list[Outcome] = []
        wake: float | None = None
        for key, pending in list(self._open.items()):
            first = pending.first
            owned = first.interface in self._owned.get(first.vip, ())
            verdict = rule.judge(
                now=now, seen_at=first.at, gained_at=self._gained_at.get(first.vip), owned=owned
            )
            at = rule.due(first.at) if verdict is Verdict.WAIT else now
            if verdict in (Verdict.HANDOVER, Verdict.CONFLICT):
                last = self._answered_at.get(key)
                if last is not None:
                    at = max(at, last + rule.reannounce_gap)
            if at > now:
                wake = at if wake is None else min(wake, at)
                continue
            del self._open[key]
            outcome = Outcome(first, verdict, pending.claims)
            if outcome.reannounce:
                self._answered_at[key] = now
            out.append(outcome)
        return out, wake

"""The ``lbd.io/Announced`` condition: decided from what the speakers wrote; its Events and gauge.

API (all pure)::

    announced_condition(service, l2status, speakers, lb_class) -> Condition | None | KEEP
    announced_effects(key, before, after, wrote) -> tuple[Effect, ...]
    unannounced_counts(reasons_by_service) -> {reason: count}   # lbd_services_unannounced

Who decides what (docs/SPEAKER.md, "Announcement status"): the speakers decide every Service on
every change, so they know who announces it and, when nobody may, why; the owner, or one
reporting speaker, writes that into the Service's ServiceL2Status only when it changes. The
controller, the only writer of Service status, copies it into the condition, again only when it
changes. A steady cluster therefore costs no write at all; a change of owner costs the owner's
ServiceL2Status writes and at most one Service status write (none when the Service stays
announced: the condition names the node, so a failover rewrites it once).

The one answer no speaker can give is that no speaker runs: :class:`SpeakerState` (the speaker
Pods' Ready conditions, read by :mod:`lbd.controller.speakers`) says so, and it wins over what
a speaker wrote before it stopped.

``KEEP``: the speakers have not said anything yet (a Service that just got its address, or
whose ServiceL2Status is between a dead owner and its successor); the condition is left as it
is rather than guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from lbd.controller.effects import Effect, Emit, Log
from lbd.core.announce import Unannounced
from lbd.k8s.conditions import Condition, ObservedCondition
from lbd.k8s.l2status import ANNOUNCED_REASON, ObservedL2Status
from lbd.k8s.service import ObservedService


class Keep(Enum):
    KEEP = "keep"


KEEP = Keep.KEEP
"""Leave the condition as it is."""

NOT_ANNOUNCED_EVENT = "NotAnnounced"
ANNOUNCED_EVENT = "Announced"


@dataclass(frozen=True)
class SpeakerState:
    """Whether any speaker runs, as the cluster shows it (docs/API.md, ``NoLiveSpeaker``)."""

    live: bool
    message: str = ""
    """Why none is live, for people: how many speaker Pods exist and since when none is Ready."""


def _join(items: tuple[str, ...]) -> str:
    return ", ".join(items)


def announced_condition(
    service: ObservedService,
    l2status: ObservedL2Status | None,
    speakers: SpeakerState | None,
    lb_class: str | None,
) -> Condition | Keep | None:
    """What ``service``'s ``lbd.io/Announced`` condition should say.

    None removes it (not our LoadBalancer, or no address: nothing to announce); ``speakers``
    None means the controller has no source of speaker liveness (it then never says
    ``NoLiveSpeaker``).
    """
    if not service.ours(lb_class) or not service.addresses:
        return None
    if speakers is not None and not speakers.live:
        return Condition(False, Unannounced.NO_LIVE_SPEAKER.value, speakers.message)
    if l2status is None or not l2status.written:
        return KEEP
    if set(service.addresses) - set(l2status.vips):
        return KEEP  # written for the Service's previous addresses: the speakers catch up
    if l2status.announced:
        where = (
            f" on {_join(l2status.interfaces)}" if l2status.interfaces else " (default interfaces)"
        )
        return Condition(
            True,
            ANNOUNCED_REASON,
            f"{_join(service.addresses)} announced from {l2status.node}{where}",
        )
    return Condition(False, l2status.reason or "Unknown", l2status.message)


def announced_effects(
    key: str, before: ObservedCondition | None, after: Condition | None, wrote: bool
) -> tuple[Effect, ...]:
    """Events and logs of one change of the condition: a Warning each time it becomes False
    or its reason changes, a Normal when it becomes True again; nothing when only the message
    changed (the condition shows it), when it first becomes True (the speaker's NodeAssigned
    Event says it), or when nothing was written."""
    if not wrote or after is None:
        return ()
    who = (("service", key),)
    was_false = before is not None and before.status == "False"
    if after.status:
        if not was_false:
            return ()
        return (
            Emit(False, ANNOUNCED_EVENT, after.message),
            Log(logging.INFO, f"announced again: {after.message}", who),
        )
    if was_false and before is not None and before.reason == after.reason:
        return ()
    text = f"{after.reason}: {after.message}"
    return (
        Emit(True, NOT_ANNOUNCED_EVENT, text),
        Log(logging.WARNING, f"not announced: {text}", (*who, ("reason", after.reason))),
    )


def unannounced_counts(reasons: Mapping[str, str]) -> dict[str, int]:
    """``lbd_services_unannounced{reason}``: Services (by key) whose condition is False, per
    reason; every known reason is present (0 included), so a series never goes missing."""
    counts = {r.value: 0 for r in Unannounced}
    for reason in reasons.values():
        counts[reason] = counts.get(reason, 0) + 1
    return counts

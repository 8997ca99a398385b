"""Why a Service with an address is not announced, and which speaker says so (issue 14, pt 1).

Two pure functions, run by every speaker on the same inputs as :func:`lbd.core.election.decide`
(docs/SPEAKER.md, "Announcement status"):

- :func:`not_announced` turns a :class:`~lbd.core.election.Decision` without an owner into one
  reason a user can act on, checked in the order a user would fix things: configuration first
  (:attr:`Unannounced.NO_ADVERTISEMENT`: no L2Advertisement selects the Service's pool, the
  Service, or any node), then the workload (:attr:`Unannounced.NO_READY_ENDPOINTS`), then the
  nodes (:attr:`Unannounced.NO_ELIGIBLE_NODE`, naming the first rule that rules out each node,
  ``n1: Drained, n2: NotReady``).
- :func:`reporter` picks the one speaker that writes that answer down: the first of the *live*
  speakers in the Service's rendezvous order, eligibility ignored. Every speaker that hears the
  same peers picks the same one, so exactly one object is written, and only on a change; when
  the reporter dies the next in order takes over, as an owner's successor does.

``NoLiveSpeaker`` is in the enum because it is one of the answers a user reads, but no speaker
can give it: the controller does (docs/API.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from lbd.core.election import Decision, Ineligible, NodeView, ServiceView, rank
from lbd.core.model import Advertisement


class Unannounced(StrEnum):
    """Why nobody answers ARP/NDP for a Service's addresses (condition reasons, docs/API.md)."""

    NO_ADVERTISEMENT = "NoAdvertisement"
    NO_READY_ENDPOINTS = "NoReadyEndpoints"
    NO_ELIGIBLE_NODE = "NoEligibleNode"
    NO_LIVE_SPEAKER = "NoLiveSpeaker"


@dataclass(frozen=True)
class NotAnnounced:
    """The answer for one Service: a reason, a sentence, and why each node is out."""

    reason: Unannounced
    message: str
    nodes: tuple[tuple[str, Ineligible], ...] = field(default=())
    """(node, first rule that rules it out), by node name."""


def _ads_text(ads: Iterable[Advertisement]) -> str:
    return ", ".join(sorted(ad.name for ad in ads))


def _no_advertisement(
    svc: ServiceView, pool: str, nodes: Sequence[NodeView], ads: Sequence[Advertisement]
) -> str | None:
    """Why no L2Advertisement lets any node announce ``svc`` (of ``pool``); None when one does."""
    of_pool = [ad for ad in ads if ad.selects_pool(pool, svc.pool_labels)]
    if not of_pool:
        return f"no L2Advertisement selects pool {pool}"
    of_service = [ad for ad in of_pool if ad.selects_service(svc.labels)]
    if not of_service:
        return (
            f"the L2Advertisements of pool {pool} ({_ads_text(of_pool)}) "
            "do not select this Service (serviceSelectors)"
        )
    if not any(ad.selects_node(n.labels) for ad in of_service for n in nodes):
        return (
            f"the L2Advertisements of pool {pool} ({_ads_text(of_service)}) "
            "select no node (nodeSelectors)"
        )
    return None


def not_announced(
    svc: ServiceView,
    nodes: Sequence[NodeView],
    ads: Sequence[Advertisement],
    decision: Decision,
) -> NotAnnounced | None:
    """Why ``svc`` is not announced; None when ``decision`` has an owner, or when its pool is not
    known yet (the controller writes ``ip-allocated-from-pool`` just after the address: saying
    ``NoAdvertisement`` in between would flash a Warning on every new Service)."""
    if decision.owner is not None or svc.pool is None:
        return None
    reasons = tuple(sorted(decision.reasons.items()))
    why = _no_advertisement(svc, svc.pool, nodes, ads)
    if why is not None:
        return NotAnnounced(Unannounced.NO_ADVERTISEMENT, why, reasons)
    if not svc.has_endpoints:
        return NotAnnounced(
            Unannounced.NO_READY_ENDPOINTS,
            "the Service has no ready endpoint: no node announces an address nothing would answer",
            reasons,
        )
    listed = ", ".join(f"{name}: {why.value}" for name, why in reasons)
    return NotAnnounced(Unannounced.NO_ELIGIBLE_NODE, f"no eligible node ({listed})", reasons)


def reporter(svc: ServiceView, live: Iterable[str]) -> str | None:
    """The live speaker that reports ``svc`` as not announced: first in its rendezvous order.

    Independent of the order of ``live``; None when nobody is live or ``svc`` has no address.
    """
    names = list(live)
    if not svc.vips or not names:
        return None
    return rank(svc.vips[0], names)[0]


def reports_for(
    decisions: Mapping[str, Decision],
    views: Mapping[str, ServiceView],
    nodes: Sequence[NodeView],
    ads: Sequence[Advertisement],
    *,
    self_name: str,
) -> dict[str, NotAnnounced]:
    """The Services without an owner that ``self_name`` reports, with their answer."""
    live = [n.name for n in nodes if n.alive]
    out: dict[str, NotAnnounced] = {}
    for key, decision in decisions.items():
        view = views.get(key)
        if view is None or decision.owner is not None:
            continue
        if reporter(view, live) != self_name:
            continue
        answer = not_announced(view, nodes, ads, decision)
        if answer is not None:
            out[key] = answer
    return out

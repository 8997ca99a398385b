"""The Announced condition, its Events and gauge: pure functions of before/after
(lbd/controller/announce.py, lbd/k8s/l2status.py; issue 14 pt 1)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from lbd.controller.announce import (
    KEEP,
    SpeakerState,
    announced_condition,
    announced_effects,
    unannounced_counts,
)
from lbd.controller.effects import Emit, Log
from lbd.k8s.conditions import Condition, ObservedCondition
from lbd.k8s.l2status import observe_l2status
from lbd.k8s.service import ObservedService, observe_service
from lbd.k8s.service_writer import announced_patch


def service(addresses: tuple[str, ...] = ("198.18.100.7",), **spec: Any) -> ObservedService:
    conds = [
        {
            "type": "lbd.io/AddressAssigned",
            "status": "True",
            "reason": "Assigned",
            "message": "x",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]
    return observe_service(
        {
            "metadata": {"namespace": "ns", "name": "web", "resourceVersion": "7"},
            "spec": {"type": "LoadBalancer", **spec},
            "status": {
                "loadBalancer": {"ingress": [{"ip": a, "ipMode": "VIP"} for a in addresses]},
                "conditions": conds,
            },
        }
    )


def l2(**status: Any) -> Any:
    return observe_l2status(
        {"metadata": {"namespace": "ns", "name": "web"}, "status": status} if status else {}
    )


OWNED = l2(
    node="n2",
    announced=True,
    reason="Announced",
    vips=["198.18.100.7"],
    interfaces=[{"name": "eth0"}],
)
DRAINED = l2(
    node="n1",
    announced=False,
    reason="NoEligibleNode",
    message="no eligible node (n2: Drained)",
    vips=["198.18.100.7"],
)
LIVE = SpeakerState(True)


def test_announced_names_node_and_interfaces() -> None:
    assert announced_condition(service(), OWNED, LIVE, None) == Condition(
        True, "Announced", "198.18.100.7 announced from n2 on eth0"
    )


def test_an_old_speakers_object_without_the_field_announces() -> None:
    old = l2(node="n2", vips=["198.18.100.7"], interfaces=[{"name": "eth0"}])
    assert old.announced and old.reason == "Announced"
    assert announced_condition(service(), old, LIVE, None) == Condition(
        True, "Announced", "198.18.100.7 announced from n2 on eth0"
    )


def test_reported_reason_is_copied() -> None:
    assert announced_condition(service(), DRAINED, LIVE, None) == Condition(
        False, "NoEligibleNode", "no eligible node (n2: Drained)"
    )


def test_no_live_speaker_wins_over_what_a_stopped_speaker_wrote() -> None:
    dead = SpeakerState(False, "0 of 3 speaker Pods Ready")
    assert announced_condition(service(), OWNED, dead, None) == Condition(
        False, "NoLiveSpeaker", "0 of 3 speaker Pods Ready"
    )
    # without a source of speaker liveness it is never claimed
    assert announced_condition(service(), OWNED, None, None) == announced_condition(
        service(), OWNED, LIVE, None
    )


@pytest.mark.parametrize(
    ("svc", "status"),
    [
        (service(), None),  # nothing written yet
        (service(), l2()),  # created, status not yet written
        (service(("198.18.100.8",)), OWNED),  # written for the previous address
    ],
)
def test_nothing_known_keeps_the_condition(svc: ObservedService, status: Any) -> None:
    assert announced_condition(svc, status, LIVE, None) is KEEP


def test_no_address_or_not_ours_removes_it() -> None:
    assert announced_condition(service(()), OWNED, LIVE, None) is None
    assert announced_condition(service(loadBalancerClass="other"), OWNED, LIVE, None) is None
    assert announced_condition(service(type="ClusterIP"), OWNED, LIVE, None) is None


def shown(status: str, reason: str, message: str = "m") -> ObservedCondition:
    return ObservedCondition("lbd.io/Announced", status, reason, message)


def kinds(effects: tuple[Any, ...]) -> list[tuple[bool, str]]:
    return [(e.warning, e.reason) for e in effects if isinstance(e, Emit)]


FALSE_DRAINED = Condition(False, "NoEligibleNode", "no eligible node (n2: Drained)")
TRUE = Condition(True, "Announced", "198.18.100.7 announced from n2 on eth0")


@pytest.mark.parametrize(
    ("before", "after", "wrote", "events"),
    [
        (None, FALSE_DRAINED, True, [(True, "NotAnnounced")]),
        (shown("True", "Announced"), FALSE_DRAINED, True, [(True, "NotAnnounced")]),
        (shown("False", "NoReadyEndpoints"), FALSE_DRAINED, True, [(True, "NotAnnounced")]),
        # only the message changed (another node's reason): the condition says it, no Event
        (shown("False", "NoEligibleNode", "older"), FALSE_DRAINED, True, []),
        (shown("False", "NoEligibleNode"), TRUE, True, [(False, "Announced")]),
        (None, TRUE, True, []),  # first announcement: the speaker's NodeAssigned says it
        (shown("True", "Announced", "from n1"), TRUE, True, []),  # failover: NodeAssigned
        (None, FALSE_DRAINED, False, []),  # nothing written (resync, restart): silent
        (shown("False", "NoEligibleNode"), None, True, []),  # removed: no address any more
    ],
)
def test_events_once_per_change(
    before: ObservedCondition | None,
    after: Condition | None,
    wrote: bool,
    events: list[tuple[bool, str]],
) -> None:
    effects = announced_effects("ns/web", before, after, wrote)
    assert kinds(effects) == events
    if events and events[0][0]:
        [emit] = [e for e in effects if isinstance(e, Emit)]
        assert emit.message == "NoEligibleNode: no eligible node (n2: Drained)"
        assert any(isinstance(e, Log) and e.level == logging.WARNING for e in effects)


def test_gauge_counts_by_reason_with_every_reason_present() -> None:
    assert unannounced_counts({"a/x": "NoAdvertisement", "a/y": "NoAdvertisement"}) == {
        "NoAdvertisement": 2,
        "NoReadyEndpoints": 0,
        "NoEligibleNode": 0,
        "NoLiveSpeaker": 0,
    }
    assert set(unannounced_counts({}).values()) == {0}


def test_patch_keeps_the_address_condition_and_is_none_when_shown() -> None:
    svc = service()
    patch = announced_patch(svc, FALSE_DRAINED, stamp="2026-02-02T00:00:00Z")
    assert patch is not None
    assert patch["metadata"] == {"resourceVersion": "7"}
    types = [c["type"] for c in patch["status"]["conditions"]]
    assert types == ["lbd.io/AddressAssigned", "lbd.io/Announced"]
    after = observe_service(
        {
            "metadata": {"namespace": "ns", "name": "web", "resourceVersion": "8"},
            "spec": {"type": "LoadBalancer"},
            "status": {"conditions": patch["status"]["conditions"]},
        }
    )
    assert after.announced is not None and after.announced.shows(FALSE_DRAINED)
    assert announced_patch(after, FALSE_DRAINED) is None
    removed = announced_patch(after, None)
    assert removed is not None
    assert [c["type"] for c in removed["status"]["conditions"]] == ["lbd.io/AddressAssigned"]

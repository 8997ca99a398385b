"""L2Advertisement Ready condition (lbd.core.adstatus) and its Events (lbd.controller.adeffects)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from lbd.controller.adeffects import advertisement_effects
from lbd.controller.effects import Emit
from lbd.core.adstatus import AdReady, AdReason, advertisement_ready
from lbd.core.config import parse_advertisement
from lbd.k8s.conditions import ObservedCondition

POOLS = {"web": {"tier": "front"}, "db": {"tier": "back"}}
NODES = [{"kubernetes.io/hostname": "n1", "edge": "yes"}, {"kubernetes.io/hostname": "n2"}]


def ready(spec: dict[str, Any], pools: Any = POOLS, nodes: Any = NODES) -> AdReady:
    return advertisement_ready(parse_advertisement("adv", spec), pools=pools, nodes=nodes)


@pytest.mark.parametrize(
    ("spec", "reason", "message"),
    [
        ({}, AdReason.READY, "announcing db, web from 2 nodes"),
        ({"ipAddressPools": ["web"]}, AdReason.READY, "announcing web from 2 nodes"),
        (
            {"ipAddressPools": ["web"], "nodeSelectors": [{"matchLabels": {"edge": "yes"}}]},
            AdReason.READY,
            "announcing web from 1 node",
        ),
        (
            {"ipAddressPools": ["wbe", "web"]},
            AdReason.POOL_NOT_FOUND,
            "spec.ipAddressPools: no IPAddressPool named wbe; announcing web",
        ),
        (
            {"ipAddressPools": ["x", "y"]},
            AdReason.POOL_NOT_FOUND,
            "spec.ipAddressPools: no IPAddressPools named x, y; announcing nothing",
        ),
        (
            {"ipAddressPoolSelectors": [{"matchLabels": {"tier": "middle"}}]},
            AdReason.NO_POOL_SELECTED,
            "spec.ipAddressPoolSelectors match no IPAddressPool's labels",
        ),
        (
            {"nodeSelectors": [{"matchLabels": {"edge": "no"}}]},
            AdReason.NO_NODE_SELECTED,
            "spec.nodeSelectors match no Node's labels: no node may announce db, web",
        ),
        (
            {"nodeSelectors": [{"matchExpressions": [{"key": "edge", "operator": "Is"}]}]},
            AdReason.INVALID,
            "spec.nodeSelectors[0].matchExpressions[0].operator",
        ),
    ],
)
def test_reasons(spec: dict[str, Any], reason: AdReason, message: str) -> None:
    got = ready(spec)
    assert got.reason is reason
    assert message in got.message
    assert got.ready == (reason is AdReason.READY)


def test_no_pool_at_all_and_the_first_problem_wins() -> None:
    assert ready({}, pools={}).message == "there is no IPAddressPool"
    # a missing pool is reported before the nodes (what a user fixes first)
    both = {"ipAddressPools": ["x"], "nodeSelectors": [{"matchLabels": {"edge": "no"}}]}
    assert ready(both).reason is AdReason.POOL_NOT_FOUND


def test_many_names_are_cut() -> None:
    pools: dict[str, dict[str, str]] = {f"p{i:02d}": {} for i in range(12)}
    assert ready({}, pools=pools).message == (
        "announcing p00, p01, p02, p03, p04 and 7 more from 2 nodes"
    )


def cond(status: str, reason: str, message: str = "m") -> ObservedCondition:
    return ObservedCondition("Ready", status, reason, message)


def test_effects_only_on_a_write() -> None:
    bad = AdReady(AdReason.POOL_NOT_FOUND, "spec.ipAddressPools: no IPAddressPool named x")
    assert advertisement_effects("a", None, bad, wrote=False) == ()
    effects = advertisement_effects("a", cond("True", "Ready"), bad, wrote=True)
    assert Emit(True, "PoolNotFound", bad.message) in effects
    assert any(getattr(e, "level", None) == logging.WARNING for e in effects)


def test_ready_event_when_it_becomes_ready_not_when_the_count_moves() -> None:
    good = AdReady(AdReason.READY, "announcing web from 3 nodes")
    fixed = advertisement_effects("a", cond("False", "PoolNotFound"), good, wrote=True)
    assert Emit(False, "Ready", good.message) in fixed
    assert Emit(False, "Ready", good.message) in advertisement_effects("a", None, good, True)
    assert advertisement_effects("a", cond("True", "Ready", "2 nodes"), good, wrote=True) == ()

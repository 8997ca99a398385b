"""Why a Service is not announced, and who reports it (lbd/core/announce.py; issue 14 pt 1)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lbd.core.announce import NotAnnounced, Unannounced, not_announced, reporter, reports_for
from lbd.core.election import Ineligible, NodeView, ServiceView, decide, rank
from lbd.core.model import Advertisement, LabelSelector

SVC = ServiceView(key="ns/web", vips=("198.18.100.7",), pool="default", labels={"app": "web"})


def node(name: str, **kw: Any) -> NodeView:
    kw.setdefault("interfaces_up", frozenset({"eth0"}))
    kw.setdefault("labels", {"zone": "a"})
    return NodeView(name=name, **kw)


def ad(name: str = "ad", **kw: Any) -> Advertisement:
    return Advertisement(name=name, **kw)


def answer(
    svc: ServiceView, nodes: list[NodeView], ads: tuple[Advertisement, ...]
) -> NotAnnounced | None:
    return not_announced(svc, nodes, ads, decide(svc, nodes, ads))


NODES = [node("n1"), node("n2"), node("n3")]


@pytest.mark.parametrize(
    ("ads", "text"),
    [
        ((), "no L2Advertisement selects pool default"),
        ((ad(pools=frozenset({"other"})),), "no L2Advertisement selects pool default"),
        (
            (
                ad(
                    "only-db",
                    service_selectors=(LabelSelector(match_labels=(("app", "db"),)),),
                ),
            ),
            "the L2Advertisements of pool default (only-db) do not select this Service",
        ),
        (
            (ad("zone-b", node_selectors=(LabelSelector(match_labels=(("zone", "b"),)),)),),
            "the L2Advertisements of pool default (zone-b) select no node",
        ),
    ],
)
def test_no_advertisement_names_what_is_missing(ads: tuple[Advertisement, ...], text: str) -> None:
    got = answer(SVC, NODES, ads)
    assert got is not None and got.reason is Unannounced.NO_ADVERTISEMENT
    assert got.message.startswith(text)


def test_no_ready_endpoints_comes_before_the_nodes() -> None:
    svc = ServiceView(key="ns/web", vips=SVC.vips, pool="default", has_endpoints=False)
    got = answer(svc, [node("n1", drain=True), node("n2")], (ad(),))
    assert got is not None and got.reason is Unannounced.NO_READY_ENDPOINTS


def test_no_eligible_node_names_each_node_and_its_rule() -> None:
    nodes = [
        node("n3", interfaces_up=frozenset()),
        node("n1", drain=True),
        node("n2", ready=False),
        node("n4", alive=False),
    ]
    got = answer(SVC, nodes, (ad(),))
    assert got == NotAnnounced(
        Unannounced.NO_ELIGIBLE_NODE,
        "no eligible node (n1: Drained, n2: NotReady, n3: NoInterface, n4: Dead)",
        (
            ("n1", Ineligible.DRAINED),
            ("n2", Ineligible.NOT_READY),
            ("n3", Ineligible.NO_INTERFACE),
            ("n4", Ineligible.DEAD),
        ),
    )


def test_an_owned_service_has_no_answer() -> None:
    assert answer(SVC, NODES, (ad(),)) is None


NAMES = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12),
    min_size=1,
    max_size=12,
    unique=True,
)


@given(names=NAMES, vip=st.ip_addresses().map(str), seed=st.integers())
def test_reporter_is_the_same_whatever_the_order(names: list[str], vip: str, seed: int) -> None:
    svc = ServiceView(key="ns/web", vips=(vip,), pool="default")
    shuffled = list(names)
    random.Random(seed).shuffle(shuffled)
    assert reporter(svc, shuffled) == reporter(svc, names) == rank(vip, names)[0]


def test_exactly_one_speaker_reports_each_unowned_service() -> None:
    """Every live speaker runs reports_for on the same view: each Service gets one reporter,
    the dead node none, and an owned Service nobody (fresh seed each run)."""
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    nodes = [node(f"n{i}", drain=True, alive=i != 0) for i in range(6)]
    rng.shuffle(nodes)
    views = {
        f"ns/s{i}": ServiceView(key=f"ns/s{i}", vips=(f"198.18.1.{i}",), pool="default")
        for i in range(40)
    }
    views["ns/owned"] = ServiceView(key="ns/owned", vips=("198.18.2.1",), pool="default")
    ads = (ad(),)
    decisions = {k: decide(v, nodes, ads) for k, v in views.items()}
    decisions["ns/owned"] = decide(views["ns/owned"], [node("n1")], ads)
    reported: dict[str, list[str]] = {}
    for me in nodes:
        for key in reports_for(decisions, views, nodes, ads, self_name=me.name):
            reported.setdefault(key, []).append(me.name)
    assert set(reported) == set(views) - {"ns/owned"}
    assert all(len(who) == 1 and who[0] != "n0" for who in reported.values())
    assert len({who[0] for who in reported.values()}) > 1  # spread, not one node for all


def test_nothing_is_said_before_the_pool_is_known() -> None:
    """The controller writes ip-allocated-from-pool just after the address: until then the
    speakers cannot match advertisements, and a NoAdvertisement then would be a false alarm."""
    svc = ServiceView(key="ns/web", vips=SVC.vips, pool=None)
    assert answer(svc, NODES, (ad(),)) is None

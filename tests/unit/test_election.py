"""Election: every eligibility rule, and the properties of rendezvous ranking."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbd.core.election import (
    Decision,
    Ineligible,
    Labels,
    NodeView,
    ServiceView,
    decide,
    eligibility,
    rank,
)
from lbd.core.model import Advertisement, LabelSelector


def Sel(match: tuple[tuple[str, str], ...]) -> LabelSelector:
    return LabelSelector(match_labels=match)


def Ad(name: str = "ad", pools: tuple[str, ...] = (), **kw: Any) -> Advertisement:
    return Advertisement(name=name, pools=frozenset(pools), **kw)


def node(name: str = "n1", **kw: object) -> NodeView:
    kw.setdefault("interfaces_up", frozenset({"eth0"}))
    return NodeView(name=name, **kw)  # type: ignore[arg-type]


SVC = ServiceView(key="ns/web", vips=("198.18.100.7",), pool="default")
ADS: Sequence[Advertisement] = (Ad(),)


@pytest.mark.parametrize(
    ("n", "svc", "ads", "want"),
    [
        pytest.param(node(), SVC, ADS, None, id="healthy node may own"),
        pytest.param(node(alive=False), SVC, ADS, Ineligible.DEAD, id="dead speaker"),
        pytest.param(
            node(labels={"node.kubernetes.io/exclude-from-external-load-balancers": ""}),
            SVC,
            ADS,
            Ineligible.EXCLUDED_LABEL,
            id="exclude-from-external-load-balancers label",
        ),
        pytest.param(
            node(taint_keys=frozenset({"node.kubernetes.io/out-of-service"})),
            SVC,
            ADS,
            Ineligible.OUT_OF_SERVICE,
            id="out-of-service taint",
        ),
        pytest.param(
            node(taint_keys=frozenset({"other/taint"})), SVC, ADS, None, id="other taint is fine"
        ),
        pytest.param(
            node(network_unavailable=True),
            SVC,
            ADS,
            Ineligible.NETWORK_UNAVAILABLE,
            id="NetworkUnavailable=True",
        ),
        pytest.param(node(ready=False), SVC, ADS, Ineligible.NOT_READY, id="Ready=False"),
        pytest.param(node(ready=None), SVC, ADS, None, id="Ready=Unknown does not exclude"),
        pytest.param(node(drain=True), SVC, ADS, Ineligible.DRAINED, id="lbd.io/drain=true"),
        pytest.param(
            node(),
            replace(SVC, has_endpoints=False),
            ADS,
            Ineligible.NO_ENDPOINTS,
            id="service without endpoints",
        ),
        pytest.param(node(), SVC, (), Ineligible.NO_ADVERTISEMENT, id="no advertisement"),
        pytest.param(
            node(),
            SVC,
            (Ad(pools=("other",)),),
            Ineligible.NO_ADVERTISEMENT,
            id="advertisement for another pool",
        ),
        pytest.param(
            node(),
            replace(SVC, pool=None),
            ADS,
            Ineligible.NO_ADVERTISEMENT,
            id="service without a pool",
        ),
        pytest.param(
            node(labels={"rack": "b"}),
            SVC,
            (Ad(node_selectors=(Sel((("rack", "a"),)),)),),
            Ineligible.NO_ADVERTISEMENT,
            id="nodeSelectors exclude the node",
        ),
        pytest.param(
            node(labels={"rack": "a"}),
            SVC,
            (Ad(node_selectors=(Sel((("rack", "a"),)),)),),
            None,
            id="nodeSelectors select the node",
        ),
        pytest.param(
            node(),
            replace(SVC, labels={"tier": "db"}),
            (Ad(service_selectors=(Sel((("tier", "web"),)),)),),
            Ineligible.NO_ADVERTISEMENT,
            id="serviceSelectors exclude the service",
        ),
        pytest.param(
            node(interfaces_up=frozenset()),
            SVC,
            ADS,
            Ineligible.NO_INTERFACE,
            id="no announce interface up",
        ),
        pytest.param(
            node(interfaces_up=frozenset({"eth0"})),
            SVC,
            (Ad(interfaces=("eth1",)),),
            Ineligible.NO_INTERFACE,
            id="advertised interface eth1 is not up",
        ),
        pytest.param(
            node(interfaces_up=frozenset({"eth0", "eth1"})),
            SVC,
            (Ad(interfaces=("eth1",)),),
            None,
            id="advertised interface eth1 is up",
        ),
        pytest.param(
            node(),
            replace(SVC, traffic_policy_local=True, ready_endpoint_nodes=frozenset({"n2"})),
            ADS,
            Ineligible.NO_LOCAL_ENDPOINT,
            id="ETP Local without local endpoint",
        ),
        pytest.param(
            node(),
            replace(SVC, traffic_policy_local=True, ready_endpoint_nodes=frozenset({"n1"})),
            ADS,
            None,
            id="ETP Local with local endpoint",
        ),
        pytest.param(
            node(alive=False, drain=True), SVC, ADS, Ineligible.DEAD, id="first reason wins"
        ),
    ],
)
def test_eligibility_rules(
    n: NodeView, svc: ServiceView, ads: Sequence[Advertisement], want: object
) -> None:
    assert eligibility(n, svc, ads) == want


def test_views_are_hashable_with_label_maps() -> None:
    a = node(labels={"a": "1"})
    b = node(labels=Labels([("a", "1")]))
    assert a == b and hash(a) == hash(b)
    assert hash(replace(SVC, labels={"x": "y"})) == hash(replace(SVC, labels={"x": "y"}))


def test_empty_names_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"NodeView\.name"):
        NodeView(name="")
    with pytest.raises(ValueError, match=r"ServiceView\.key"):
        ServiceView(key="", vips=())


def test_duplicate_node_views_are_rejected() -> None:
    with pytest.raises(ValueError, match="'n1' appears more than once"):
        decide(SVC, [node("n1"), node("n1", alive=False)], ADS)


def test_rank_is_ascending_sha256_of_name_hash_key() -> None:
    names = ["a", "b", "c", "d"]
    want = sorted(names, key=lambda n: hashlib.sha256(f"{n}#k".encode()).hexdigest())
    assert rank("k", names) == want


def test_decide_reports_owner_interfaces_and_reasons() -> None:
    nodes = [node("n1"), node("n2", alive=False), node("n3", drain=True)]
    d = decide(SVC, nodes, (Ad(interfaces=("eth0",)),))
    assert d == Decision(
        service="ns/web",
        owner="n1",
        interfaces=("eth0",),
        reasons={"n2": Ineligible.DEAD, "n3": Ineligible.DRAINED},
    )


def test_open_advertisement_means_default_interfaces() -> None:
    d = decide(SVC, [node("n1")], (Ad(interfaces=("eth0",)), Ad(name="open")))
    assert d.owner == "n1" and d.interfaces == ()


def test_nobody_owns_a_service_without_endpoints() -> None:
    d = decide(replace(SVC, has_endpoints=False), [node("n1"), node("n2")], ADS)
    assert d.owner is None
    assert set(d.reasons.values()) == {Ineligible.NO_ENDPOINTS}


def test_all_vips_of_a_service_follow_the_first_vip() -> None:
    nodes = [node(f"n{i}") for i in range(8)]
    svc = replace(SVC, vips=("198.18.100.7", "2001:db8::7"))
    assert decide(svc, nodes, ADS).owner == rank("198.18.100.7", [n.name for n in nodes])[0]


NAMES = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12),
    min_size=1,
    max_size=12,
    unique=True,
)


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(names=NAMES, key=st.text(min_size=1, max_size=40), seed=st.integers())
def test_shuffled_input_gives_the_same_owner(names: list[str], key: str, seed: int) -> None:
    nodes = [node(n, alive=(hash(n) % 3 != 0)) for n in names]
    svc = replace(SVC, vips=(key,))
    shuffled = list(nodes)
    random.Random(seed).shuffle(shuffled)
    assert decide(svc, nodes, ADS) == decide(svc, shuffled, ADS)
    assert rank(key, names) == rank(key, reversed(names))


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(names=NAMES.filter(lambda n: len(n) >= 2), key=st.text(min_size=1, max_size=40))
def test_removing_a_non_owner_changes_no_owner(names: list[str], key: str) -> None:
    owner = rank(key, names)[0]
    for gone in names:
        if gone != owner:
            assert rank(key, [n for n in names if n != gone])[0] == owner


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(names=NAMES.filter(lambda n: len(n) >= 2), data=st.data())
def test_a_leaving_node_moves_only_its_vips(names: list[str], data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(names))
    vips = [f"198.18.{i // 256}.{i % 256}" for i in range(200)]
    before = {v: rank(v, names)[0] for v in vips}
    after = {v: rank(v, [n for n in names if n != gone])[0] for v in vips}
    moved = {v for v in vips if before[v] != after[v]}
    assert moved == {v for v in vips if before[v] == gone}


def test_vips_spread_roughly_evenly() -> None:
    names = [f"node{i}" for i in range(10)]
    owners = Counter(rank(f"198.18.{i // 256}.{i % 256}", names)[0] for i in range(10_000))
    assert set(owners) == set(names)
    # 1000 expected per node; binomial sd ~30, so +-15 % is > 4 sd.
    assert all(850 <= c <= 1150 for c in owners.values()), owners

"""The speaker's plan and reconcile loop with fake membership, responder, links and status."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import generate_latest

from lbd.core.election import EXCLUDE_LABEL, NodeView, ServiceView, decide, rank
from lbd.core.model import Advertisement, LabelSelector
from lbd.k8s.speaker_convert import EndpointSummary
from lbd.k8s.speaker_status import EventSpec, Ownership, Wanted
from lbd.metrics import SpeakerMetrics
from lbd.runtime.clock import FakeClock
from lbd.speaker.plan import PlanCache, Snapshot, make_plan, redecide
from lbd.speaker.reconciler import Reconciler
from tests.unit.test_speaker_convert import node, service

NODES = ("n1", "n2", "n3")
VIP = "198.18.100.7"


def snapshot(*services: dict[str, Any], nodes: tuple[str, ...] = NODES, **kw: Any) -> Snapshot:
    endpoints = {
        f"ns/{s['metadata']['name']}": EndpointSummary(True, frozenset(nodes)) for s in services
    }
    endpoints.update(kw.pop("endpoints", {}))
    return Snapshot(
        nodes=[node(n, ips=(f"198.18.0.{11 + i}",)) for i, n in enumerate(nodes)],
        services=list(services),
        endpoints=endpoints,
        advertisements=kw.pop("advertisements", [Advertisement(name="l2")]),
        **kw,
    )


def default_rule(vip: str, wanted: tuple[str, ...]) -> tuple[str, ...]:
    return wanted or ("eth0",)


def plan_for(me: str, snap: Snapshot, alive: tuple[str, ...] = NODES, lb_class: str | None = None):
    return make_plan(
        snap,
        self_name=me,
        alive={n: frozenset({"eth0"}) for n in alive},
        lb_class=lb_class,
        resolve_interfaces=default_rule,
    )


# --- plan ------------------------------------------------------------------------------------


def test_exactly_the_ranked_owner_announces() -> None:
    snap = snapshot(service("web"))
    owner = rank(VIP, NODES)[0]
    for me in NODES:
        plan = plan_for(me, snap)
        assert plan.decisions["ns/web"].owner == owner
        if me == owner:
            assert plan.owned == {VIP: ("eth0",)}
            assert plan.ownerships["ns/web"] == Ownership("ns", "web", "u-1", (VIP,), ("eth0",))
        else:
            assert plan.owned == {} and plan.ownerships == {}


def test_vips_of_many_services_spread_over_all_nodes() -> None:
    svcs = [service(f"s{i}", ips=(f"198.18.100.{i}",)) for i in range(1, 31)]
    snap = snapshot(*svcs)
    owners = {n: len(plan_for(n, snap).owned) for n in NODES}
    assert sum(owners.values()) == 30
    assert all(count > 0 for count in owners.values()), owners


def test_plan_does_not_depend_on_object_order() -> None:
    svcs = [service(f"s{i}", ips=(f"198.18.100.{i}",)) for i in range(1, 20)]
    snap = snapshot(*svcs)
    shuffled = list(snap.nodes)
    random.Random(7).shuffle(shuffled)
    svc_shuffled = list(snap.services)
    random.Random(8).shuffle(svc_shuffled)
    other = Snapshot(shuffled, svc_shuffled, snap.endpoints, {}, snap.advertisements)
    assert plan_for("n1", snap).owned == plan_for("n1", other).owned


def test_dead_owner_moves_vip_to_next_in_rank() -> None:
    snap = snapshot(service("web"))
    first, second = rank(VIP, NODES)[:2]
    survivors = tuple(n for n in NODES if n != first)
    assert plan_for(second, snap, alive=survivors).owned == {VIP: ("eth0",)}


def test_foreign_class_and_cluster_ip_services_are_ignored_and_bad_ones_reported() -> None:
    snap = snapshot(
        service("other", lb_class="x.io/lb", ips=("198.18.100.1",)),
        service("cip", svc_type="ClusterIP", ips=("198.18.100.2",)),
        service("bad", ips=("nope",)),
        service("pending", ips=()),
    )
    plan = plan_for("n1", snap)
    assert plan.decisions == {}
    assert "ns/bad" in plan.errors and "not an IP address" in plan.errors["ns/bad"]
    assert set(plan_for("n1", snap, lb_class="x.io/lb").decisions) == {"ns/other"}


def test_shared_ip_lands_on_one_node() -> None:
    snap = snapshot(service("a", ips=(VIP,)), service("b", ips=(VIP,)))
    owning = [n for n in NODES if plan_for(n, snap).owned]
    assert owning == [rank(VIP, NODES)[0]]
    assert set(plan_for(owning[0], snap).ownerships) == {"ns/a", "ns/b"}


def test_advertisement_interfaces_and_etp_local() -> None:
    ad = Advertisement(name="l2", interfaces=("eth1",))
    snap = snapshot(
        service("web", etp="Local"),
        advertisements=[ad],
        endpoints={"ns/web": EndpointSummary(True, frozenset({"n3"}))},
    )
    plan = make_plan(
        snap,
        self_name="n3",
        alive={n: frozenset({"eth0", "eth1"}) for n in NODES},
        lb_class=None,
        resolve_interfaces=default_rule,
    )
    assert plan.decisions["ns/web"].owner == "n3"
    assert plan.owned == {VIP: ("eth1",)}


def test_cached_passes_give_exactly_the_uncached_result() -> None:
    svcs = [service(f"s{i}", ips=(f"198.18.100.{i}",)) for i in range(1, 40)]
    for i, svc in enumerate(svcs):
        svc["metadata"]["resourceVersion"] = str(i)
    snap = snapshot(*svcs)
    cache = PlanCache()

    def both(snap: Snapshot, alive: tuple[str, ...] = NODES) -> None:
        args = {
            "self_name": "n1",
            "alive": {n: frozenset({"eth0"}) for n in alive},
            "lb_class": None,
            "resolve_interfaces": default_rule,
        }
        assert make_plan(snap, cache=cache, **args) == make_plan(snap, **args)  # type: ignore[arg-type]

    both(snap)
    both(snap)  # all from the cache
    both(snap, alive=("n1", "n3"))  # membership changed: decisions recomputed
    # one Service changes its endpoints (same resourceVersion), another its VIP (new version)
    endpoints = dict(snap.endpoints)
    endpoints["ns/s3"] = EndpointSummary(False, frozenset())
    changed = svcs[4] | {"metadata": {**svcs[4]["metadata"], "resourceVersion": "99"}}
    changed["status"] = {"loadBalancer": {"ingress": [{"ip": "198.18.100.200"}]}}
    services = [changed if s is svcs[4] else s for s in svcs]
    both(Snapshot(snap.nodes, services, endpoints, {}, snap.advertisements))
    assert set(cache.views) == {f"ns/s{i}" for i in range(1, 40)}


def random_node(rng: random.Random, name: str) -> NodeView:
    return NodeView(
        name=name,
        labels={"zone": rng.choice("ab"), **({EXCLUDE_LABEL: ""} if rng.random() < 0.1 else {})},
        ready=rng.choice([True, True, True, False, None]),
        drain=rng.random() < 0.1,
        alive=rng.random() < 0.8,
        interfaces_up=frozenset(rng.sample(["eth0", "eth1"], rng.randint(0, 2))),
    )


def test_redecide_equals_decide_after_any_node_changes() -> None:
    rng = random.Random(42)
    ads = [
        Advertisement(name="all"),
        Advertisement(
            name="zone-a",
            pools=frozenset({"a"}),
            node_selectors=(LabelSelector(match_labels=(("zone", "a"),)),),
            interfaces=("eth1",),
        ),
    ]
    names = [f"n{i}" for i in range(8)]
    for _ in range(300):
        nodes = {n: random_node(rng, n) for n in rng.sample(names, rng.randint(0, 8))}
        view = ServiceView(
            key="ns/s",
            vips=(f"198.18.100.{rng.randint(1, 50)}",),
            pool=rng.choice(["a", "b"]),
            traffic_policy_local=rng.random() < 0.3,
            ready_endpoint_nodes=frozenset(rng.sample(names, 3)),
            has_endpoints=rng.random() < 0.9,
        )
        pool_ads = ads if rng.random() < 0.5 else ads[1:]
        before = decide(view, list(nodes.values()), pool_ads)
        after = dict(nodes)
        for n in rng.sample(names, rng.randint(1, 3)):  # changed, added or removed
            if rng.random() < 0.2:
                after.pop(n, None)
            else:
                after[n] = random_node(rng, n)
        changed = {n for n in nodes.keys() | after.keys() if nodes.get(n) != after.get(n)}
        expected = decide(view, list(after.values()), pool_ads)
        assert redecide(view, after, changed, before, pool_ads) == expected


# --- reconciler ------------------------------------------------------------------------------


class FakeHeartbeats:
    def __init__(self, alive: tuple[str, ...]) -> None:
        self.alive = {n: frozenset({"eth0"}) for n in alive}
        self.peers: Mapping[str, str] = {}
        self.reported: frozenset[str] | None = None
        self.seen: dict[str, float] = {}

    def set_peers(self, peers: Mapping[str, str]) -> None:
        self.peers = dict(peers)

    def set_interfaces_up(self, interfaces: frozenset[str]) -> None:
        self.reported = interfaces

    def alive_peers(self) -> Mapping[str, frozenset[str]]:
        return dict(self.alive)

    def last_seen(self, node: str) -> float | None:
        return self.seen.get(node)


class FakeResponder:
    def __init__(self) -> None:
        self.tables: list[dict[str, tuple[str, ...]]] = []
        self.listening: frozenset[str] = frozenset()
        self.ready = True

    def set_owned(self, owned: Mapping[str, tuple[str, ...]]) -> None:
        self.tables.append(dict(owned))

    def set_interfaces(self, names: frozenset[str]) -> None:
        self.listening = names

    def ports_ready(self) -> bool:
        return self.ready


class FakeLinks:
    def interfaces_up(self) -> frozenset[str]:
        return frozenset({"eth0"})

    def resolve(self, vip: str, wanted: tuple[str, ...]) -> tuple[str, ...]:
        return default_rule(vip, wanted)


class FakeStatus:
    def __init__(self) -> None:
        self.desired: dict[str, Wanted | None] = {}
        self.calls = 0
        self.events: list[EventSpec] = []
        self.cleanups = 0

    def set_desired(self, key: str, ownership: Wanted | None) -> None:
        if self.desired.get(key, ...) != ownership:
            self.calls += 1
        self.desired[key] = ownership

    def cleanup_stale(self, keys: Mapping[str, Wanted]) -> None:
        self.cleanups += 1

    def emit(self, event: EventSpec) -> None:
        self.events.append(event)


def make_reconciler(me: str, snap: Snapshot, *, alive=NODES, warmup=0.0, clock=None):
    hb = FakeHeartbeats(tuple(n for n in alive if n != me))
    resp, status, metrics = FakeResponder(), FakeStatus(), SpeakerMetrics()
    rec = Reconciler(
        node_name=me,
        lb_class=None,
        source=lambda: snap,
        heartbeats=hb,
        announcer=resp,
        links=FakeLinks(),
        status=status,
        metrics=metrics,
        clock=clock or FakeClock(),
        warmup=warmup,
    )
    return rec, hb, resp, status, metrics


def test_reconcile_feeds_membership_responder_and_status() -> None:
    first = rank(VIP, NODES)[0]
    rec, hb, resp, status, metrics = make_reconciler(first, snapshot(service("web")))
    rec.reconcile()
    # every speaker's address, this node's own included (its heartbeats are sent from it)
    assert hb.peers == {"n1": "198.18.0.11", "n2": "198.18.0.12", "n3": "198.18.0.13"}
    assert hb.reported == {"eth0"}
    assert resp.tables == [{VIP: ("eth0",)}]
    assert status.desired == {"ns/web": Ownership("ns", "web", "u-1", (VIP,), ("eth0",))}
    assert status.cleanups == 1
    text = generate_latest(metrics.registry).decode()
    assert "lbd_peers_alive 3.0" in text


def test_one_live_speaker_reports_a_service_nobody_may_announce() -> None:
    snap = snapshot(service("web"), advertisements=[])
    first, second = rank(VIP, NODES)[:2]
    reports = {me: plan_for(me, snap).reports for me in NODES}
    assert {me for me, r in reports.items() if r} == {first}
    report = reports[first]["ns/web"]
    assert (report.reason, report.vips, report.uid) == ("NoAdvertisement", (VIP,), "u-1")
    # the reporter died: the next live speaker in rank reports instead
    alive = tuple(n for n in NODES if n != first)
    assert "ns/web" in plan_for(second, snap, alive=alive).reports
    # an advertisement appears: the owner announces, nobody reports
    fixed = snapshot(service("web"))
    assert all(not plan_for(me, fixed).reports for me in NODES)


def test_report_becomes_ownership_in_the_status_sink() -> None:
    first = rank(VIP, NODES)[0]
    rec, _hb, _resp, status, _m = make_reconciler(
        first, snapshot(service("web"), advertisements=[])
    )
    rec.reconcile()
    wanted = status.desired["ns/web"]
    assert wanted is not None and not isinstance(wanted, Ownership)
    rec.source = lambda: snapshot(service("web"))
    rec.trigger()
    rec.reconcile()
    assert status.desired["ns/web"] == Ownership("ns", "web", "u-1", (VIP,), ("eth0",))


def test_steady_state_reports_hand_nothing_new_to_the_api() -> None:
    """Many Services nobody may announce: the reporter wants each written once, then nothing
    however often it reconciles (the writer only writes what set_desired changed)."""
    services = [service(f"s{i}", ips=(f"198.18.100.{i + 1}",)) for i in range(200)]
    snap = snapshot(*services, advertisements=[])
    per_node = []
    for me in NODES:
        rec, _hb, _resp, status, _m = make_reconciler(me, snap)
        rec.reconcile()
        calls = status.calls
        for _ in range(5):
            rec.trigger()
            rec.reconcile()
        assert status.calls == calls
        per_node.append(calls)
    assert sum(per_node) == 200  # each Service has exactly one reporter


def test_steady_state_hands_nothing_new_to_responder_or_api() -> None:
    rec, _hb, resp, status, _m = make_reconciler(rank(VIP, NODES)[0], snapshot(service("web")))
    rec.reconcile()
    calls = status.calls
    for _ in range(5):
        rec.trigger()
        rec.reconcile()
    assert len(resp.tables) == 1
    assert status.calls == calls


def test_takeover_when_owner_dies_and_give_back_when_it_returns() -> None:
    first, second = rank(VIP, NODES)[:2]
    clock = FakeClock()
    rec, hb, resp, status, metrics = make_reconciler(second, snapshot(service("web")), clock=clock)
    rec.reconcile()
    assert resp.tables == [{}]
    hb.seen[first] = clock.monotonic()  # its last heartbeat
    clock.advance(0.4)
    del hb.alive[first]  # membership: first stopped heartbeating (dead after 0.4 s)
    rec.trigger()
    clock.advance(0.003)
    rec.reconcile()
    assert resp.tables[-1] == {VIP: ("eth0",)}
    assert status.desired["ns/web"] is not None
    sample = metrics.registry.get_sample_value
    assert sample("lbd_failover_seconds_count") == 0  # not announced yet
    clock.advance(0.002)
    rec.on_announced(VIP, clock.monotonic())  # the responder's first gratuitous ARP
    rec.on_announced(VIP, clock.monotonic() + 0.5)  # the rest of the burst: not a takeover
    text = generate_latest(metrics.registry).decode()
    # what a client sees: its last heartbeat to our announcement; the takeover step alone
    assert sample("lbd_failover_seconds_count") == 1
    assert sample("lbd_failover_seconds_sum") == pytest.approx(0.405)
    assert sample("lbd_takeover_seconds_count") == 1
    assert sample("lbd_takeover_seconds_sum") == pytest.approx(0.005)
    assert f'lbd_speaker_announced{{node="{second}",service="ns/web",vip="{VIP}"}} 1.0' in text
    hb.alive[first] = frozenset({"eth0"})  # it is back: ownership follows the ranking again
    rec.trigger()
    rec.reconcile()
    assert resp.tables[-1] == {}
    assert status.desired["ns/web"] is None
    assert "lbd_speaker_announced{" not in generate_latest(metrics.registry).decode()


def test_nothing_announced_and_no_interface_reported_during_startup_grace() -> None:
    clock = FakeClock()
    me = rank(VIP, NODES)[0]
    # alone at start (peers not heard yet): it must not grab the VIP; and while it cannot answer
    # yet it must not look eligible to its peers either (they would stop answering too early)
    rec, hb, resp, status, _ = make_reconciler(
        me, snapshot(service("web")), alive=(me,), warmup=0.5, clock=clock
    )
    rec.reconcile()
    assert resp.tables == [] and status.desired == {}
    assert hb.reported == frozenset()
    assert resp.listening == {"eth0"}  # sockets opened now, ready for the first answer
    hb.alive = {n: frozenset({"eth0"}) for n in NODES if n != me}
    clock.advance(0.5)
    resp.ready = False  # a socket is still opening: answer, but do not claim yet
    rec.reconcile()
    assert resp.tables == [{VIP: ("eth0",)}]
    assert hb.reported == frozenset()
    resp.ready = True
    rec.reconcile()
    assert hb.reported == {"eth0"}
    resp.ready = False  # later a socket reopens (interface flap): we stay eligible
    rec.reconcile()
    assert hb.reported == {"eth0"}


def test_a_socket_that_never_opens_delays_the_claim_only_briefly() -> None:
    clock = FakeClock()
    rec, hb, resp, _status, _ = make_reconciler(
        rank(VIP, NODES)[0], snapshot(service("web")), warmup=0.5, clock=clock
    )
    resp.ready = False
    rec.reconcile()
    clock.advance(0.5)
    rec.reconcile()
    assert hb.reported == frozenset()
    clock.advance(1.0)
    rec.reconcile()
    assert hb.reported == {"eth0"}


def test_conflict_gives_one_warning_event_per_owned_vip() -> None:
    """The responder's judge decided it is a conflict (not a hand-over); the reconciler only
    turns that into one event per VIP while owned."""
    clock = FakeClock()
    rec, _hb, _resp, status, _m = make_reconciler(
        rank(VIP, NODES)[0], snapshot(service("web")), clock=clock
    )
    rec.reconcile()
    rec.on_conflict(VIP, "02:00:00:00:00:99")
    rec.on_conflict(VIP, "02:00:00:00:00:99")
    rec.on_conflict("198.18.100.99", "02:00:00:00:00:99")  # not ours: not our business
    [event] = status.events
    assert event.type == "Warning" and event.reason == "VIPConflict"
    assert event.name == "web" and VIP in event.message


def wait_for(cond, timeout: float = 5.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if cond():
            return True
        done.wait(0.01)
    return bool(cond())


def test_run_loop_reacts_to_trigger_and_stops() -> None:
    snap_box = [snapshot()]
    rec, _hb, _resp, _s, _m = make_reconciler("n1", snapshot())
    rec.source = lambda: snap_box[0]
    stop = threading.Event()
    thread = threading.Thread(target=rec.run, args=(stop,))
    thread.start()
    try:
        rec.trigger()
        assert rec.first_pass_done.wait(5)
        snap_box[0] = snapshot(service("web", ips=("198.18.100.1",)), service("db"))
        rec.trigger()
        assert wait_for(lambda: set(rec.plan.decisions) == {"ns/web", "ns/db"})
    finally:
        stop.set()
        rec.trigger()
        thread.join(5)
    assert not thread.is_alive()

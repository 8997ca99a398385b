"""The speaker's wiring pieces that need no network: the informers' snapshot, the ARP-capable
interface filter, the command line."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from lbd.cli import build_parser
from lbd.core.model import Advertisement
from lbd.k8s.informer import EventType
from lbd.k8s.node import node_fingerprint
from lbd.k8s.speaker_informers import SpeakerCache
from lbd.net.links import IFF_BROADCAST, IFF_LOOPBACK, IFF_LOWER_UP, IFF_NOARP, IFF_UP, Link
from lbd.speaker.cli import _excludes
from lbd.speaker.daemon import AnnounceLinks
from tests.unit.test_speaker_convert import endpoint_slice, node, service

UP = IFF_UP | IFF_LOWER_UP


def cache() -> tuple[SpeakerCache, list[int]]:
    woke: list[int] = []
    # the informers are never started: only their stores and handlers are used
    c = SpeakerCache(object(), on_change=lambda: woke.append(1))  # type: ignore[arg-type]
    return c, woke


def test_view_merges_stores_into_election_inputs() -> None:
    c, _ = cache()
    c.nodes.store.put(node("n1"))
    svc = service("web")
    c.services.store.put(svc)
    c.slices.store.put(endpoint_slice("web", [("n1", {"ready": True})]))
    c.slices.store.put(endpoint_slice("other", [("n2", {"ready": True})]))
    c.pools.store.put({"metadata": {"name": "default", "labels": {"tier": "gold"}}})
    c.ads.store.put(
        {"metadata": {"name": "l2", "resourceVersion": "1"}, "spec": {"interfaces": ["eth1"]}}
    )
    c.ads.store.put(
        {"metadata": {"name": "bad", "resourceVersion": "1"}, "spec": {"interfaces": ["a/b"]}}
    )
    view = c.view()
    assert [n["metadata"]["name"] for n in view.nodes] == ["n1"]
    assert view.services == [svc]
    assert view.endpoints["ns/web"].ready_nodes == {"n1"}
    assert view.pool_labels == {"default": {"tier": "gold"}}
    # the invalid advertisement is left out rather than guessed at
    assert view.advertisements == [Advertisement(name="l2", interfaces=("eth1",))]


def test_kubelet_heartbeat_updates_do_not_wake_the_loop() -> None:
    c, woke = cache()
    old = node("n1")
    beat: dict[str, Any] = {**old, "status": {**old["status"]}}
    beat["status"]["conditions"] = [
        {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-11-24T00:00:10Z"}
    ]
    c._node_event(EventType.MODIFIED, old, beat)
    assert woke == []
    c._node_event(EventType.MODIFIED, old, node("n1", ready="False"))
    assert woke == [1]
    assert node_fingerprint(old) != node_fingerprint(node("n1", labels={"a": "b"}))


@pytest.mark.parametrize(
    ("changed", "wakes"),
    [
        (node("n1", labels={"zone": "b"}), True),
        (node("n1", annotations={"lbd.io/drain": "true"}), True),
        (node("n1", taints=[{"key": "maintenance", "effect": "NoSchedule"}]), True),
        (node("n1", ready="Unknown"), True),
        (node("n1", net_unavailable="True"), True),
        (node("n1", ips=("198.18.0.12",)), True),
        (node("n1", ips=("198.18.0.11", "2001:db8::11")), True),
        # not read by the speaker: no pass
        (node("n1", annotations={"example.com/owner": "ops"}), False),
        (node("n1"), False),
    ],
)
def test_every_node_field_the_speaker_reads_wakes_the_loop(
    changed: dict[str, Any], wakes: bool
) -> None:
    c, woke = cache()
    c._node_event(EventType.MODIFIED, node("n1"), changed)
    assert woke == ([1] if wakes else [])
    # an added or deleted Node always counts
    c._node_event(EventType.ADDED, None, changed)
    c._node_event(EventType.DELETED, changed, None)
    assert len(woke) == (3 if wakes else 2)


class FakeMonitor:
    exclude: tuple[str, ...] = ("veth", "lo")

    def __init__(self, links: dict[str, Link]) -> None:
        self._links = links

    def links(self) -> dict[str, Link]:
        return self._links

    def interfaces_up(self) -> frozenset[str]:
        return frozenset(self._links)


def link(name: str, flags: int, *addrs: str) -> Link:
    return Link(
        name=name,
        index=hash(name) % 1000,
        flags=flags,
        addresses=tuple(ipaddress.ip_interface(a) for a in addrs),
    )


@pytest.mark.parametrize(
    ("vip", "expected"),
    [
        ("198.18.100.7", ("eth0",)),  # eth0's subnet holds it; lo holds the VIP itself
        ("203.0.113.9", ("eth0",)),  # no subnet holds it: announce-capable interfaces
    ],
    ids=["subnet rule ignores lo and NOARP", "fallback rule"],
)
def test_vip_on_lo_or_kube_ipvs0_is_never_an_announce_interface(
    vip: str, expected: tuple[str, ...]
) -> None:
    monitor = FakeMonitor(
        {
            "lo": link("lo", UP | IFF_LOOPBACK, "127.0.0.1/8", "198.18.100.7/32", "203.0.113.9/32"),
            "kube-ipvs0": link("kube-ipvs0", UP | IFF_BROADCAST | IFF_NOARP, "198.18.100.7/32"),
            "eth0": link("eth0", UP | IFF_BROADCAST, "198.18.0.2/16"),
        }
    )
    assert AnnounceLinks(monitor).resolve(vip, ()) == expected  # type: ignore[arg-type]


def test_cli_flags_and_defaults() -> None:
    args = build_parser().parse_args(
        [
            "speaker",
            "--node-name",
            "n1",
            "--interfaces-exclude",
            "ens9,bond1",
            "--interfaces-exclude",
            "eth5",
        ]
    )
    assert args.node_name == "n1"
    assert args.membership_port == 7947
    assert args.health_addr == "0.0.0.0:7473"
    assert args.lb_class is None and not args.insecure_membership
    assert _excludes(args.interfaces_exclude) == ("ens9", "bond1", "eth5")


@pytest.fixture
def root_logger() -> Iterator[None]:
    """``lbd speaker`` configures the root logger; put pytest's handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.usefixtures("root_logger")
def test_speaker_refuses_to_start_without_membership_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    parser = build_parser()
    args = parser.parse_args(["speaker"])
    assert args.func(args) == 2  # no node name
    args = parser.parse_args(["speaker", "--node-name", "n1"])
    assert args.func(args) == 2
    assert "--insecure-membership" in capsys.readouterr().err

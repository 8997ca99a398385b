"""Heartbeats between speakers in separate network namespaces."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from lbd.core.membership import HeartbeatDrop
from lbd.net.membership import Membership
from tests.netns.conftest import Segment

pytestmark = pytest.mark.needs_root

KEY = b"lab-membership-key-0123456789abcdef"
INTERVAL, DEAD_AFTER = 0.1, 0.4
NODES = ("node1", "node2", "node3")


def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


@pytest.fixture
def speakers(segment: Segment) -> Iterator[dict[str, Membership]]:
    out: dict[str, Membership] = {}
    peers = {n: segment[n].ipv4 for n in NODES}
    try:
        for n in NODES:
            m = Membership(
                node_name=n,
                key=KEY,
                bind=(segment[n].ipv4, 7947),
                interval=INTERVAL,
                dead_after=DEAD_AFTER,
            )
            segment.call(n, m.start)  # the UDP socket lives in the node's namespace
            m.set_interfaces_up(frozenset({"eth0"}))
            m.set_peers(peers)
            out[n] = m
        assert wait_for(
            lambda: all(set(m.alive_peers()) == set(NODES) - {n} for n, m in out.items())
        )
        yield out
    finally:
        for m in out.values():
            m.stop(graceful=False)


def test_all_speakers_see_each_other_with_interfaces(speakers: dict[str, Membership]) -> None:
    assert speakers["node1"].alive_peers() == {
        "node2": frozenset({"eth0"}),
        "node3": frozenset({"eth0"}),
    }


def test_cutting_a_link_makes_the_others_declare_it_dead_within_dead_after(
    segment: Segment, speakers: dict[str, Membership]
) -> None:
    noticed: dict[str, float] = {}

    def watch(name: str) -> Callable[[], None]:
        def on_change() -> None:  # runs on the receiver thread the moment the view changes
            if "node3" not in speakers[name].alive_peers():
                noticed.setdefault(name, time.monotonic())

        return on_change

    for n in ("node1", "node2"):
        speakers[n].on_change = watch(n)
    t_cut = time.monotonic()
    segment.link("node3", up=False)
    assert wait_for(lambda: len(noticed) == 2, timeout=2.0)
    for n in ("node1", "node2"):
        last_seen = speakers[n].alive()["node3"].last_seen
        assert last_seen is not None
        # Declared dead dead_after after the last heartbeat (small slack for thread wake-up),
        # which is at most one interval before the cut.
        assert noticed[n] - last_seen <= DEAD_AFTER + 0.05, noticed[n] - last_seen
        assert noticed[n] - t_cut <= DEAD_AFTER + INTERVAL + 0.05, noticed[n] - t_cut
    assert "node1" in speakers["node2"].alive_peers()


def test_graceful_leave_is_seen_at_once(speakers: dict[str, Membership]) -> None:
    t0 = time.monotonic()
    speakers["node2"].stop(graceful=True)
    assert wait_for(lambda: "node2" not in speakers["node1"].alive_peers(), timeout=2.0)
    assert time.monotonic() - t0 < DEAD_AFTER  # not a timeout: the leaving heartbeat
    assert speakers["node1"].alive()["node2"].leaving


def test_heartbeats_leave_from_the_nodes_own_internal_ip(segment: Segment) -> None:
    """node1's InternalIP is its *second* address: the kernel would send from the first one.
    With its own address in the peer list, node1 sends from it (IP_PKTINFO) and is heard;
    without, its heartbeats leave from the first address and the peers drop them."""
    segment.ip("node1", "addr", "add", "198.18.1.1/16", "dev", "eth0")
    peers = {"node1": "198.18.1.1", "node2": segment["node2"].ipv4}
    members: list[Membership] = []
    try:
        for n in ("node1", "node2"):
            m = Membership(
                node_name=n, key=KEY, bind=("0.0.0.0", 7947), interval=INTERVAL,
                dead_after=DEAD_AFTER,
            )  # fmt: skip
            segment.call(n, m.start)
            members.append(m)
        node1, node2 = members
        node2.set_peers(peers)
        node1.set_peers({"node2": peers["node2"]})  # does not know its own address
        assert wait_for(lambda: node2.dropped[HeartbeatDrop.WRONG_SOURCE] >= 3)
        assert "node1" not in node2.alive_peers()
        node1.set_peers(peers)  # now it does: sent from 198.18.1.1
        assert wait_for(lambda: "node1" in node2.alive_peers())
        assert node2.alive()["node1"].address == "198.18.1.1"
    finally:
        for m in members:
            m.stop(graceful=False)


def test_right_key_from_the_wrong_host_changes_nothing(
    segment: Segment, speakers: dict[str, Membership]
) -> None:
    """A process on the client holding the key speaks as node2, newer boot and all: it is not
    node2's address, so nobody believes it."""
    before = {n: speakers[n].alive()["node2"].boot for n in ("node1", "node3")}
    impostor = Membership(
        node_name="node2", key=KEY, bind=(segment["client"].ipv4, 7947), interval=INTERVAL
    )
    segment.call("client", impostor.start)
    try:
        impostor.set_peers({n: segment[n].ipv4 for n in ("node1", "node3")})
        impostor.stop(graceful=True)  # "leaving", signed with the right key
        assert wait_for(
            lambda: all(speakers[n].dropped[HeartbeatDrop.WRONG_SOURCE] >= 2 for n in before)
        )
    finally:
        impostor.stop(graceful=False)
    time.sleep(DEAD_AFTER)
    for n, boot in before.items():
        assert "node2" in speakers[n].alive_peers()
        assert speakers[n].alive()["node2"].boot == boot

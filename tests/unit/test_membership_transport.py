"""The UDP heartbeat transport on loopback: peers see each other, leave, and die."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lbd.core.membership import DEFAULT_DEAD_AFTER, HeartbeatDrop
from lbd.net.membership import Membership, MembershipKeyError, load_key, new_boot
from lbd.runtime.clock import FakeClock

KEY = b"0123456789abcdef0123456789abcdef"


def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def member(name: str, key: bytes = KEY, **kw: Any) -> Membership:
    return Membership(node_name=name, key=key, bind=("127.0.0.1", 0), interval=0.05, **kw)


@contextlib.contextmanager
def running(*members: Membership) -> Iterator[tuple[Membership, ...]]:
    """Start ``members`` on 127.0.0.1, each a peer of every other; stop them all at the end."""
    try:
        for m in members:
            m.start()
        for m in members:
            m.set_peers({o.node_name: ("127.0.0.1", o.port) for o in members if o is not m})
        yield members
    finally:
        for m in members:
            m.stop(graceful=False)


@pytest.fixture
def pair() -> Iterator[tuple[Membership, ...]]:
    with running(member("a", dead_after=0.2), member("b", dead_after=0.2)) as both:
        yield both


def test_peers_see_each_other_and_their_interfaces(pair: tuple[Membership, ...]) -> None:
    a, b = pair
    changes: list[int] = []
    b.on_change = lambda: changes.append(1)
    a.set_interfaces_up(frozenset({"eth0"}))
    assert wait_for(lambda: b.alive_peers() == {"a": frozenset({"eth0"})})
    assert changes
    assert wait_for(lambda: "b" in a.alive_peers())


def test_graceful_stop_makes_the_peer_dead_at_once(pair: tuple[Membership, ...]) -> None:
    a, b = pair
    assert wait_for(lambda: "a" in b.alive_peers())
    a.stop(graceful=True)
    t0 = time.monotonic()
    assert wait_for(lambda: "a" not in b.alive_peers())
    assert b.alive()["a"].leaving
    assert time.monotonic() - t0 < 0.2  # before dead_after could have expired


def test_silent_peer_is_dead_after_timeout(pair: tuple[Membership, ...]) -> None:
    a, b = pair
    assert wait_for(lambda: "a" in b.alive_peers())
    a.stop(graceful=False)
    assert wait_for(lambda: "a" not in b.alive_peers(), timeout=1.0)
    assert not b.alive()["a"].leaving


def test_wrong_key_is_counted_and_ignored() -> None:
    with running(member("a", key=b"x" * 32), member("b")) as (_a, b):
        assert wait_for(lambda: b.dropped[HeartbeatDrop.BAD_MAC] >= 3)
        assert "a" not in b.alive_peers()


def test_key_file_rules(tmp_path: Path) -> None:
    good = tmp_path / "key"
    good.write_bytes(KEY + b"\n")
    assert load_key(good) == KEY
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    with pytest.raises(MembershipKeyError, match="at least 16"):
        load_key(short)
    with pytest.raises(MembershipKeyError, match="cannot read"):
        load_key(tmp_path / "missing")
    with pytest.raises(MembershipKeyError, match="insecure-membership"):
        load_key(None)
    assert load_key(None, insecure=True) == b""


def test_dead_after_must_exceed_interval() -> None:
    with pytest.raises(ValueError, match="dead_after"):
        Membership(node_name="a", key=KEY, interval=0.2, dead_after=0.1)


def test_dead_after_is_measured_on_the_injected_clock() -> None:
    clock = FakeClock()
    with running(member("a", clock=clock), member("b", clock=clock)) as (a, b):
        assert wait_for(lambda: "a" in b.alive_peers())
        a.stop(graceful=False)
        time.sleep(0.2)  # real time passes, fake time does not: a stays alive
        assert "a" in b.alive_peers()
        clock.advance(DEFAULT_DEAD_AFTER + 0.001)
        assert "a" not in b.alive_peers()


def test_drops_are_exported_by_reason() -> None:
    from prometheus_client import generate_latest

    from lbd.metrics import SpeakerMetrics

    metrics = SpeakerMetrics()
    with running(member("a", key=b"x" * 32), member("b", metrics=metrics)) as (_a, b):
        assert wait_for(lambda: b.dropped[HeartbeatDrop.BAD_MAC] >= 2)
        text = generate_latest(metrics.registry).decode()
        assert 'lbd_heartbeats_dropped_total{reason="BadMac"}' in text


def test_each_start_is_a_newer_boot(tmp_path: Path) -> None:
    """Read from the kernel's boot id and CLOCK_BOOTTIME: two starts on one machine are ordered
    even if the wall clock stepped back between them."""
    boot_id = tmp_path / "boot_id"
    boot_id.write_text("61396cb0-d282-4ec2-a049-b5a407ef1fa8\n")
    first = new_boot(str(boot_id))
    second = new_boot(str(boot_id))
    assert first.host == second.host
    assert second.newer_than(first) and not first.newer_than(second)
    stepped_back = dataclasses.replace(second, started_ns=first.started_ns - 5 * 10**9)
    assert stepped_back.newer_than(first)
    # no kernel boot id: every start is its own host, ordered by the wall clock
    lone = new_boot(str(tmp_path / "missing"))
    assert lone.host != first.host and lone.newer_than(first)


def test_heartbeats_the_kernel_dropped_are_counted() -> None:
    """While the receiver is held up, a flood overflows the socket's buffer: the kernel's drop
    count (SO_RXQ_OVFL, reported with the next datagram queued) shows up as ``ReceiveBuffer``,
    and every datagram is either read or counted there."""
    import os
    import socket

    from lbd.core.membership import Boot, Heartbeat, encode

    b = member("b")
    b.start()
    flood = encode(Heartbeat("stranger", Boot(os.urandom(8), 1, 1, os.urandom(8)), 1), KEY)
    sent = 0
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with b._lock:  # the receiver thread waits for the table
                for _ in range(60_000):
                    s.sendto(flood, ("127.0.0.1", b.port))
                    sent += 1

            def nudge() -> bool:  # once the buffer has room again, this one carries the count
                nonlocal sent
                s.sendto(flood, ("127.0.0.1", b.port))
                sent += 1
                return b.dropped[HeartbeatDrop.RECEIVE_BUFFER] > 0

            assert wait_for(nudge, timeout=10)
        assert wait_for(
            lambda: b.received + b.dropped[HeartbeatDrop.RECEIVE_BUFFER] == sent, timeout=10
        ), (sent, b.received, b.dropped)
    finally:
        b.stop(graceful=False)

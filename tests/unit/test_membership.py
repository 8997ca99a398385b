"""Membership: wire format, authentication, the replay/order/source rules and liveness.

The replay tests reproduce issue 16: a heartbeat captured from an earlier boot of a node and
sent again after the node restarted (once, or nine times) must change nothing, nor may a replayed
``leaving`` or a correctly signed heartbeat sent from another address.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbd.core.membership import (
    BOOT_LEN,
    MAC_LEN,
    Boot,
    Heartbeat,
    HeartbeatDrop,
    MembershipTable,
    PeerStatus,
    decode,
    encode,
)
from lbd.runtime.clock import FakeClock

KEY = b"k" * 32
HOST_A, HOST_B, HOST_C = b"hostAAAA", b"hostBBBB", b"hostCCCC"
EPOCH = 1_700_000_000  # wall clock (s) when HOST_A's kernel booted
ADDR = {"n2": "198.18.0.12", "n3": "198.18.0.13"}
S = 1_000_000_000  # ns per s


def boot(uptime: float, *, host: bytes = HOST_A, wall: float | None = None, n: int = 0) -> Boot:
    """A process start ``uptime`` s after its kernel booted (wall clock EPOCH + uptime unless
    the clock is off: ``wall``)."""
    started = EPOCH + uptime if wall is None else wall
    return Boot(host, int(started * S), int(uptime * S), n.to_bytes(8, "big"))


BOOT_1 = boot(60.0)
BOOT_2 = boot(75.0)


def hb(seq: int, b: Boot = BOOT_1, node: str = "n2", **kw: object) -> Heartbeat:
    return Heartbeat(node, b, seq, **kw)  # type: ignore[arg-type]


def wire(h: Heartbeat, key: bytes = KEY) -> Heartbeat | HeartbeatDrop:
    return decode(encode(h, key), KEY)


def rx(t: MembershipTable, h: Heartbeat, now: float, source: str | None = None):
    return t.receive(h, now, ADDR.get(h.node, "") if source is None else source)


@pytest.fixture
def table() -> MembershipTable:
    t = MembershipTable("n1", dead_after=0.4)
    t.set_peers(ADDR)
    return t


def alive(t: MembershipTable, now: float) -> set[str]:
    return {n for n, s in t.view(now).items() if s.alive}


# --- wire format and authentication -----------------------------------------------------------


def test_round_trip() -> None:
    h = hb(7, status=PeerStatus.LEAVING, interfaces_up=frozenset({"eth0", "bond0"}))
    assert wire(h) == h


NAMES = st.text(min_size=1, max_size=20).filter(lambda n: len(n.encode()) <= 253)
BOOTS = st.builds(
    Boot,
    host=st.binary(min_size=8, max_size=8),
    started_ns=st.integers(0, 2**64 - 1),
    uptime_ns=st.integers(0, 2**64 - 1),
    nonce=st.binary(min_size=8, max_size=8),
)


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(
    node=NAMES,
    b=BOOTS,
    seq=st.integers(0, 2**64 - 1),
    leaving=st.booleans(),
    ifaces=st.frozensets(
        st.text(min_size=1, max_size=15).filter(lambda n: len(n.encode()) <= 255), max_size=8
    ),
)
def test_any_heartbeat_round_trips(
    node: str, b: Boot, seq: int, leaving: bool, ifaces: frozenset[str]
) -> None:
    status = PeerStatus.LEAVING if leaving else PeerStatus.ALIVE
    h = Heartbeat(node, b, seq, status, ifaces)
    assert decode(encode(h, KEY), KEY) == h


def test_wrong_key_is_rejected() -> None:
    assert wire(hb(1), key=b"x" * 32) is HeartbeatDrop.BAD_MAC


def test_the_mac_covers_every_byte() -> None:
    """Magic, version, state, every boot field, the sequence, the name and the interfaces: a
    change anywhere (a downgrade of the version byte included) breaks the signature."""
    data = encode(hb(5, status=PeerStatus.LEAVING, interfaces_up=frozenset({"eth0"})), KEY)
    for i in range(len(data) - MAC_LEN):
        for bit in (0x01, 0x80):
            tampered = bytearray(data)
            tampered[i] ^= bit
            out = decode(bytes(tampered), KEY)
            # a broken magic is refused before the MAC is computed; everything else by the MAC
            assert out is (HeartbeatDrop.MALFORMED if i < 4 else HeartbeatDrop.BAD_MAC), (i, bit)


def test_signed_trailing_bytes_and_the_old_version_are_malformed() -> None:
    body = encode(hb(1), KEY)[:-MAC_LEN]
    for forged in (body + b"\x00", body[:4] + b"\x01" + body[5:]):
        signed = forged + hmac.new(KEY, forged, hashlib.sha256).digest()
        assert decode(signed, KEY) is HeartbeatDrop.MALFORMED


def test_boot_occupies_its_documented_bytes() -> None:
    data = encode(hb(3), KEY)
    assert data[6 : 6 + BOOT_LEN] == BOOT_1.pack()
    assert int.from_bytes(data[6 + BOOT_LEN : 14 + BOOT_LEN], "big") == 3


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(st.binary(max_size=200))
def test_garbage_never_raises(data: bytes) -> None:
    assert decode(data, KEY) in set(HeartbeatDrop)


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(st.binary(min_size=4, max_size=160))
def test_signed_garbage_is_malformed_not_an_exception(body: bytes) -> None:
    data = b"LBHB" + body
    signed = data + hmac.new(KEY, data, hashlib.sha256).digest()
    out = decode(signed, KEY)
    assert isinstance(out, (Heartbeat, HeartbeatDrop))


# --- liveness ---------------------------------------------------------------------------------


def test_peer_is_alive_until_dead_after_then_dead(table: MembershipTable) -> None:
    clock = FakeClock()
    assert rx(table, hb(1), clock.monotonic()) is None
    assert alive(table, clock.monotonic()) == {"n1", "n2"}
    clock.advance(0.4)
    assert "n2" in alive(table, clock.monotonic())
    clock.advance(0.001)
    assert alive(table, clock.monotonic()) == {"n1"}
    assert table.next_expiry(clock.monotonic()) is None


def test_each_heartbeat_extends_life(table: MembershipTable) -> None:
    clock = FakeClock()
    for seq in range(1, 20):
        rx(table, hb(seq), clock.monotonic())
        clock.advance(0.1)
        assert "n2" in alive(table, clock.monotonic())
    assert table.next_expiry(clock.monotonic()) == pytest.approx(clock.monotonic() + 0.3)


def test_next_expiry_is_the_peer_heard_longest_ago_and_version_marks_changes(
    table: MembershipTable,
) -> None:
    v0 = table.version
    rx(table, hb(1), 10.0)  # n2 comes alive: a change
    rx(table, hb(1, node="n3"), 10.1)
    v1 = table.version
    assert v1 == v0 + 2
    rx(table, hb(2), 10.2)  # nothing the view shows changed
    assert table.version == v1
    assert table.next_expiry(10.2) == pytest.approx(10.5)  # n3, heard at 10.1
    rx(table, hb(3, interfaces_up=frozenset({"eth0"})), 10.3)  # its interfaces changed
    assert table.version == v1 + 1
    table.expire(10.55)  # n3 died
    assert table.version == v1 + 2
    assert table.next_expiry(10.55) == pytest.approx(10.7)


def test_self_is_always_alive_and_unknown_nodes_are_dropped(table: MembershipTable) -> None:
    clock = FakeClock()
    assert rx(table, hb(1, node="intruder"), clock.monotonic()) is HeartbeatDrop.UNKNOWN_NODE
    clock.advance(100)
    assert alive(table, clock.monotonic()) == {"n1"}


def test_replayed_and_old_sequences_are_dropped(table: MembershipTable) -> None:
    clock = FakeClock()
    assert rx(table, hb(5), clock.monotonic()) is None
    assert rx(table, hb(5), clock.monotonic()) is HeartbeatDrop.REPLAY
    assert rx(table, hb(4), clock.monotonic()) is HeartbeatDrop.REPLAY
    clock.advance(0.5)
    # A replay of an old heartbeat must not bring a dead peer back.
    assert rx(table, hb(5), clock.monotonic()) is HeartbeatDrop.REPLAY
    assert "n2" not in alive(table, clock.monotonic())


def test_leaving_is_dead_at_once(table: MembershipTable) -> None:
    rx(table, hb(1), 0.0)
    rx(table, hb(2, status=PeerStatus.LEAVING), 0.0)
    assert alive(table, 0.0) == {"n1"}
    assert table.view(0.0)["n2"].leaving


def test_reported_interfaces_are_visible(table: MembershipTable) -> None:
    rx(table, hb(1, interfaces_up=frozenset({"eth0"})), 0.0)
    assert table.view(0.0)["n2"].interfaces_up == {"eth0"}
    rx(table, hb(2), 0.0)  # link went down: reported empty
    assert table.view(0.0)["n2"].interfaces_up == frozenset()


def test_another_speaker_with_our_name_is_flagged() -> None:
    t = MembershipTable("n1", dead_after=0.4)
    t.self_boot = BOOT_1
    assert t.receive(hb(1, node="n1", b=BOOT_2), 0.0, "198.18.0.11") is HeartbeatDrop.SELF


def test_removed_peer_is_forgotten(table: MembershipTable) -> None:
    rx(table, hb(1), 0.0)
    table.set_peers({"n3": ADDR["n3"]})
    assert set(table.view(0.0)) == {"n1", "n3"}
    assert rx(table, hb(2), 0.0) is HeartbeatDrop.UNKNOWN_NODE


# --- restarts, replays, clock steps (issue 16) -------------------------------------------------


def test_a_restart_is_accepted_and_the_earlier_boot_is_never_heard_again(
    table: MembershipTable,
) -> None:
    """Replaces ``test_new_boot_id_is_accepted_with_a_restarted_sequence``, which pinned the
    behaviour the attack used: any boot not among the last 8 retired ones was accepted and made
    the current one a replay."""
    rx(table, hb(900), 0.0)
    assert rx(table, hb(1, BOOT_2), 0.1) is None  # restarted: sequence from 1, newer boot
    assert table.view(0.1)["n2"].boot == BOOT_2
    # the previous boot's heartbeats are old now, even with higher sequence numbers
    assert rx(table, hb(901), 0.2) is HeartbeatDrop.OLD_BOOT
    assert table.view(0.2)["n2"].boot == BOOT_2


def _run_restarts(table: MembershipTable, restarts: int) -> tuple[list[Heartbeat], float, int]:
    """n2 runs ``restarts + 1`` boots, 5 heartbeats each; returns all of them (the attacker's
    capture), the time, and the current boot's next sequence number."""
    captured: list[Heartbeat] = []
    now = 0.0
    for r in range(restarts + 1):
        b = boot(60.0 + 3.0 * r)
        for seq in range(1, 6):
            h = hb(seq, b)
            captured.append(h)
            assert rx(table, h, now) is None
            now += 0.1
        now += 0.05
    return captured, now, 6


@pytest.mark.parametrize("restarts", [1, 9], ids=["one restart", "nine restarts"])
def test_heartbeat_of_an_earlier_boot_replayed_after_restarts_changes_nothing(
    table: MembershipTable, restarts: int
) -> None:
    captured, now, seq = _run_restarts(table, restarts)
    current = captured[-1].boot
    for old in captured[:-5]:  # everything the earlier boots sent, highest sequence included
        assert rx(table, old, now) is HeartbeatDrop.OLD_BOOT
        # ... from the peer's own address too: the replay comes from anywhere on the segment
        assert rx(table, Heartbeat("n2", old.boot, old.seq + 1000), now) is HeartbeatDrop.OLD_BOOT
        assert table.view(now)["n2"].boot == current
    # the current boot goes on being heard: n2 never looked dead
    for i in range(20):
        assert rx(table, hb(seq + i, current), now) is None
        assert "n2" in alive(table, now)
        now += 0.1


def test_replayed_leaving_changes_nothing(table: MembershipTable) -> None:
    rx(table, hb(1), 0.0)
    leaving = hb(2, status=PeerStatus.LEAVING)  # n2 shut down gracefully: captured
    rx(table, leaving, 0.1)
    assert rx(table, hb(1, BOOT_2), 0.3) is None  # ... and came back
    assert rx(table, leaving, 0.4) is HeartbeatDrop.OLD_BOOT
    assert "n2" in alive(table, 0.4)
    # the current boot's own heartbeats, replayed as a "leaving" cannot be: the state is signed;
    # replayed unchanged they are old sequences
    assert rx(table, hb(1, BOOT_2), 0.5) is HeartbeatDrop.REPLAY
    assert "n2" in alive(table, 0.5)


def test_right_key_wrong_source_changes_nothing(table: MembershipTable) -> None:
    rx(table, hb(1), 0.0)
    forged = [
        hb(2, status=PeerStatus.LEAVING),
        hb(1, boot(999.0)),
        hb(3, interfaces_up=frozenset()),
    ]
    for h in forged:
        assert rx(table, h, 0.1, source="198.18.0.99") is HeartbeatDrop.WRONG_SOURCE
        assert rx(table, h, 0.1, source=ADDR["n3"]) is HeartbeatDrop.WRONG_SOURCE
    state = table.view(0.1)["n2"]
    assert state.alive and state.boot == BOOT_1 and state.seq == 1


def test_a_dead_peer_is_not_brought_back_by_an_earlier_boot(table: MembershipTable) -> None:
    rx(table, hb(1), 0.0)
    rx(table, hb(1, BOOT_2), 0.1)
    for seq in (1, 2, 1000):  # n2 died; its first boot's heartbeats are replayed
        assert rx(table, hb(seq), 5.0) is HeartbeatDrop.OLD_BOOT
    assert "n2" not in alive(table, 5.0)


@pytest.mark.parametrize("step", [-5.0, -2.5, +4.0], ids=["back 5 s", "back 2.5 s", "fwd 4 s"])
def test_restart_right_after_a_clock_step_is_accepted_at_once(
    table: MembershipTable, step: float
) -> None:
    """Same kernel boot: the order comes from CLOCK_BOOTTIME, which never steps."""
    rx(table, hb(1, boot(60.0)), 0.0)
    restarted = boot(61.0, wall=EPOCH + 61.0 + step)  # started 1 s later, wall clock stepped
    assert restarted.newer_than(boot(60.0)) is True
    assert rx(table, hb(1, restarted), 0.05) is None
    assert rx(table, hb(9), 0.1) is HeartbeatDrop.OLD_BOOT


def test_reboot_is_ordered_by_the_wall_clock_and_a_clock_behind_costs_one_dead_after(
    table: MembershipTable,
) -> None:
    rx(table, hb(1, boot(60.0)), 0.0)
    # rebooted, came back with its clock 10 min behind: older by the wall clock
    behind = boot(20.0, host=HOST_B, wall=EPOCH + 60.0 - 600)
    assert rx(table, hb(1, behind), 0.1) is HeartbeatDrop.OLD_BOOT  # the old boot still heard
    assert rx(table, hb(2, behind), 0.45) is None  # the old boot went silent: accepted
    assert table.view(0.45)["n2"].boot == behind
    # the kernel boot moved away from is never accepted again, not even as "newer"
    assert rx(table, hb(50, boot(61.0)), 0.5) is HeartbeatDrop.OLD_BOOT
    # a normal reboot (clock right) is newer and accepted at once
    assert rx(table, hb(1, boot(5.0, host=HOST_C, wall=EPOCH + 3600)), 0.55) is None


def test_a_boot_never_heard_is_accepted_once_the_current_one_is_silent(
    table: MembershipTable,
) -> None:
    """The documented residual risk (lbd/core/membership.py): an older boot of *another* kernel
    boot that this receiver never heard is taken once the known boot has gone silent."""
    rx(table, hb(1, boot(60.0, host=HOST_B)), 0.0)
    unseen = boot(50.0, host=HOST_A, wall=EPOCH)  # earlier, never heard here
    assert rx(table, hb(1, unseen), 0.1) is HeartbeatDrop.OLD_BOOT
    assert rx(table, hb(1, unseen), 1.0) is None


# --- a model: replays never change what a receiver believes ----------------------------------


@dataclass
class _Node:
    """n2 as a machine: kernel boots, process restarts, a wall clock that steps."""

    host: int = 0
    uptime: float = 100.0
    wall_error: float = 0.0
    boot: Boot = field(default_factory=lambda: boot(100.0))
    seq: int = 0

    def restart(self, after: float, wall_step: float, reboot: bool) -> None:
        self.wall_error += wall_step
        if reboot:
            self.host += 1
            self.uptime = 30.0
        else:
            self.uptime += after
        host = self.host.to_bytes(8, "big")
        wall = EPOCH + 10_000 * self.host + self.uptime + self.wall_error
        self.boot = boot(self.uptime, host=host, wall=wall, n=random.getrandbits(64))
        self.seq = 0

    def send(self, leaving: bool = False) -> Heartbeat:
        self.seq += 1
        status = PeerStatus.LEAVING if leaving else PeerStatus.ALIVE
        return hb(self.seq, self.boot, status=status)


EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("beat"), st.floats(0.01, 0.2)),
        st.tuples(st.just("restart"), st.floats(0.3, 20.0), st.floats(-5.0, 5.0), st.booleans()),
        st.tuples(st.just("leave"), st.floats(0.01, 0.2)),
        st.tuples(st.just("silence"), st.floats(0.1, 2.0)),
        st.tuples(st.just("replay"), st.integers(0, 10_000), st.booleans()),
    ),
    max_size=60,
)


@settings(deadline=None, max_examples=300)
@given(events=EVENTS)
def test_no_replay_ever_changes_what_the_receiver_believes(events: list[tuple[Any, ...]]) -> None:
    """n2 restarts (process restarts with wall-clock steps of up to 5 s, kernel reboots with the
    clock off by the same), leaves, falls silent; an attacker replays any heartbeat captured so
    far, as often as it likes, with the leaving ones among them. A receiver that gets the replays
    believes at every moment exactly what one that never got them believes."""
    clean, attacked = (MembershipTable("n1", dead_after=0.4) for _ in range(2))
    for t in (clean, attacked):
        t.set_peers(ADDR)
    node, captured, now = _Node(), [], 0.0
    for event in events:
        kind = event[0]
        if kind in ("beat", "leave"):
            now += event[1]
            h = node.send(leaving=kind == "leave")
            captured.append(h)
            assert rx(clean, h, now) is None
            assert rx(attacked, h, now) is None
        elif kind == "restart":
            now += 0.5  # the process is gone for a moment
            node.restart(event[1], event[2], event[3])
            h = node.send()
            captured.append(h)
            assert rx(clean, h, now) is rx(attacked, h, now)
        elif kind == "silence":
            now += event[1]
        elif captured:
            old = captured[event[1] % len(captured)]
            assert rx(attacked, old, now) in (HeartbeatDrop.REPLAY, HeartbeatDrop.OLD_BOOT)
        assert attacked.view(now) == clean.view(now)


def test_dead_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="dead_after"):
        MembershipTable("n1", dead_after=0)


@pytest.mark.parametrize(
    ("kw", "field_name"),
    [
        ({"node": ""}, "Heartbeat.node"),
        ({"seq": -1}, "Heartbeat.seq"),
        ({"interfaces_up": frozenset({""})}, "Heartbeat.interfaces_up"),
    ],
    ids=["empty name", "negative seq", "empty interface name"],
)
def test_bad_heartbeats_name_the_field(kw: dict[str, object], field_name: str) -> None:
    args: dict[str, object] = {"node": "n2", "boot": BOOT_1, "seq": 1}
    args.update(kw)
    with pytest.raises(ValueError, match=field_name.replace(".", r"\.")):
        Heartbeat(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "field_name"),
    [
        ({"host": b"x"}, "Boot.host"),
        ({"nonce": b""}, "Boot.host/Boot.nonce"),
        ({"started_ns": -1}, "Boot.started_ns"),
        ({"uptime_ns": 2**64}, "Boot.uptime_ns"),
    ],
)
def test_bad_boots_name_the_field(kw: dict[str, object], field_name: str) -> None:
    args: dict[str, object] = {"host": HOST_A, "started_ns": 1, "uptime_ns": 1, "nonce": b"n" * 8}
    args.update(kw)
    with pytest.raises(ValueError, match=field_name.replace(".", r"\.")):
        Boot(**args)  # type: ignore[arg-type]

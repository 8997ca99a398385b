"""Membership: wire format, authentication, replay rules and liveness on a fake clock."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbd.core.membership import (
    Heartbeat,
    HeartbeatDrop,
    MembershipTable,
    PeerStatus,
    decode,
    encode,
)
from lbd.runtime.clock import FakeClock

KEY = b"k" * 32
BOOT_A = b"A" * 16
BOOT_B = b"B" * 16


def hb(seq: int, boot: bytes = BOOT_A, node: str = "n2", **kw: object) -> Heartbeat:
    return Heartbeat(node, boot, seq, **kw)  # type: ignore[arg-type]


def wire(h: Heartbeat, key: bytes = KEY) -> Heartbeat | HeartbeatDrop:
    return decode(encode(h, key), KEY)


@pytest.fixture
def table() -> MembershipTable:
    t = MembershipTable("n1", dead_after=0.4)
    t.set_peers({"n2", "n3"})
    return t


def alive(t: MembershipTable, clock: FakeClock) -> set[str]:
    return {n for n, s in t.view(clock.monotonic()).items() if s.alive}


def test_round_trip() -> None:
    h = hb(7, status=PeerStatus.LEAVING, interfaces_up=frozenset({"eth0", "bond0"}))
    assert wire(h) == h


NAMES = st.text(min_size=1, max_size=20).filter(lambda n: len(n.encode()) <= 253)


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(
    node=NAMES,
    boot=st.binary(min_size=16, max_size=16),
    seq=st.integers(0, 2**64 - 1),
    leaving=st.booleans(),
    ifaces=st.frozensets(
        st.text(min_size=1, max_size=15).filter(lambda n: len(n.encode()) <= 255), max_size=8
    ),
)
def test_any_heartbeat_round_trips(
    node: str, boot: bytes, seq: int, leaving: bool, ifaces: frozenset[str]
) -> None:
    status = PeerStatus.LEAVING if leaving else PeerStatus.ALIVE
    h = Heartbeat(node, boot, seq, status, ifaces)
    assert decode(encode(h, KEY), KEY) == h


def test_wrong_key_is_rejected() -> None:
    assert wire(hb(1), key=b"x" * 32) is HeartbeatDrop.BAD_MAC


def test_tampered_heartbeat_is_rejected() -> None:
    data = bytearray(encode(hb(1), KEY))
    data[25] ^= 1  # inside the sequence number
    assert decode(bytes(data), KEY) is HeartbeatDrop.BAD_MAC


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(st.binary(max_size=200))
def test_garbage_never_raises(data: bytes) -> None:
    assert decode(data, KEY) in set(HeartbeatDrop)


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(st.binary(min_size=4, max_size=120))
def test_signed_garbage_is_malformed_not_an_exception(body: bytes) -> None:
    data = b"LBHB" + body
    signed = data + hmac.new(KEY, data, hashlib.sha256).digest()
    out = decode(signed, KEY)
    assert isinstance(out, (Heartbeat, HeartbeatDrop))


def test_peer_is_alive_until_dead_after_then_dead(table: MembershipTable) -> None:
    clock = FakeClock()
    assert table.receive(hb(1), clock.monotonic()) is None
    assert alive(table, clock) == {"n1", "n2"}
    clock.advance(0.4)
    assert "n2" in alive(table, clock)
    clock.advance(0.001)
    assert alive(table, clock) == {"n1"}
    assert table.next_expiry(clock.monotonic()) is None


def test_each_heartbeat_extends_life(table: MembershipTable) -> None:
    clock = FakeClock()
    for seq in range(1, 20):
        table.receive(hb(seq), clock.monotonic())
        clock.advance(0.1)
        assert "n2" in alive(table, clock)
    assert table.next_expiry(clock.monotonic()) == pytest.approx(clock.monotonic() + 0.3)


def test_self_is_always_alive_and_unknown_nodes_are_dropped(table: MembershipTable) -> None:
    clock = FakeClock()
    assert table.receive(hb(1, node="intruder"), clock.monotonic()) is HeartbeatDrop.UNKNOWN_NODE
    clock.advance(100)
    assert alive(table, clock) == {"n1"}


def test_replayed_and_old_sequences_are_dropped(table: MembershipTable) -> None:
    clock = FakeClock()
    assert table.receive(hb(5), clock.monotonic()) is None
    assert table.receive(hb(5), clock.monotonic()) is HeartbeatDrop.REPLAY
    assert table.receive(hb(4), clock.monotonic()) is HeartbeatDrop.REPLAY
    clock.advance(0.5)
    # A replay of an old heartbeat must not bring a dead peer back.
    assert table.receive(hb(5), clock.monotonic()) is HeartbeatDrop.REPLAY
    assert "n2" not in alive(table, clock)


def test_new_boot_id_is_accepted_with_a_restarted_sequence(table: MembershipTable) -> None:
    clock = FakeClock()
    table.receive(hb(900), clock.monotonic())
    assert table.receive(hb(1, boot=BOOT_B), clock.monotonic()) is None
    assert table.view(clock.monotonic())["n2"].boot_id == BOOT_B
    # ... and the previous boot's heartbeats are now replays, even with higher sequences.
    assert table.receive(hb(901), clock.monotonic()) is HeartbeatDrop.REPLAY


def test_leaving_is_dead_at_once(table: MembershipTable) -> None:
    clock = FakeClock()
    table.receive(hb(1), clock.monotonic())
    table.receive(hb(2, status=PeerStatus.LEAVING), clock.monotonic())
    assert alive(table, clock) == {"n1"}
    assert table.view(clock.monotonic())["n2"].leaving


def test_reported_interfaces_are_visible(table: MembershipTable) -> None:
    clock = FakeClock()
    table.receive(hb(1, interfaces_up=frozenset({"eth0"})), clock.monotonic())
    assert table.view(clock.monotonic())["n2"].interfaces_up == {"eth0"}
    table.receive(hb(2), clock.monotonic())  # link went down: reported empty
    assert table.view(clock.monotonic())["n2"].interfaces_up == frozenset()


def test_another_speaker_with_our_name_is_flagged() -> None:
    t = MembershipTable("n1", dead_after=0.4)
    t.self_boot_id = BOOT_A
    assert t.receive(hb(1, node="n1", boot=BOOT_B), 0.0) is HeartbeatDrop.SELF


def test_removed_peer_is_forgotten(table: MembershipTable) -> None:
    table.receive(hb(1), 0.0)
    table.set_peers({"n3"})
    assert set(table.view(0.0)) == {"n1", "n3"}
    assert table.receive(hb(2), 0.0) is HeartbeatDrop.UNKNOWN_NODE


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"node": ""}, "Heartbeat.node"),
        ({"boot_id": b"x"}, "Heartbeat.boot_id"),
        ({"seq": -1}, "Heartbeat.seq"),
        ({"interfaces_up": frozenset({""})}, "Heartbeat.interfaces_up"),
    ],
    ids=["empty name", "short boot id", "negative seq", "empty interface name"],
)
def test_bad_heartbeats_name_the_field(kw: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"node": "n2", "boot_id": BOOT_A, "seq": 1}
    args.update(kw)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        Heartbeat(**args)  # type: ignore[arg-type]


def test_dead_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="dead_after"):
        MembershipTable("n1", dead_after=0)

"""The membership key ring (pure): the key file format, the grace window on an injected clock,
and the property the rotation design rests on: nodes that see a new key file in any order, less
than the grace apart, hear each other at every moment, and nobody accepts the old key after it.

Every check of "hears" encodes a real heartbeat with the sender's keys and decodes it with the
receiver's (:mod:`lbd.core.membership`), so the wire format's tags are tested with the ring.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbd.core.keyring import (
    MAX_FILE_KEYS,
    MAX_KEYS,
    KeyFileError,
    KeyRing,
    KeySet,
    RingState,
    describe,
    key_id,
    parse_key_file,
)
from lbd.core.membership import Boot, Heartbeat, HeartbeatDrop, decode, encode

K1, K2, K3 = b"key-one-0123456789abcdef", b"key-two-0123456789abcdef", b"key-three-0123456789abc"
GRACE = 300.0
HB = Heartbeat("n2", Boot(b"hostAAAA", 1, 1, b"nonce000"), 7)


def hears(sender: KeySet, receiver: KeySet) -> bool:
    return decode(encode(HB, sender), receiver) == HB


# --- the key file ---------------------------------------------------------------------------


def test_one_key_per_line_blank_lines_crlf_and_duplicates() -> None:
    assert parse_key_file(K1 + b"\n") == (K1,)
    assert parse_key_file(b"\n" + K2 + b"\r\n\n  " + K1 + b"  \n" + K2) == (K2, K1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "holds no key"),
        (b"\n \n", "holds no key"),
        (K1 + b"\nshort\n", "line 2 holds 5 bytes, need at least 16"),
        (b"\n".join(bytes([65 + i]) * 20 for i in range(MAX_FILE_KEYS + 1)), "at most 4"),
    ],
)
def test_unusable_key_files_say_why(data: bytes, message: str) -> None:
    with pytest.raises(KeyFileError, match=message):
        parse_key_file(data)


def test_key_id_is_the_documented_sha256_prefix() -> None:
    """`printf %s KEY | sha256sum | cut -c1-8` gives the id that logs and metrics show."""
    assert key_id(K1).hex() == hashlib.sha256(K1).hexdigest()[:8]
    assert KeySet.of(K1, K2).ids == (key_id(K1).hex(), key_id(K2).hex())
    assert "key-one" not in repr(KeySet.of(K1))  # the secret never shows in a repr


# --- the grace window, on an injected clock -------------------------------------------------


def test_a_key_that_left_the_file_is_accepted_for_the_grace_and_not_a_moment_longer() -> None:
    ring = KeyRing([K1], grace=GRACE, now=0.0)
    assert ring.keys(0.0).ids == KeySet.of(K1).ids
    assert ring.load([K2], now=10.0)
    assert set(ring.keys(10.0).ids) == set(KeySet.of(K1, K2).ids)
    assert ring.next_expiry == 10.0 + GRACE
    just_before = ring.keys(10.0 + GRACE - 1e-6)
    assert hears(KeySet.of(K1), just_before)
    after = ring.keys(10.0 + GRACE)
    assert after.ids == KeySet.of(K2).ids
    assert decode(encode(HB, K1), after) is HeartbeatDrop.KEY_MISMATCH
    assert ring.next_expiry == float("inf")


def test_the_state_says_which_keys_sign_and_until_when_the_old_one_is_accepted() -> None:
    ring = KeyRing([K1], grace=GRACE, now=0.0)
    ring.load([K2], now=100.0)
    state = ring.state(160.0)
    assert state == RingState((key_id(K2).hex(),), ((key_id(K1).hex(), 400.0),))
    line = describe(state, 160.0)
    assert line == (
        f"membership keys: signing with and accepting {key_id(K2).hex()}, {key_id(K1).hex()}; "
        f"retiring {key_id(K1).hex()} (accepted 240 s more)"
    )
    assert describe(ring.state(400.0), 400.0) == (
        f"membership keys: signing with and accepting {key_id(K2).hex()}"
    )


def test_version_moves_only_when_the_keys_in_use_change() -> None:
    ring = KeyRing([K1, K2], grace=GRACE, now=0.0)
    v = ring.version
    assert not ring.load([K2, K1], now=1.0)  # the order of the lines does not matter
    assert not ring.load([K1, K2, K1], now=2.0)
    assert ring.version == v
    assert ring.load([K2], now=3.0)  # K1 retiring: still in use, but now on a clock
    assert not ring.load([K2], now=4.0)
    ring.keys(3.0 + GRACE)
    assert ring.version == v + 2  # the expiry is a change too


def test_a_key_that_comes_back_is_current_again_and_never_expires() -> None:
    ring = KeyRing([K1], grace=GRACE, now=0.0)
    ring.load([K2], now=0.0)
    ring.load([K2, K1], now=100.0)
    assert ring.next_expiry == float("inf")
    assert set(ring.keys(10_000.0).ids) == set(KeySet.of(K1, K2).ids)


def test_grace_zero_revokes_at_once() -> None:
    ring = KeyRing([K1], grace=0.0, now=0.0)
    ring.load([K2], now=5.0)
    assert ring.keys(5.0).ids == KeySet.of(K2).ids


def test_a_negative_or_endless_grace_and_an_empty_file_are_refused_and_change_nothing() -> None:
    for grace in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="key grace: must be a finite number >= 0"):
            KeyRing([K1], grace=grace, now=0.0)
    ring = KeyRing([K1], grace=GRACE, now=0.0)
    with pytest.raises(ValueError, match="1-4 keys"):
        ring.load([], now=1.0)
    assert ring.keys(1.0).ids == KeySet.of(K1).ids


def test_the_tags_per_heartbeat_stay_bounded_when_the_file_changes_again_and_again() -> None:
    """Nine single-key files within one grace: the oldest retiring keys go first, early."""
    keys = [bytes([65 + i]) * 20 for i in range(10)]
    ring = KeyRing(keys[:1], grace=GRACE, now=0.0)
    for i, k in enumerate(keys[1:], start=1):
        ring.load([k], now=float(i))
    in_use = ring.keys(10.0)
    assert len(in_use.keys) == MAX_KEYS
    assert set(in_use.ids) == {key_id(k).hex() for k in keys[-MAX_KEYS:]}
    assert len(encode(HB, in_use)) < 512


# --- the property the design rests on --------------------------------------------------------


class Node:
    """One speaker's ring, fed its key file changes at the times its kubelet would write them."""

    def __init__(self, grace: float, updates: Sequence[tuple[float, tuple[bytes, ...]]]) -> None:
        self.ring = KeyRing([K1], grace=grace, now=0.0)
        self.pending = sorted(updates, key=lambda u: u[0])  # stable: same time, file order

    def keys(self, now: float) -> KeySet:
        while self.pending and self.pending[0][0] <= now:
            at, keys = self.pending.pop(0)
            self.ring.load(keys, at)
        return self.ring.keys(now)


def moments(events: Sequence[float]) -> list[float]:
    """Every moment at which something changes, and just before and after it."""
    out = {0.0}
    for t in events:
        out |= {t - 1e-6, t, t + 1e-6}
    return sorted(t for t in out if t >= 0)


def deaf_pairs(nodes: Sequence[Node], events: Sequence[float]) -> list[tuple[float, int, int]]:
    """(time, sender, receiver) for every moment a receiver would drop a live sender."""
    deaf = []
    for now in moments(events):
        sets = [n.keys(now) for n in nodes]
        deaf += [
            (now, i, j)
            for i, s in enumerate(sets)
            for j, r in enumerate(sets)
            if i != j and not hears(s, r)
        ]
    return deaf


@settings(deadline=None, max_examples=60)  # timing varies on a loaded CI machine
@given(
    seen=st.lists(st.floats(0.0, 89.0), min_size=2, max_size=5),
    second=st.one_of(st.none(), st.floats(0.0, 400.0)),
    spread2=st.lists(st.floats(0.0, 89.0), min_size=5, max_size=5),
)
def test_any_update_order_within_the_grace_keeps_every_pair_hearing_each_other(
    seen: list[float], second: float | None, spread2: list[float]
) -> None:
    """Each node sees K2 replace K1 at its own time (the kubelet's 60-90 s spread, here up to
    89 s with a 90 s grace), optionally K3 replace K2 later: at no moment does any node drop a
    live peer's heartbeat, and once every grace is over nobody accepts K1."""
    grace = 90.0
    updates: list[list[tuple[float, tuple[bytes, ...]]]] = [[(t, (K2,))] for t in seen]
    if second is not None:  # a second rotation, its own spread, never before the first
        for i, t in enumerate(seen):
            updates[i].append((max(t, second + spread2[i]), (K3,)))
    nodes = [Node(grace, u) for u in updates]
    events = [t + d for u in updates for t, _k in u for d in (0.0, grace)]
    assert deaf_pairs(nodes, events) == []
    end = max(events) + 1.0
    for n in nodes:
        assert decode(encode(HB, K1), n.keys(end)) is HeartbeatDrop.KEY_MISMATCH


def test_random_order_with_a_seed_and_the_control_where_the_spread_exceeds_the_grace() -> None:
    """The same check with a fresh seed each run; and the control that shows what the grace
    buys: a node updated more than the grace after another is cut off from it."""
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    times = [rng.uniform(0, 89.0) for _ in range(rng.randint(2, 6))]
    nodes = [Node(90.0, [(t, (K2,))]) for t in times]
    assert deaf_pairs(nodes, [t + d for t in times for d in (0, 90.0)]) == [], seed

    late = [Node(90.0, [(0.0, (K2,))]), Node(90.0, [(95.0, (K2,))])]
    deaf = deaf_pairs(late, [0.0, 90.0, 95.0, 185.0])
    assert {(i, j) for _t, i, j in deaf} == {(0, 1), (1, 0)}
    assert min(t for t, _i, _j in deaf) == pytest.approx(90.0)  # from the first node's grace end
    assert max(t for t, _i, _j in deaf) < 95.0  # until the late one saw the file


def test_signing_with_the_new_key_alone_at_once_would_cut_off_the_nodes_not_yet_updated() -> None:
    """Why a node keeps signing with the old key: the naive design, checked by the same rule."""
    updated, not_yet = KeySet.of(K2), KeySet.of(K1)
    assert not hears(updated, not_yet)
    ring = KeyRing([K1], grace=GRACE, now=0.0)
    ring.load([K2], now=0.0)
    assert hears(ring.keys(1.0), not_yet) and hears(not_yet, ring.keys(1.0))

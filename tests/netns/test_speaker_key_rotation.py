"""Rotating the membership key in the speaker lab (issue 15): no failover, no split, no probe lost.

Each node's speaker reads its key from its own Secret volume, written the way the kubelet writes
one (a ``..data`` symlink swapped atomically; ``SecretVolume``), so the nodes can see the new key
at different moments, as they do in a cluster where each kubelet refreshes on its own schedule.
The test rotates the nodes in a random order with random delays between them (seeded, the seed
printed) while a client asks who has the VIP every 10 ms, and keeps probing until every node's
grace is over (the moment each stops accepting and signing with the old key). Then a captured
heartbeat signed with the old key is accepted by the key check during the grace of the next
rotation (dropped as a ``Replay``) and refused as ``KeyMismatch`` after it, as is a forged
``leaving`` that would move the VIP at once if it were believed.

Three ``lbd speaker`` processes on a bridge (``test_speaker_lab.py``).
"""

from __future__ import annotations

import functools
import json
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lbd.core.keyring import key_id
from lbd.core.membership import Heartbeat, PeerStatus, decode, encode
from lbd.net.membership import new_boot
from tests.netns.l2client import VipProber
from tests.netns.test_speaker_lab import KEY, NODES, SpeakerLab, wait_for
from tests.netns.test_speaker_replay import (
    all_alive,
    assert_one_answering_mac,
    assert_still_alive_everywhere,
    counter,
    heartbeats_of,
    probed,
    replay_as,
)
from tests.unit.test_membership_keys import SecretVolume

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

GRACE = 8.0  # longer than the largest spread below (2 x 2.5 s) plus the 1 s poll of the file
DELAYS = (0.5, 2.5)  # between two nodes: always more than dead_after (0.4 s)
K2 = b"rotated-key-two-0123456789abcdef"
K3 = b"rotated-key-three-0123456789abcd"
DROPS = ("KeyMismatch", "BadMac", "UnknownVersion")


class RotationLab(SpeakerLab):
    """The speaker lab with one Secret volume per node and a short key grace."""

    def volume(self, node: str) -> SecretVolume:
        return SecretVolume(self.workdir / f"secret-{node}")

    def up(self, **kw: Any) -> RotationLab:
        for n in self.nodes:
            self.volume(n).write({"key": KEY + b"\n"})
        super().up(speaker_args=["--membership-key-grace", str(GRACE)], **kw)
        return self

    def start_speaker(self, node: str, *extra: str) -> Any:
        # a second --membership-key: argparse keeps the last, this node's own volume
        return super().start_speaker(node, "--membership-key", str(self.volume(node).key), *extra)

    def keys_of(self, node: str) -> dict[str, str]:
        """key id -> state (Current, Retiring) as ``node`` exports them."""
        return {
            line.split('key_id="')[1].split('"')[0]: line.split('state="')[1].split('"')[0]
            for line in self.metrics(node).splitlines()
            if line.startswith("lbd_membership_key_info{") and line.endswith(" 1.0")
        }

    def key_logs(self, node: str) -> list[str]:
        lines = (self.workdir / f"speaker-{node}.log").read_text().splitlines()
        msgs = [json.loads(x).get("msg", "") for x in lines if x.startswith("{")]
        return [m for m in msgs if m.startswith("membership keys:")]


def hex_id(key: bytes) -> str:
    return key_id(key).hex()


def wait_keys(lab: RotationLab, want: dict[bytes, str], timeout: float) -> None:
    """Wait until every node exports exactly ``want`` (key -> Current/Retiring)."""
    ids = {hex_id(k): state for k, state in want.items()}
    for n in NODES:
        wait_for(functools.partial(lambda n: lab.keys_of(n) == ids, n), timeout, f"{n}: {ids}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RotationLab]:
    lab = RotationLab("rot" + uuid.uuid4().hex[:5], tmp_path_factory.mktemp("rot"))
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def owner(lab: RotationLab) -> str:
    return random.choice(NODES)


@pytest.fixture(scope="module")
def vip(lab: RotationLab, owner: str) -> str:
    vip = lab.vip_owned_by(owner, start=60)
    lab.create_service("rotate", [vip])
    lab.expect_owner(vip, owner)
    wait_for(lambda: (lab.l2_status("rotate") or {}).get("status", {}).get("node") == owner)
    return vip


def rotate_all(lab: RotationLab, order: list[str], delays: list[float], key: bytes) -> float:
    """Write ``key`` into each node's volume in ``order``, ``delays`` apart; the last write's
    time."""
    last = 0.0
    for i, node in enumerate(order):
        if i:
            time.sleep(delays[i - 1])
        lab.volume(node).write({"key": key + b"\n"})
        last = time.monotonic()
    return last


def test_rotation_in_random_order_loses_no_probe_and_moves_nothing(
    lab: RotationLab, vip: str, owner: str
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    order = rng.sample(NODES, len(NODES))
    delays = [round(rng.uniform(*DELAYS), 2) for _ in order[1:]]
    print(f"seed={seed} owner={owner} order={order} delays={delays}")
    all_alive(lab)
    old, new = hex_id(KEY), hex_id(K2)
    status_rv = lab.l2_status("rotate")["metadata"]["resourceVersion"]
    drops = {n: {r: counter(lab, n, r) for r in DROPS} for n in NODES}
    assert lab.seg is not None
    seg = lab.seg
    c = seg["client"]
    with VipProber(c.ns, "eth0", c.mac, c.ipv4, vip, interval=0.01) as prober:
        time.sleep(0.3)
        last = rotate_all(lab, order, delays, K2)
        # every node took the new key and still holds the old one ...
        wait_keys(lab, {K2: "Current", KEY: "Retiring"}, 3)
        # ... until its grace is over: probing goes on through every node's switch to K2 alone
        wait_keys(lab, {K2: "Current"}, last - time.monotonic() + GRACE + 3)
        time.sleep(1.0)  # a peer wrongly seen dead would have been taken over by now
    result = prober.result
    lost = result.probes - len(result.replies)
    print(
        f"probes={result.probes} answered={len(result.replies)} lost={lost} "
        f"longest_silence={result.longest_silence():.3f}s seed={seed}"
    )
    macs = {seg[n].mac: n for n in NODES}
    assert {macs.get(m, m.hex(":")) for m in result.macs()} == {owner}, seed
    assert lost <= 1, (seed, lost)  # the last probe may still be in flight when probing stops
    assert result.longest_silence() < 0.3, (seed, result.longest_silence())
    assert_still_alive_everywhere(lab)
    for n in NODES:  # not one heartbeat of a live peer dropped for its key
        assert {r: counter(lab, n, r) for r in DROPS} == drops[n], (seed, n)
        logs = lab.key_logs(n)
        assert (
            f"membership keys: signing with and accepting {new}, {old}; retiring {old}"
            in (logs[-2].split(" (accepted")[0])
        ), logs
        assert logs[-1] == f"membership keys: signing with and accepting {new}", logs
    # no owner change: the owner's status was never rewritten
    assert lab.l2_status("rotate")["metadata"]["resourceVersion"] == status_rv


def test_old_key_is_accepted_during_the_grace_and_dropped_after_it(
    lab: RotationLab, vip: str, owner: str
) -> None:
    """The same captured bytes, signed with K2 alone, sent twice from the owner's address: during
    the grace of the rotation to K3 the receivers verify them and drop them as replays; after it,
    as KeyMismatch. A forged ``leaving`` of a newer boot signed with K2 would move the VIP at once
    if it were believed: after the grace it changes nothing."""
    if any(lab.keys_of(n) != {hex_id(K2): "Current"} for n in NODES):  # run alone
        rotate_all(lab, list(NODES), [0.0] * len(NODES), K2)
        wait_keys(lab, {K2: "Current"}, GRACE + 5)
    all_alive(lab)
    receivers = [n for n in NODES if n != owner]
    captured = heartbeats_of(lab, owner, 0.5, at=receivers[0])[:3]
    assert captured and all(isinstance(decode(p, K2), Heartbeat) for p in captured)
    assert all(not isinstance(decode(p, K3), Heartbeat) for p in captured)

    last = rotate_all(lab, list(NODES), [0.0] * len(NODES), K3)
    wait_keys(lab, {K3: "Current", K2: "Retiring"}, 3)
    during = {n: (counter(lab, n, "Replay"), counter(lab, n, "KeyMismatch")) for n in receivers}
    sent = replay_as(lab, owner, captured, 0.5)
    time.sleep(0.2)
    for n in receivers:
        replay, mismatch = counter(lab, n, "Replay"), counter(lab, n, "KeyMismatch")
        assert replay - during[n][0] >= 0.9 * sent, n  # verified with the retiring key
        assert mismatch == during[n][1], n
    assert time.monotonic() - last < GRACE, "the grace ended before the check: rerun"

    wait_keys(lab, {K3: "Current"}, last - time.monotonic() + GRACE + 3)
    all_alive(lab)
    forged = [
        encode(Heartbeat(owner, new_boot(), seq, PeerStatus.LEAVING), K2) for seq in (1, 2, 3)
    ]
    before = {n: counter(lab, n, "KeyMismatch") for n in receivers}
    sent_after: list[int] = []
    result = probed(
        lab, vip, lambda: sent_after.append(replay_as(lab, owner, forged + captured, 2.0))
    )
    print(f"after the grace: sent={sent_after[0]} to each receiver, probes={result.probes}")
    assert_one_answering_mac(lab, result, owner)
    assert_still_alive_everywhere(lab)
    for n in receivers:
        assert counter(lab, n, "KeyMismatch") - before[n] >= 0.9 * sent_after[0], n

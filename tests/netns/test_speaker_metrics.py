"""The speakers' ``/metrics`` after a scripted sequence, value by value (issue 14, point 2).

Three real ``lbd speaker`` processes on a bridge (``test_speaker_lab.py``): two Services are
announced, a client asks for their addresses, heartbeats signed with another key arrive, and
the owner of one VIP dies. Each metric an operator reads about that is compared with what the
test did: who announces which Service, ARP answers counted once each, the forged heartbeats
counted as KeyMismatch one by one, and the failover time measured from the dead node's last
heartbeat (at least ``--dead-after``, at most what the client saw plus one heartbeat interval).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from lbd.core.membership import Heartbeat, PeerStatus, encode
from lbd.net.membership import new_boot
from tests.netns.l2client import arp_ask
from tests.netns.test_speaker_lab import NS, SpeakerLab, module_lab, wait_for

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

lab = module_lab("met")

T = TypeVar("T")
PORT = 7947
DEAD_AFTER = 0.4  # the speaker's default --dead-after
INTERVAL = 0.1  # and --heartbeat-interval


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one series (0 when absent: a counter never incremented)."""
    series = f"{name}{{{labels}}}" if labels else name
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


FLUSH = 1.0
"""The responder copies its counters into the metrics once a second."""


def steady(read: Callable[[], T]) -> T:
    """``read()`` once two reads a flush period apart agree (earlier probes all counted)."""
    last = read()
    for _ in range(10):
        time.sleep(FLUSH + 0.1)
        now = read()
        if now == last:
            return now
        last = now
    raise AssertionError(f"never steady: {last}")


def metrics_with(lab: SpeakerLab, node: str, line: str, timeout: float = 10.0) -> str:
    """``node``'s metrics once they contain ``line``."""

    def get() -> str:
        text = lab.metrics(node)
        return text if line in text else ""

    return wait_for(get, timeout, f"{node}: {line}")


@pytest.fixture
def healed(lab: SpeakerLab) -> Iterator[SpeakerLab]:
    try:
        yield lab
    finally:
        for n in lab.nodes:
            if lab.procs[n].poll() is not None:
                lab.restore(n)


def ask(lab: SpeakerLab, vip: str, times: int) -> None:
    assert lab.seg is not None
    client = lab.seg["client"]
    for _ in range(times):
        assert lab.seg.call("client", arp_ask, "eth0", client.mac, client.ipv4, vip, 0.2)


def test_speaker_metrics_follow_announcements_answers_forgeries_and_a_failover(
    healed: SpeakerLab,
) -> None:
    lab = healed
    assert lab.seg is not None
    seg = lab.seg
    va, vb = lab.vip_owned_by("n1", start=60), lab.vip_owned_by("n2", start=60)
    lab.create_service("ma", [va])
    lab.create_service("mb", [vb])
    lab.expect_owner(va, "n1")
    lab.expect_owner(vb, "n2")

    # -- who announces what, and the speaker's own state
    for node in lab.nodes:
        text = metrics_with(lab, node, "lbd_peers_alive 3.0")
        assert sample(text, "lbd_peers_known") == 3.0
        announced = set(re.findall(r"^lbd_speaker_announced\{(.*)\} 1\.0$", text, re.M))
        want = {
            "n1": {f'node="n1",service="{NS}/ma",vip="{va}"'},
            "n2": {f'node="n2",service="{NS}/mb",vip="{vb}"'},
            "n3": set(),
        }[node]
        assert announced == want, node
        assert "_created" not in text
        assert re.search(r'^lbd_build_info\{component="speaker",python="[\d.]+",', text, re.M)
        assert sample(text, "lbd_speaker_capability", 'capability="NET_RAW"') == 1.0
        # the speaker's API requests: its informers list and watch, nothing fails
        assert sample(text, "lbd_api_requests_total", 'code="200",resource="nodes",verb="list"')
        assert not re.search(r'^lbd_api_requests_total\{code="(5\d\d|error)"', text, re.M)

    # -- ARP: each request for an owned VIP is answered once, by its owner only
    def replies() -> dict[str, float]:
        return {n: sample(lab.metrics(n), "lbd_arp_replies_total") for n in lab.nodes}

    before = steady(replies)
    ask(lab, va, 7)
    ask(lab, vb, 3)
    counted = {"n1": before["n1"] + 7, "n2": before["n2"] + 3, "n3": before["n3"]}
    wait_for(lambda: replies() == counted, 5, f"ARP replies counted {counted}")

    # -- heartbeats signed with another key: each one counted as KeyMismatch
    forged = [
        encode(Heartbeat("n2", new_boot(), seq, PeerStatus.LEAVING), b"not-the-key-" * 3)
        for seq in range(1, 26)
    ]

    def mismatches(node: str) -> float:
        return sample(lab.metrics(node), "lbd_heartbeats_dropped_total", 'reason="KeyMismatch"')

    base = {n: mismatches(n) for n in ("n1", "n3")}

    def blast() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for n in ("n1", "n3"):
                for p in forged:
                    s.sendto(p, (seg[n].ipv4, PORT))
                    time.sleep(0.002)

    seg.call("client", blast)
    dropped = {n: base[n] + 25 for n in base}
    wait_for(lambda: {n: mismatches(n) for n in base} == dropped, 5, f"KeyMismatch {dropped}")
    assert "lbd_peers_alive 3.0" in lab.metrics("n3")  # believed by nobody

    # -- failover: n1 dies; the next in rank takes va over
    new = lab.ranked(va, ("n2", "n3"))[0]
    other = ({"n2", "n3"} - {new}).pop()
    garps = sample(lab.metrics(new), "lbd_garp_sent_total")
    t0 = time.monotonic()
    lab.cut("n1")
    lab.expect_owner(va, new, timeout=5)
    took = time.monotonic() - t0
    text = metrics_with(lab, new, "lbd_failover_seconds_count 1.0")
    felt = sample(text, "lbd_failover_seconds_sum")
    step = sample(text, "lbd_takeover_seconds_sum")
    assert sample(text, "lbd_takeover_seconds_count") == 1.0
    # from n1's last heartbeat: detection (>= --dead-after) included, and no more than what the
    # client saw since the cut plus the one heartbeat interval before it
    print(f"failover {felt:.3f} s (takeover step {step * 1000:.1f} ms); client saw {took:.3f} s")
    assert DEAD_AFTER <= felt <= took + INTERVAL + 0.1, (felt, took)
    assert 0 <= step < felt
    wait_for(lambda: sample(lab.metrics(new), "lbd_garp_sent_total") > garps, 5, "GARP counted")
    assert f'lbd_speaker_announced{{node="{new}",service="{NS}/ma",vip="{va}"}} 1.0' in text
    wait_for(lambda: "lbd_peers_alive 2.0" in lab.metrics(new), 5, "n1 counted dead")
    assert sample(lab.metrics(new), "lbd_peers_known") == 3.0
    # nobody else took anything over
    assert "lbd_failover_seconds_count 0.0" in lab.metrics(other)

"""Failover in the speaker lab: node loss, graceful hand-over, API outage, forged heartbeats,
address conflicts. Three ``lbd speaker`` processes on a bridge (see ``test_speaker_lab.py``).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from lbd.core import arp
from lbd.core.membership import Heartbeat, PeerStatus, decode, encode
from tests.netns.l2client import collect, open_raw, send_frames
from tests.netns.test_speaker_lab import KEY, SpeakerLab, module_lab, wait_for

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]


lab = module_lab("lf")


@pytest.fixture
def healed(lab: SpeakerLab) -> Iterator[SpeakerLab]:
    """Every node up with a running speaker again after the test (it may cut or stop some)."""
    try:
        yield lab
    finally:
        lab.api.reset_faults()  # type: ignore[union-attr]
        for n in lab.nodes:
            if lab.procs[n].poll() is not None:
                lab.restore(n)


def garps_from(lab: SpeakerLab, vip: str, node: str, timeout: float) -> int:
    """Gratuitous ARPs for ``vip`` from ``node``'s MAC that the client sees within ``timeout``."""
    assert lab.seg is not None
    mac = lab.seg[node].mac
    key = arp.vip_key(vip)

    def is_garp(f: bytes) -> bool:
        p = arp.parse(f)
        return (
            isinstance(p, arp.ArpPacket)
            and p.sender_mac == mac
            and p.sender_ip == key
            and p.target_ip == key
        )

    def sniff() -> int:
        with open_raw("eth0") as sock:
            return len(collect(sock, is_garp, timeout, stop_after=1))

    return lab.seg.call("client", sniff)


def test_owner_cut_off_then_back(healed: SpeakerLab) -> None:
    lab = healed
    vip = "198.18.100.31"
    lab.create_service("hard", [vip])
    first, second, _ = lab.ranked(vip)
    lab.expect_owner(vip, first)
    t0 = time.monotonic()
    lab.cut(first)
    lab.expect_owner(vip, second, timeout=5)
    took = time.monotonic() - t0
    assert took < 3, f"failover took {took:.2f} s"
    # the takeover burst goes on for 2 s: the client sees the new owner's gratuitous ARP
    assert garps_from(lab, vip, second, timeout=2.5) >= 1
    assert "lbd_failover_seconds_count 1.0" in lab.metrics(second)
    wait_for(
        lambda: (lab.l2_status("hard") or {}).get("status", {}).get("node") == second,
        10,
        "ServiceL2Status names the new owner",
    )
    lab.restore(first)
    lab.expect_owner(vip, first, timeout=10)  # ownership follows the ranking again
    # one NodeAssigned per owner change: first, then second, then first again
    expected = Counter(
        {f"announcing {vip} from {first} on eth0": 2, f"announcing {vip} from {second} on eth0": 1}
    )

    def seen() -> Counter[str]:  # repeats of one message may be aggregated into its count
        seen: Counter[str] = Counter()
        for e in lab.events("NodeAssigned", "hard"):
            seen[e.message] += e.count or 1
        return seen

    with contextlib.suppress(AssertionError):  # the assert below shows what was seen
        wait_for(lambda: seen() == expected, 10, "one NodeAssigned per owner change")
    assert seen() == expected


def test_sigterm_hands_over_and_exits_within_a_second(healed: SpeakerLab) -> None:
    lab = healed
    vip = "198.18.100.32"
    lab.create_service("graceful", [vip])
    first, second, _ = lab.ranked(vip)
    lab.expect_owner(vip, first)
    t0 = time.monotonic()
    lab.kill(first, signal.SIGTERM)
    lab.procs[first].wait(5)
    assert time.monotonic() - t0 < 1.0
    assert lab.procs[first].returncode == 0
    lab.expect_owner(vip, second, timeout=2)
    wait_for(
        lambda: (lab.l2_status("graceful") or {}).get("status", {}).get("node") == second,
        10,
        "ServiceL2Status names the new owner",
    )


def test_api_outage_keeps_announcing_and_failover_still_works(healed: SpeakerLab) -> None:
    lab = healed
    assert lab.api is not None
    vip = "198.18.100.33"
    lab.create_service("outage", [vip])
    first, second, _ = lab.ranked(vip)
    lab.expect_owner(vip, first)
    lab.api.outage(10)
    lab.stays(vip, first, seconds=3.0)  # VIPs keep answering from the last known view
    lab.cut(first)  # heartbeats do not need the API: the live speakers still fail over
    lab.expect_owner(vip, second, timeout=5)
    assert lab.api.faults.in_outage()
    assert all(lab.procs[n].poll() is None for n in lab.nodes if n != first)
    # once the API is back, the new owner's pending ServiceL2Status write goes through
    wait_for(lambda: not lab.api.faults.in_outage(), 10, "end of the outage")  # type: ignore[union-attr]
    wait_for(
        lambda: (lab.l2_status("outage") or {}).get("status", {}).get("node") == second,
        15,
        "ServiceL2Status written after the outage",
    )
    lab.stays(vip, second, seconds=0.5)


def test_forged_and_replayed_heartbeats_change_nothing(healed: SpeakerLab) -> None:
    lab = healed
    assert lab.seg is not None
    vip = "198.18.100.34"
    lab.create_service("forged", [vip])
    first, second, third = lab.ranked(vip)
    lab.expect_owner(vip, first)
    seg = lab.seg

    # 1. capture one genuine heartbeat of the owner, as received by a peer
    first_ip = seg[first].ipv4

    def capture() -> bytes:
        with open_raw("eth0") as sock:
            frames = collect(
                sock,
                lambda f: f[12:14] == b"\x08\x00" and socket.inet_ntoa(f[26:30]) == first_ip
                and f[23] == 17 and int.from_bytes(f[36:38], "big") == 7947,
                2.0,
                stop_after=1,
            )  # fmt: skip
        frame = frames[0]
        ihl = (frame[14] & 0x0F) * 4
        return frame[14 + ihl + 8 :]

    genuine = seg.call(second, capture)
    hb = decode(genuine, KEY)
    assert isinstance(hb, Heartbeat) and hb.node == first

    def blast(payloads: list[bytes], seconds: float) -> None:
        targets = [(seg[n].ipv4, 7947) for n in lab.nodes]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for p in payloads:
                    for t in targets:
                        s.sendto(p, t)
                time.sleep(0.01)

    # 2. a "leaving" heartbeat for the owner signed with the wrong key: the owner keeps its VIP
    wrong = encode(Heartbeat(first, hb.boot, hb.seq + 1000, PeerStatus.LEAVING), b"not-the-key" * 3)
    seg.call("client", blast, [wrong], 1.0)
    lab.stays(vip, first, seconds=1.0)

    # 3. the owner dies; replaying its old (genuine) heartbeat does not bring it back
    lab.cut(first)
    lab.expect_owner(vip, second, timeout=5)
    seg.call("client", blast, [genuine], 1.5)
    lab.stays(vip, second, seconds=0.5)
    assert "lbd_peers_alive 2.0" in lab.metrics(second)
    assert "lbd_peers_alive 2.0" in lab.metrics(third)


def test_second_host_claiming_an_owned_vip_is_detected(healed: SpeakerLab) -> None:
    lab = healed
    assert lab.seg is not None
    vip = "198.18.100.35"
    lab.create_service("conflict", [vip])
    owner = lab.ranked(vip)[0]
    lab.expect_owner(vip, owner)
    intruder = bytes.fromhex("02deadbeef01")
    frames = list(arp.gratuitous(arp.vip_key(vip), intruder)) * 3
    seg = lab.seg

    def intruder_claims() -> list[Any]:
        # the intruder keeps claiming (the owner ignores claims in its first second of owning:
        # that is the previous owner handing over, not a conflict)
        seg.call("client", send_frames, "eth0", frames, 100.0)
        return lab.events("VIPConflict", "conflict")

    [event] = wait_for(intruder_claims, 10, "Warning event")
    assert event.type == "Warning" and "02:de:ad:be:ef:01" in event.message
    assert f'lbd_vip_conflicts_total{{vip="{vip}"}}' in lab.metrics(owner)
    lab.seg.call("client", send_frames, "eth0", frames, 100.0)  # it goes on: still one event
    time_limit = time.monotonic() + 1.5
    while time.monotonic() < time_limit:
        assert len(lab.events("VIPConflict", "conflict")) == 1
        time.sleep(0.1)
    assert lab.who_answers(vip) == {owner}


def test_hand_back_moves_the_clients_neighbour_entry_and_is_no_conflict(
    healed: SpeakerLab,
) -> None:
    """The client's kernel ARP entry follows the VIP away and back, and stays with the returned
    owner (the previous owner does not pull it back by re-announcing while it yields); neither
    change of owner counts as an address conflict."""
    lab = healed
    seg = lab.seg
    assert seg is not None
    vip = "198.18.100.36"
    lab.create_service("handback", [vip])
    first, second, _ = lab.ranked(vip)
    lab.expect_owner(vip, first)

    def touch() -> None:  # make the client's kernel resolve the VIP (the datagram is dropped)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", (vip, 9))

    def client_entry() -> str:
        return seg.ip("client", "neigh", "show", vip)

    def mac(node: str) -> str:
        return ":".join(f"{b:02x}" for b in seg[node].mac)

    seg.call("client", touch)
    wait_for(lambda: mac(first) in client_entry(), 5, "client resolves the VIP")
    lab.cut(first)
    lab.expect_owner(vip, second, timeout=5)
    wait_for(lambda: mac(second) in client_entry(), 5, "client entry -> new owner")
    lab.restore(first)
    wait_for(lambda: mac(first) in client_entry(), 10, "client entry -> returned owner")
    back_at = time.monotonic()
    while time.monotonic() < back_at + 2.5:  # the returned owner's burst and the overlap
        assert mac(first) in client_entry(), client_entry()
        time.sleep(0.05)
    for node in (first, second):
        assert f'lbd_vip_conflicts_total{{vip="{vip}"}}' not in lab.metrics(node), node
    assert lab.events("VIPConflict", "handback") == []

"""Replayed and forged heartbeats in the speaker lab (issue 16), with a client asking who has the
VIP every 10 ms: exactly one MAC answers throughout.

The attack that split the cluster: capture one heartbeat of node n2, wait until n2 restarts, send
the capture again from anywhere on the segment. Receivers used to accept any boot they had not
retired and then drop every heartbeat of n2's real boot as a replay: n2 looked dead to its peers
while it saw them alive, so n2's VIPs were answered by n2 and by the next node in rank at once.

Here the replays come with n2's own source address (forging an IP source on a segment is
trivial), so they reach the boot-order rules rather than the source check; the forged heartbeat
of the last test is signed with the right key but sent from the client's own address. Three
``lbd speaker`` processes on a bridge (see ``test_speaker_lab.py``).
"""

from __future__ import annotations

import functools
import re
import signal
import socket
import threading
import time
from collections.abc import Callable

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from lbd.core.membership import Heartbeat, PeerStatus, decode, encode
from lbd.net.membership import new_boot
from tests.netns.l2client import ProbeResult, VipProber, collect, open_raw, send_frames
from tests.netns.test_speaker_lab import KEY, SpeakerLab, module_lab, wait_for

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

PORT = 7947
VICTIM = "n2"


lab = module_lab("spkr")


@pytest.fixture(scope="module")
def vip(lab: SpeakerLab) -> str:
    """A VIP the victim owns (ranked first), announced before any test starts."""
    vip = lab.vip_owned_by(VICTIM, start=40)
    lab.create_service("replay", [vip])
    lab.expect_owner(vip, VICTIM)
    return vip


def sees_all_alive(lab: SpeakerLab, node: str) -> bool:
    return "lbd_peers_alive 3.0" in lab.metrics(node)


def all_alive(lab: SpeakerLab) -> None:
    for n in lab.nodes:
        wait_for(functools.partial(sees_all_alive, lab, n), 15, f"{n} sees all alive")


def counter(lab: SpeakerLab, node: str, reason: str) -> float:
    m = re.search(
        rf'^lbd_heartbeats_dropped_total{{reason="{reason}"}} (\S+)$', lab.metrics(node), re.M
    )
    return float(m.group(1)) if m else 0.0


def heartbeats_of(lab: SpeakerLab, node: str, seconds: float, *, at: str = "n1") -> list[bytes]:
    """UDP payloads of ``node``'s heartbeats as ``at`` receives them during ``seconds``."""
    assert lab.seg is not None
    src = lab.seg[node].ipv4

    def is_heartbeat(f: bytes) -> bool:
        return (
            f[12:14] == b"\x08\x00"
            and f[23] == 17
            and socket.inet_ntoa(f[26:30]) == src
            and int.from_bytes(f[36:38], "big") == PORT
        )

    def sniff() -> list[bytes]:
        with open_raw("eth0") as sock:
            frames = collect(sock, is_heartbeat, seconds)
        return [f[14 + (f[14] & 0x0F) * 4 + 8 :] for f in frames]

    return lab.seg.call(at, sniff)


def restart(lab: SpeakerLab, node: str, sig: int = signal.SIGTERM) -> None:
    lab.kill(node, sig)
    lab.procs[node].wait(5)
    lab.start_speaker(node)
    wait_for(lambda: lab.ready(node), 30, f"speaker {node} ready again")


def replay_as(lab: SpeakerLab, node: str, payloads: list[bytes], seconds: float) -> int:
    """Send ``payloads`` to every other node, from ``node``'s address and port, for ``seconds``
    (every 10 ms); returns how many datagrams each receiver was sent."""
    seg = lab.seg
    assert seg is not None
    c, src = seg["client"], seg[node]
    frames = [
        bytes(
            Ether(dst=seg[n].mac, src=c.mac)
            / IP(src=src.ipv4, dst=seg[n].ipv4)
            / UDP(sport=PORT, dport=PORT)
            / p
        )
        for n in lab.nodes
        if n != node
        for p in payloads
    ]
    rounds = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        seg.call("client", send_frames, "eth0", frames)
        rounds += 1
        time.sleep(0.01)
    return rounds * len(payloads)


def probed(lab: SpeakerLab, vip: str, attack: Callable[[], object]) -> ProbeResult:
    """Run ``attack`` while the client probes ``vip`` every 10 ms (and 1 s longer: a peer that
    wrongly thought the victim dead would take over within ``--dead-after``)."""
    assert lab.seg is not None
    c = lab.seg["client"]
    with VipProber(c.ns, "eth0", c.mac, c.ipv4, vip, interval=0.01) as prober:
        time.sleep(0.3)
        attack()
        time.sleep(1.0)
    return prober.result


def assert_one_answering_mac(lab: SpeakerLab, result: ProbeResult, owner: str) -> None:
    assert lab.seg is not None
    macs = {lab.seg[n].mac: n for n in lab.nodes}
    seen = {macs.get(m, m.hex(":")) for m in result.macs()}
    assert seen == {owner}, f"answered by {seen} during the attack"
    # and the VIP kept answering: no silence a takeover (or a hand-back) would show
    assert result.longest_silence() < 0.3, result.longest_silence()
    assert len(result.replies) >= 0.9 * result.probes, (len(result.replies), result.probes)


def assert_still_alive_everywhere(lab: SpeakerLab) -> None:
    for n in lab.nodes:
        assert "lbd_peers_alive 3.0" in lab.metrics(n), n


def test_heartbeat_of_an_earlier_boot_replayed_after_one_restart(lab: SpeakerLab, vip: str) -> None:
    """The receivers restart too, so they never heard the captured boot: no list of boots seen
    can tell it is old (the old code took it for a new boot); only the boots' order can."""
    earlier = heartbeats_of(lab, VICTIM, 0.5)
    assert earlier and all(isinstance(decode(p, KEY), Heartbeat) for p in earlier)
    restart(lab, VICTIM)
    for receiver in ("n1", "n3"):
        restart(lab, receiver)
    lab.expect_owner(vip, VICTIM)
    all_alive(lab)
    before = {n: counter(lab, n, "OldBoot") for n in ("n1", "n3")}
    sent: list[int] = []
    result = probed(lab, vip, lambda: sent.append(replay_as(lab, VICTIM, earlier, 2.0)))
    assert_one_answering_mac(lab, result, VICTIM)
    assert_still_alive_everywhere(lab)
    for n, count in before.items():
        assert counter(lab, n, "OldBoot") - count >= 0.9 * sent[0], n


def test_heartbeat_of_an_earlier_boot_replayed_after_nine_restarts(
    lab: SpeakerLab, vip: str
) -> None:
    """Nine restarts pushed the first boot out of the receivers' list of 8 retired boots: the
    old code took it for a new boot."""
    earlier = heartbeats_of(lab, VICTIM, 0.5)
    boots = {decode(p, KEY).boot for p in earlier}  # type: ignore[union-attr]
    for i in range(9):
        restart(lab, VICTIM, signal.SIGKILL if i % 2 else signal.SIGTERM)
        # each boot is heard by its peers before the next restart (as the attack needs)
        boots |= {decode(p, KEY).boot for p in heartbeats_of(lab, VICTIM, 0.3)}  # type: ignore[union-attr]
    assert len(boots) == 10
    lab.expect_owner(vip, VICTIM, timeout=15)
    all_alive(lab)
    result = probed(lab, vip, lambda: replay_as(lab, VICTIM, earlier, 2.0))
    assert_one_answering_mac(lab, result, VICTIM)
    assert_still_alive_everywhere(lab)


def test_replayed_leaving_changes_nothing(lab: SpeakerLab, vip: str) -> None:
    captured: list[bytes] = []
    sniffer = threading.Thread(
        target=lambda: captured.extend(heartbeats_of(lab, VICTIM, 1.5)), daemon=True
    )
    sniffer.start()
    time.sleep(0.3)
    restart(lab, VICTIM)  # SIGTERM: it sends "leaving" before it goes
    sniffer.join()
    leaving = [p for p in captured if p[5] == PeerStatus.LEAVING]
    assert leaving, "no leaving heartbeat captured"
    lab.expect_owner(vip, VICTIM)
    all_alive(lab)
    result = probed(lab, vip, lambda: replay_as(lab, VICTIM, leaving + captured[:3], 2.0))
    assert_one_answering_mac(lab, result, VICTIM)
    assert_still_alive_everywhere(lab)


def test_right_key_from_the_wrong_address_changes_nothing(lab: SpeakerLab, vip: str) -> None:
    """Signed with the cluster's key, a newer boot of the victim, "leaving": it would move the
    VIP at once if it were believed. It comes from the client's address, not the victim's."""
    assert lab.seg is not None
    seg = lab.seg
    all_alive(lab)
    forged = [
        encode(Heartbeat(VICTIM, new_boot(), seq, PeerStatus.LEAVING), KEY) for seq in (1, 2, 3)
    ]
    before = {n: counter(lab, n, "WrongSource") for n in ("n1", "n3")}

    def send() -> None:
        def blast() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                end = time.monotonic() + 2.0
                while time.monotonic() < end:
                    for n in ("n1", "n3"):
                        for p in forged:
                            s.sendto(p, (seg[n].ipv4, PORT))
                    time.sleep(0.01)

        seg.call("client", blast)

    result = probed(lab, vip, send)
    assert_one_answering_mac(lab, result, VICTIM)
    assert_still_alive_everywhere(lab)
    for n, count in before.items():
        assert counter(lab, n, "WrongSource") - count >= 100, n

"""ARP codec and reply decisions, checked against scapy-built frames."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import ARP, Ether

from lbd.core import arp
from lbd.core.arp import DropReason

MY_MAC = bytes.fromhex("020000000001")
CLIENT_MAC = bytes.fromhex("020000000099")
VIP = "198.18.100.7"
OWNED = frozenset({arp.vip_key(VIP)})


def who_has(pdst: str = VIP, dst: str = "ff:ff:ff:ff:ff:ff", **kw: Any) -> bytes:
    fields: dict[str, Any] = {"op": 1, "hwsrc": "02:00:00:00:00:99", "psrc": "198.18.0.9"}
    fields.update(kw)
    return bytes(Ether(dst=dst, src="02:00:00:00:00:99") / ARP(pdst=pdst, **fields))


def test_reply_to_broadcast_request_as_scapy_reads_it() -> None:
    reply = arp.decide_reply(who_has(), MY_MAC, OWNED)
    assert isinstance(reply, bytes)
    pkt = Ether(reply)
    assert pkt.dst == "02:00:00:00:00:99" and pkt.src == "02:00:00:00:00:01"
    a = pkt[ARP]
    assert (a.op, a.hwsrc, a.psrc, a.hwdst, a.pdst) == (
        2,
        "02:00:00:00:00:01",
        VIP,
        "02:00:00:00:00:99",
        "198.18.0.9",
    )
    assert len(reply) == arp.MIN_FRAME


def test_reply_to_unicast_request_for_our_mac() -> None:
    assert isinstance(arp.decide_reply(who_has(dst="02:00:00:00:00:01"), MY_MAC, OWNED), bytes)


def test_probe_is_answered_to_defend_the_vip() -> None:
    assert isinstance(arp.decide_reply(who_has(psrc="0.0.0.0"), MY_MAC, OWNED), bytes)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        pytest.param(b"", DropReason.TOO_SHORT, id="empty"),
        pytest.param(who_has()[:41], DropReason.TOO_SHORT, id="truncated"),
        pytest.param(
            bytes(Ether(type=0x0800) / (b"\x00" * 50)), DropReason.NOT_ARP, id="IPv4 frame"
        ),
        pytest.param(
            bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(hwtype=6, hwlen=6, plen=4, pdst=VIP)),
            DropReason.UNSUPPORTED,
            id="not Ethernet hardware type",
        ),
        pytest.param(who_has(op=2), DropReason.NOT_REQUEST, id="a reply"),
        pytest.param(who_has(dst="02:00:00:00:00:55"), DropReason.NOT_FOR_US, id="other unicast"),
        pytest.param(who_has(pdst="198.18.100.8"), DropReason.NOT_OWNED, id="not our VIP"),
        pytest.param(who_has(psrc=VIP), DropReason.GRATUITOUS, id="gratuitous request"),
        pytest.param(who_has(hwsrc="02:00:00:00:00:01"), DropReason.FROM_SELF, id="our own"),
        # senders no host can be (RFC 826 / RFC 1812 3.3.2, RFC 5227 2.1.1, RFC 1122 3.2.1.3,
        # RFC 1112 4): the Ethernet source stays a valid unicast, as a bridge requires
        pytest.param(
            who_has(hwsrc="ff:ff:ff:ff:ff:ff"), DropReason.SENDER_MAC_BROADCAST, id="MAC bcast"
        ),
        pytest.param(
            who_has(hwsrc="01:00:5e:00:00:01"), DropReason.SENDER_MAC_MULTICAST, id="MAC mcast"
        ),
        pytest.param(
            who_has(hwsrc="33:33:00:00:00:01"), DropReason.SENDER_MAC_MULTICAST, id="MAC mcast6"
        ),
        pytest.param(who_has(hwsrc="00:00:00:00:00:00"), DropReason.SENDER_MAC_ZERO, id="MAC 0"),
        pytest.param(
            who_has(psrc="255.255.255.255"), DropReason.SENDER_IP_BROADCAST, id="IP bcast"
        ),
        pytest.param(who_has(psrc="224.0.0.1"), DropReason.SENDER_IP_MULTICAST, id="IP mcast"),
        pytest.param(
            who_has(psrc="239.255.255.250"), DropReason.SENDER_IP_MULTICAST, id="IP mcast top"
        ),
        pytest.param(who_has(psrc="127.0.0.1"), DropReason.SENDER_IP_LOOPBACK, id="IP lo"),
        pytest.param(who_has(psrc="127.254.0.9"), DropReason.SENDER_IP_LOOPBACK, id="IP lo/8"),
    ],
)
def test_drop_reasons(frame: bytes, reason: DropReason) -> None:
    assert arp.decide_reply(frame, MY_MAC, OWNED) is reason


@pytest.mark.parametrize(
    "psrc", ["0.0.0.0", "223.255.255.255", "128.0.0.1", "126.255.255.255", "240.0.0.1"]
)
def test_senders_next_to_the_invalid_ranges_are_answered(psrc: str) -> None:
    assert isinstance(arp.decide_reply(who_has(psrc=psrc), MY_MAC, OWNED), bytes)


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(sha=st.binary(min_size=6, max_size=6), spa=st.binary(min_size=4, max_size=4))
def test_a_reply_never_goes_to_a_group_mac_nor_vouches_for_a_martian(
    sha: bytes, spa: bytes
) -> None:
    frame = arp.request(src_mac=sha, src_ip=spa, target_ip=arp.vip_key(VIP))
    out = arp.decide_reply(frame, MY_MAC, OWNED)
    if isinstance(out, bytes):
        assert out[0] & 1 == 0 and out[0:6] != bytes(6)  # Ethernet destination: one station
        assert spa[0] != 127 and not 224 <= spa[0] < 240 and spa != b"\xff" * 4
    else:
        assert out in (
            DropReason.FROM_SELF,
            DropReason.GRATUITOUS,
            DropReason.SENDER_MAC_BROADCAST,
            DropReason.SENDER_MAC_MULTICAST,
            DropReason.SENDER_MAC_ZERO,
            DropReason.SENDER_IP_BROADCAST,
            DropReason.SENDER_IP_MULTICAST,
            DropReason.SENDER_IP_LOOPBACK,
        )


def test_parse_encode_round_trip_with_scapy() -> None:
    frame = who_has()
    pkt = arp.parse(frame)
    assert isinstance(pkt, arp.ArpPacket)
    assert pkt.target_address == VIP and pkt.sender_address == "198.18.0.9"
    assert pkt.op == arp.OP_REQUEST and pkt.sender_mac == CLIENT_MAC
    assert arp.encode(pkt)[:42] == frame[:42]


def test_request_builder_matches_scapy() -> None:
    built = arp.request(
        src_mac=CLIENT_MAC, src_ip=arp.vip_key("198.18.0.9"), target_ip=arp.vip_key(VIP)
    )
    assert built[:42] == who_has(hwdst="00:00:00:00:00:00")[:42]


def test_gratuitous_frames_in_both_forms() -> None:
    req, rep = (Ether(f) for f in arp.gratuitous(arp.vip_key(VIP), MY_MAC))
    for pkt, op in ((req, 1), (rep, 2)):
        assert pkt.dst == "ff:ff:ff:ff:ff:ff"
        assert pkt[ARP].op == op and pkt[ARP].psrc == VIP and pkt[ARP].pdst == VIP
        assert pkt[ARP].hwsrc == "02:00:00:00:00:01"
    # RFC 2002 4.6: a gratuitous reply names our MAC as target too (else Linux applies locktime)
    assert rep[ARP].hwdst == "02:00:00:00:00:01"


def test_conflict_is_another_mac_claiming_our_vip() -> None:
    macs = frozenset({MY_MAC})
    other = bytes(Ether() / ARP(op=2, hwsrc="02:00:00:00:00:77", psrc=VIP, pdst="198.18.0.9"))
    assert arp.claimed_by_other(other, macs, OWNED) == (
        arp.vip_key(VIP),
        bytes.fromhex("020000000077"),
    )
    ours = arp.gratuitous(arp.vip_key(VIP), MY_MAC)[0]
    assert arp.claimed_by_other(ours, macs, OWNED) is None
    assert arp.claimed_by_other(who_has(), macs, OWNED) is None  # a client asking claims nothing


def test_vip_key_names_bad_input() -> None:
    with pytest.raises(ValueError, match="not an IPv4 address"):
        arp.vip_key("2001:db8::1")


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(st.binary(max_size=128))
def test_random_bytes_never_raise(frame: bytes) -> None:
    out = arp.decide_reply(frame, MY_MAC, OWNED)
    assert isinstance(out, (bytes, DropReason))
    assert isinstance(arp.parse(frame), (arp.ArpPacket, DropReason))
    arp.claimed_by_other(frame, frozenset({MY_MAC}), OWNED)


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(st.binary(min_size=42, max_size=42), st.integers(0, 41), st.integers(0, 255))
def test_mutated_requests_never_raise(noise: bytes, pos: int, value: int) -> None:
    frame = bytearray(who_has())
    frame[pos] = value
    assert isinstance(arp.decide_reply(bytes(frame), MY_MAC, OWNED), (bytes, DropReason))

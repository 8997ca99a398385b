"""NDP codec and reply decisions, checked against scapy-built frames."""

from __future__ import annotations

from socket import AF_INET6

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import Ether
from scapy.pton_ntop import inet_ntop, inet_pton
from scapy.utils6 import in6_getnsma, in6_getnsmac

from lbd.core import ndp
from lbd.core.ndp import DropReason

MY_MAC = bytes.fromhex("020000000001")
VIP = "2001:db8::7"
OWNED = frozenset({ndp.vip_key(VIP)})
CLIENT = "2001:db8::99"
CLIENT_MAC = "02:00:00:00:00:99"
CLIENT_MAC_B = bytes.fromhex("020000000099")
OWNED_KEY = ndp.vip_key(VIP)


def ns(
    target: str = VIP,
    src: str = CLIENT,
    hlim: int = 255,
    code: int = 0,
    dst_mac: str | None = None,
    slla: bool = True,
    lladdr: str = CLIENT_MAC,
    eth_src: str = CLIENT_MAC,
) -> bytes:
    group = in6_getnsma(inet_pton(AF_INET6, target))
    dst_ip = inet_ntop(AF_INET6, group)
    eth_dst = dst_mac or in6_getnsmac(group)
    pkt = Ether(dst=eth_dst, src=eth_src) / IPv6(src=src, dst=dst_ip, hlim=hlim)
    pkt = pkt / ICMPv6ND_NS(tgt=target, code=code)
    if slla:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=lladdr)
    return bytes(pkt)


def test_solicitation_gets_a_solicited_override_na_scapy_validates() -> None:
    reply = ndp.decide_reply(ns(), MY_MAC, OWNED)
    assert isinstance(reply, bytes)
    pkt = Ether(reply)
    assert pkt.dst == CLIENT_MAC and pkt.src == "02:00:00:00:00:01"
    assert pkt[IPv6].src == VIP and pkt[IPv6].dst == CLIENT and pkt[IPv6].hlim == 255
    na = pkt[ICMPv6ND_NA]
    assert (na.tgt, na.S, na.O, na.R) == (VIP, 1, 1, 0)
    assert pkt[ICMPv6NDOptDstLLAddr].lladdr == "02:00:00:00:00:01"
    # scapy recomputes the checksum when the field is cleared: it must equal ours.
    recomputed = Ether(reply)
    del recomputed[ICMPv6ND_NA].cksum
    assert Ether(bytes(recomputed))[ICMPv6ND_NA].cksum == na.cksum


def test_dad_probe_is_defended_to_all_nodes() -> None:
    reply = ndp.decide_reply(ns(src="::", slla=False), MY_MAC, OWNED)
    assert isinstance(reply, bytes)
    pkt = Ether(reply)
    assert pkt.dst == "33:33:00:00:00:01" and pkt[IPv6].dst == "ff02::1"
    assert pkt[ICMPv6ND_NA].S == 0 and pkt[ICMPv6ND_NA].O == 1


def test_unicast_solicitation_without_option_replies_to_eth_source() -> None:
    reply = ndp.decide_reply(ns(dst_mac="02:00:00:00:00:01", slla=False), MY_MAC, OWNED)
    assert isinstance(reply, bytes) and Ether(reply).dst == CLIENT_MAC


def corrupt_checksum(frame: bytes) -> bytes:
    b = bytearray(frame)
    b[56] ^= 0xFF
    return bytes(b)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        pytest.param(b"", DropReason.TOO_SHORT, id="empty"),
        pytest.param(ns()[:70], DropReason.TOO_SHORT, id="truncated"),
        pytest.param(bytes(Ether() / (b"\x00" * 90)), DropReason.NOT_IPV6, id="not IPv6"),
        pytest.param(
            bytes(Ether(dst="33:33:ff:00:00:07") / IPv6(nh=17) / (b"\x00" * 40)),
            DropReason.NOT_ICMPV6,
            id="UDP",
        ),
        pytest.param(
            bytes(Ether(dst="33:33:00:00:00:01") / IPv6(hlim=255) / ICMPv6ND_NA(tgt=VIP)),
            DropReason.NOT_SOLICITATION,
            id="an advertisement",
        ),
        pytest.param(ns(hlim=64), DropReason.BAD_HOP_LIMIT, id="routed (hop limit 64)"),
        pytest.param(ns(code=1), DropReason.BAD_CODE, id="code 1"),
        pytest.param(corrupt_checksum(ns()), DropReason.BAD_CHECKSUM, id="bad checksum"),
        pytest.param(ns(src="::"), DropReason.BAD_DAD, id="DAD with source LLA option"),
        pytest.param(ns(dst_mac="02:00:00:00:00:55"), DropReason.NOT_FOR_US, id="other unicast"),
        pytest.param(ns(target="2001:db8::8"), DropReason.NOT_OWNED, id="not our VIP"),
        # solicitors no host can be (RFC 4291 2.7 and 2.5.3; RFC 4861 4.6.1 / 7.2.4, RFC 2464 6)
        pytest.param(ns(src="ff02::1"), DropReason.SOURCE_MULTICAST, id="source multicast"),
        pytest.param(ns(src="ff05::1:3"), DropReason.SOURCE_MULTICAST, id="source mcast site"),
        pytest.param(ns(src="::1"), DropReason.SOURCE_LOOPBACK, id="source loopback"),
        pytest.param(
            ns(lladdr="ff:ff:ff:ff:ff:ff"), DropReason.LINK_LAYER_BROADCAST, id="option bcast"
        ),
        pytest.param(
            ns(lladdr="33:33:00:00:00:01"), DropReason.LINK_LAYER_MULTICAST, id="option mcast"
        ),
        pytest.param(
            ns(lladdr="01:00:5e:7f:ff:fa"), DropReason.LINK_LAYER_MULTICAST, id="option mcast4"
        ),
        pytest.param(ns(lladdr="00:00:00:00:00:00"), DropReason.LINK_LAYER_ZERO, id="option 0"),
        pytest.param(
            ns(slla=False, eth_src="01:00:5e:00:00:fb"),
            DropReason.LINK_LAYER_MULTICAST,
            id="no option, Ethernet source multicast",
        ),
    ],
)
def test_drop_reasons(frame: bytes, reason: DropReason) -> None:
    assert ndp.decide_reply(frame, MY_MAC, OWNED) is reason


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(
    src=st.binary(min_size=16, max_size=16),
    lladdr=st.binary(min_size=6, max_size=6),
    with_option=st.booleans(),
)
def test_an_answer_never_goes_to_a_group_mac_nor_to_a_martian_source(
    src: bytes, lladdr: bytes, with_option: bool
) -> None:
    frame = bytearray(ndp.solicitation(src_mac=CLIENT_MAC_B, src_ip=src, target=OWNED_KEY))
    if with_option and src != ndp.UNSPECIFIED:
        frame[-6:] = lladdr  # the Source Link-Layer Address option comes last
        icmp = bytes(frame[54:56]) + b"\x00\x00" + bytes(frame[58:])
        frame[56:58] = ndp.checksum(src, bytes(frame[38:54]), icmp).to_bytes(2, "big")
    out = ndp.decide_reply(bytes(frame), MY_MAC, OWNED)
    if not isinstance(out, bytes):
        return
    if src == ndp.UNSPECIFIED:
        assert out[0:6] == ndp.ALL_NODES_MAC  # a DAD probe is answered to all-nodes
        return
    assert out[0] & 1 == 0 and out[0:6] != bytes(6)
    assert src[0] != 0xFF and src != ndp.LOOPBACK


def test_bad_option_length_is_dropped() -> None:
    frame = bytearray(ns())
    frame[-7] = 0  # option length 0 is invalid (RFC 4861 4.6)
    # keep the checksum right so the option check is what fails
    raw = bytes(frame)
    pkt = Ether(raw)
    del pkt[ICMPv6ND_NS].cksum
    assert ndp.parse(bytes(pkt)) is DropReason.BAD_OPTION


def test_parse_matches_scapy_fields() -> None:
    sol = ndp.parse(ns())
    assert isinstance(sol, ndp.Solicitation)
    assert sol.target == ndp.vip_key(VIP) and sol.source_lla == bytes.fromhex("020000000099")


def test_solicitation_builder_is_valid_for_scapy() -> None:
    frame = ndp.solicitation(
        src_mac=bytes.fromhex("020000000099"), src_ip=ndp.vip_key(CLIENT), target=ndp.vip_key(VIP)
    )
    assert frame == ns()
    assert isinstance(ndp.decide_reply(frame, MY_MAC, OWNED), bytes)


def test_unsolicited_na_and_solicited_node_group() -> None:
    pkt = Ether(ndp.unsolicited(ndp.vip_key(VIP), MY_MAC))
    assert pkt[IPv6].dst == "ff02::1" and pkt[ICMPv6ND_NA].tgt == VIP and pkt[ICMPv6ND_NA].S == 0
    assert ndp.solicited_node_mac(ndp.vip_key(VIP)) == bytes.fromhex("3333ff000007")


def test_conflict_is_an_na_for_our_vip_from_another_mac() -> None:
    other = bytes(ndp.unsolicited(ndp.vip_key(VIP), bytes.fromhex("020000000077")))
    macs = frozenset({MY_MAC})
    assert ndp.claimed_by_other(other, macs, OWNED) == (
        ndp.vip_key(VIP),
        bytes.fromhex("020000000077"),
    )
    assert ndp.claimed_by_other(ndp.unsolicited(ndp.vip_key(VIP), MY_MAC), macs, OWNED) is None


def test_vip_key_names_bad_input() -> None:
    with pytest.raises(ValueError, match="not an IPv6 address"):
        ndp.vip_key("198.18.0.1")


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(st.binary(max_size=160))
def test_random_bytes_never_raise(frame: bytes) -> None:
    assert isinstance(ndp.decide_reply(frame, MY_MAC, OWNED), (bytes, DropReason))
    assert isinstance(ndp.parse(frame), (ndp.Solicitation, DropReason))
    ndp.claimed_by_other(frame, frozenset({MY_MAC}), OWNED)


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(st.integers(0, 85), st.integers(0, 255), st.integers(0, 20))
def test_mutated_solicitations_never_raise(pos: int, value: int, cut: int) -> None:
    frame = bytearray(ns())
    frame[pos] = value
    data = bytes(frame[: len(frame) - cut])
    assert isinstance(ndp.decide_reply(data, MY_MAC, OWNED), (bytes, DropReason))

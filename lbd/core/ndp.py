"""NDP for IPv6 VIPs (RFC 4861): Neighbor Solicitation in, Neighbor Advertisement out.

Like :mod:`lbd.core.arp`: bytes in, decision out. :func:`decide_reply` validates a received
Ethernet frame the way RFC 4861 section 7.1.1 asks (hop limit 255, ICMP code 0, length, checksum,
target not multicast, DAD rules) and returns the NA frame to send or a :class:`DropReason`.

Only frames whose IPv6 next header is ICMPv6 are handled: a Neighbor Solicitation never carries
extension headers in practice, and skipping them keeps the parser small and safe.

The NA is sent from the VIP itself (it is "assigned" to the owner, RFC 4861 7.2.4 only requires
an address of the interface) with Solicited=1, Override=1, Router=0 and the Target Link-Layer
Address option. A DAD probe (source ::) is answered to all-nodes with Solicited=0 (7.2.4).

Frame layout: Ethernet (14) | IPv6 (40: ver/tc/flow 4, payload len 2, next header 1, hop limit 1,
src 16, dst 16) | ICMPv6 NS/NA (type 1, code 1, checksum 2, flags/reserved 4, target 16) | options.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

ETH_P_IPV6 = 0x86DD
_ETHERTYPE = b"\x86\xdd"
IPPROTO_ICMPV6 = 58
ICMP_NS = 135
ICMP_NA = 136
OPT_SOURCE_LLA = 1
OPT_TARGET_LLA = 2
HOP_LIMIT = 255  # RFC 4861: NDP messages must arrive with 255 (proves they were not routed)
UNSPECIFIED = b"\x00" * 16
ALL_NODES = ipaddress.IPv6Address("ff02::1").packed
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"
LOOPBACK = ipaddress.IPv6Address("::1").packed
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
_IPV6_OFF = 14
_ICMP_OFF = 54
_NS_MIN = 24  # ICMP header 4 + reserved 4 + target 16
_NA_FLAG_SOLICITED = 0x40
_NA_FLAG_OVERRIDE = 0x20


class DropReason(StrEnum):
    """Why a received frame gets no Neighbor Advertisement."""

    TOO_SHORT = "TooShort"
    NOT_IPV6 = "NotIpv6"
    NOT_ICMPV6 = "NotIcmpv6"
    NOT_SOLICITATION = "NotSolicitation"
    BAD_HOP_LIMIT = "BadHopLimit"
    BAD_LENGTH = "BadLength"
    BAD_CODE = "BadCode"
    BAD_CHECKSUM = "BadChecksum"
    BAD_OPTION = "BadOption"
    MULTICAST_TARGET = "MulticastTarget"
    BAD_DAD = "BadDad"  # source :: but not to the solicited-node group, or with a SLLA option
    NOT_FOR_US = "NotForUs"
    NOT_OWNED = "NotOwned"
    FROM_SELF = "FromSelf"
    # A solicitation no host on this link can send (see :func:`invalid_solicitor`).
    SOURCE_MULTICAST = "SourceMulticast"
    SOURCE_LOOPBACK = "SourceLoopback"
    LINK_LAYER_BROADCAST = "LinkLayerBroadcast"
    LINK_LAYER_MULTICAST = "LinkLayerMulticast"
    LINK_LAYER_ZERO = "LinkLayerZero"


@dataclass(frozen=True, slots=True)
class Solicitation:
    """A validated Neighbor Solicitation (addresses as raw bytes)."""

    eth_dst: bytes
    eth_src: bytes
    src_ip: bytes
    dst_ip: bytes
    target: bytes
    source_lla: bytes | None


def vip_key(vip: str) -> bytes:
    """The 16-byte form lookups use; raises ValueError naming the VIP if it is not IPv6."""
    try:
        return ipaddress.IPv6Address(vip).packed
    except ValueError as exc:
        raise ValueError(f"vip: {vip!r} is not an IPv6 address") from exc


def solicited_node(ip: bytes) -> bytes:
    """The solicited-node multicast address ff02::1:ffXX:XXXX of ``ip`` (RFC 4291 2.7.1)."""
    return b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + ip[13:16]


def solicited_node_mac(ip: bytes) -> bytes:
    """The Ethernet group address 33:33:ff:XX:XX:XX to join for ``ip`` (RFC 2464 7)."""
    return b"\x33\x33\xff" + ip[13:16]


def multicast_mac(group: bytes) -> bytes:
    return b"\x33\x33" + group[12:16]


def checksum(src: bytes, dst: bytes, icmp: bytes) -> int:
    """ICMPv6 checksum over the pseudo-header (RFC 8200 8.1) and the message (RFC 4443 2.3)."""
    data = src + dst + struct.pack("!I3xB", len(icmp), IPPROTO_ICMPV6) + icmp
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _options(data: bytes) -> dict[int, bytes] | None:
    """NDP options as {type: value}; None if any option is malformed (length 0 or overrun)."""
    opts: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            return None
        kind, units = data[i], data[i + 1]
        end = i + units * 8
        if units == 0 or end > len(data):
            return None
        opts.setdefault(kind, data[i + 2 : end])
        i = end
    return opts


def parse(frame: bytes) -> Solicitation | DropReason:
    """Validate ``frame`` as a Neighbor Solicitation (RFC 4861 7.1.1), or say why not."""
    if len(frame) < _ICMP_OFF + _NS_MIN:
        return DropReason.TOO_SHORT
    if frame[12:14] != _ETHERTYPE or frame[_IPV6_OFF] >> 4 != 6:
        return DropReason.NOT_IPV6
    if frame[20] != IPPROTO_ICMPV6:
        return DropReason.NOT_ICMPV6
    if frame[_ICMP_OFF] != ICMP_NS:
        return DropReason.NOT_SOLICITATION
    if frame[21] != HOP_LIMIT:
        return DropReason.BAD_HOP_LIMIT
    plen = int.from_bytes(frame[18:20], "big")
    if plen < _NS_MIN or _ICMP_OFF + plen > len(frame):
        return DropReason.BAD_LENGTH
    if frame[_ICMP_OFF + 1] != 0:
        return DropReason.BAD_CODE
    src, dst = frame[22:38], frame[38:54]
    icmp = frame[_ICMP_OFF : _ICMP_OFF + plen]
    if checksum(src, dst, icmp) != 0:
        return DropReason.BAD_CHECKSUM
    target = icmp[8:24]
    if target[0] == 0xFF:
        return DropReason.MULTICAST_TARGET
    opts = _options(icmp[24:])
    if opts is None:
        return DropReason.BAD_OPTION
    slla = opts.get(OPT_SOURCE_LLA)
    if slla is not None:
        if len(slla) < 6:
            return DropReason.BAD_OPTION
        slla = slla[:6]
    if src == UNSPECIFIED and (dst != solicited_node(target) or slla is not None):
        return DropReason.BAD_DAD
    return Solicitation(
        eth_dst=frame[0:6],
        eth_src=frame[6:12],
        src_ip=src,
        dst_ip=dst,
        target=target,
        source_lla=slla,
    )


def _icmpv6_packet(src_ip: bytes, dst_ip: bytes, icmp: bytes) -> bytes:
    """The IPv6 packet carrying ``icmp`` (its checksum field zero) with the checksum filled in.

    Hop limit 255: RFC 4861 7.1.2 makes receivers drop neighbour discovery with any other."""
    csum = checksum(src_ip, dst_ip, icmp)
    icmp = icmp[:2] + csum.to_bytes(2, "big") + icmp[4:]
    header = (
        b"\x60\x00\x00\x00"
        + len(icmp).to_bytes(2, "big")
        + bytes([IPPROTO_ICMPV6, HOP_LIMIT])
        + src_ip
        + dst_ip
    )
    return header + icmp


def advertisement(
    *, mac: bytes, target: bytes, dst_ip: bytes, dst_mac: bytes, solicited: bool
) -> bytes:
    """A Neighbor Advertisement for ``target`` at ``mac`` (Override set, Router clear)."""
    flags = _NA_FLAG_OVERRIDE | (_NA_FLAG_SOLICITED if solicited else 0)
    body = bytes([flags, 0, 0, 0]) + target + bytes([OPT_TARGET_LLA, 1]) + mac
    packet = _icmpv6_packet(target, dst_ip, bytes([ICMP_NA, 0, 0, 0]) + body)
    return dst_mac + mac + _ETHERTYPE + packet


def unsolicited(vip: bytes, mac: bytes) -> bytes:
    """An unsolicited NA to all-nodes, the IPv6 counterpart of gratuitous ARP (RFC 4861 7.2.6)."""
    return advertisement(
        mac=mac, target=vip, dst_ip=ALL_NODES, dst_mac=ALL_NODES_MAC, solicited=False
    )


def invalid_solicitor(src_ip: bytes, reply_mac: bytes | None) -> DropReason | None:
    """Why a solicitation's IPv6 source, or the link-layer address the answer would go to (its
    Source Link-Layer Address option, else the Ethernet source), is not one a host can have.

    - Source multicast: RFC 4291 section 2.7, "Multicast addresses must not be used as source
      addresses in IPv6 packets".
    - Source ::1: RFC 4291 section 2.5.3, the loopback address "must not be used as the source
      address in IPv6 packets that are sent outside of a single node".
    - Link-layer address broadcast, multicast (the I/G bit, IEEE 802 clause 8.2) or all zeroes:
      the option carries the sender's own interface address (RFC 4861 section 4.6.1, RFC 2464
      section 6), and the solicited answer is unicast to it (RFC 4861 section 7.2.4); a group
      address would make it a multicast to every member, the IPv6 twin of RFC 1812 section
      3.3.2's rule for ARP.

    ``reply_mac`` is None for a DAD probe (source ::): its answer goes to all-nodes.
    """
    if src_ip[0] == 0xFF:
        return DropReason.SOURCE_MULTICAST
    if src_ip == LOOPBACK:
        return DropReason.SOURCE_LOOPBACK
    if reply_mac is None:
        return None
    if reply_mac[0] & 1:
        return (
            DropReason.LINK_LAYER_BROADCAST
            if reply_mac == BROADCAST_MAC
            else DropReason.LINK_LAYER_MULTICAST
        )
    if reply_mac == ZERO_MAC:
        return DropReason.LINK_LAYER_ZERO
    return None


def decide_reply(frame: bytes, my_mac: bytes, owned: Collection[bytes]) -> bytes | DropReason:
    """The NA to send for ``frame`` received on an interface with ``my_mac``, or why not.

    Cheap checks (ethertype, ICMP type, target ownership) run before the checksum so that the
    flood of IPv6 traffic that is not for us costs little.
    """
    if len(frame) < _ICMP_OFF + _NS_MIN:
        return DropReason.TOO_SHORT
    if frame[12:14] != _ETHERTYPE:
        return DropReason.NOT_IPV6
    if frame[20] != IPPROTO_ICMPV6:
        return DropReason.NOT_ICMPV6
    if frame[_ICMP_OFF] != ICMP_NS:
        return DropReason.NOT_SOLICITATION
    dst_mac = frame[0:6]
    # Solicitations come to the solicited-node group (33:33:ff:..) or, to refresh, unicast to us.
    if dst_mac != my_mac and dst_mac[:2] != b"\x33\x33":
        return DropReason.NOT_FOR_US
    if frame[_ICMP_OFF + 8 : _ICMP_OFF + 24] not in owned:
        return DropReason.NOT_OWNED
    ns = parse(frame)
    if isinstance(ns, DropReason):
        return ns
    if ns.eth_src == my_mac:
        return DropReason.FROM_SELF
    dad = ns.src_ip == UNSPECIFIED
    reply_mac = None if dad else ns.source_lla if ns.source_lla is not None else ns.eth_src
    invalid = invalid_solicitor(ns.src_ip, reply_mac)
    if invalid is not None:
        return invalid
    if reply_mac is None:
        # DAD probe for our VIP: defend it to all-nodes, not solicited (RFC 4861 7.2.4).
        return unsolicited(ns.target, my_mac)
    return advertisement(
        mac=my_mac, target=ns.target, dst_ip=ns.src_ip, dst_mac=reply_mac, solicited=True
    )


def solicitation(
    *, src_mac: bytes, src_ip: bytes, target: bytes, dst_mac: bytes | None = None
) -> bytes:
    """A Neighbor Solicitation for ``target`` (to its solicited-node group unless ``dst_mac``)."""
    dst_ip = solicited_node(target)
    icmp = bytes([ICMP_NS, 0, 0, 0, 0, 0, 0, 0]) + target
    if src_ip != UNSPECIFIED:
        icmp += bytes([OPT_SOURCE_LLA, 1]) + src_mac
    eth_dst = dst_mac if dst_mac is not None else solicited_node_mac(target)
    return eth_dst + src_mac + _ETHERTYPE + _icmpv6_packet(src_ip, dst_ip, icmp)


def claimed_by_other(
    frame: bytes, my_macs: Collection[bytes], owned: Collection[bytes]
) -> tuple[bytes, bytes] | None:
    """(vip, mac) if ``frame`` is a Neighbor Advertisement for an owned VIP from another MAC."""
    if (
        len(frame) < _ICMP_OFF + _NS_MIN
        or frame[12:14] != _ETHERTYPE
        or frame[20] != IPPROTO_ICMPV6
        or frame[_ICMP_OFF] != ICMP_NA
    ):
        return None
    target = frame[_ICMP_OFF + 8 : _ICMP_OFF + 24]
    if target not in owned:
        return None
    plen = int.from_bytes(frame[18:20], "big")
    opts = _options(frame[_ICMP_OFF + 24 : _ICMP_OFF + plen]) or {}
    tlla = opts.get(OPT_TARGET_LLA)
    mac = tlla[:6] if tlla is not None and len(tlla) >= 6 else frame[6:12]
    if mac in my_macs:
        return None
    return target, mac

"""ARP for IPv4 VIPs (RFC 826): parse requests, decide, build replies and gratuitous frames.

Bytes in, decision out: :func:`decide_reply` takes one received Ethernet frame and returns either
the reply frame to send or a :class:`DropReason` (every "no" is a named value that can be counted
and tested, as in MetalLB's ``processRequest``). The socket lives in ``lbd.net``.

This is the responder's hot path, so it works on ``bytes`` slices against precomputed constants
and looks VIPs up by their 4-byte packed form (:func:`vip_key`); no object is built per frame
unless a reply is due. Measured cost: a few microseconds per frame (see tests/bench).

Frame layout (Ethernet II + ARP for Ethernet/IPv4, RFC 826)::

    0  dst MAC(6)  6 src MAC(6)  12 ethertype 0x0806
    14 htype=1(2) 16 ptype=0x0800(2) 18 hlen=6 19 plen=4 20 op(2)
    22 sha(6) 28 spa(4) 32 tha(6) 38 tpa(4)  -> 42 bytes, padded to 60 on the wire
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
_ETHERTYPE = b"\x08\x06"
# htype Ethernet (1), ptype IPv4 (0x0800), hlen 6, plen 4: the only ARP flavour lbd speaks.
_HEADER = b"\x00\x01\x08\x00\x06\x04"
OP_REQUEST = 1
OP_REPLY = 2
_OP_REQUEST = b"\x00\x01"
_OP_REPLY = b"\x00\x02"
ARP_LEN = 42
# 802.3 minimum frame (without FCS) is 60 bytes; NICs pad for us, veth does not, so pad ourselves.
MIN_FRAME = 60
_PAD = b"\x00" * (MIN_FRAME - ARP_LEN)


class DropReason(StrEnum):
    """Why a received frame gets no ARP reply."""

    TOO_SHORT = "TooShort"
    NOT_ARP = "NotArp"
    UNSUPPORTED = "Unsupported"  # not Ethernet/IPv4 ARP
    NOT_REQUEST = "NotRequest"
    NOT_FOR_US = "NotForUs"  # unicast to another MAC (docs/SPEAKER.md: broadcast or our MAC only)
    NOT_OWNED = "NotOwned"
    GRATUITOUS = "Gratuitous"  # someone announcing the target address itself
    FROM_SELF = "FromSelf"
    # A sender that cannot be a host on this link (see :func:`invalid_sender`): answering would
    # send the reply to a group address or vouch for an address that never leaves a host.
    SENDER_MAC_BROADCAST = "SenderMacBroadcast"
    SENDER_MAC_MULTICAST = "SenderMacMulticast"
    SENDER_MAC_ZERO = "SenderMacZero"
    SENDER_IP_BROADCAST = "SenderIpBroadcast"
    SENDER_IP_MULTICAST = "SenderIpMulticast"
    SENDER_IP_LOOPBACK = "SenderIpLoopback"


@dataclass(frozen=True, slots=True)
class ArpPacket:
    """A decoded Ethernet/IPv4 ARP frame; addresses stay raw bytes (MACs 6, IPs 4)."""

    eth_dst: bytes
    eth_src: bytes
    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes

    @property
    def sender_address(self) -> str:
        return str(ipaddress.IPv4Address(self.sender_ip))

    @property
    def target_address(self) -> str:
        return str(ipaddress.IPv4Address(self.target_ip))


def vip_key(vip: str) -> bytes:
    """The 4-byte form lookups use; raises ValueError naming the VIP if it is not IPv4."""
    try:
        return ipaddress.IPv4Address(vip).packed
    except ValueError as exc:
        raise ValueError(f"vip: {vip!r} is not an IPv4 address") from exc


def _not_arp(frame: bytes) -> DropReason | None:
    """Why ``frame`` is not an Ethernet/IPv4 ARP frame, or None if it is one."""
    if len(frame) < ARP_LEN:
        return DropReason.TOO_SHORT
    if frame[12:14] != _ETHERTYPE:
        return DropReason.NOT_ARP
    if frame[14:20] != _HEADER:
        return DropReason.UNSUPPORTED
    return None


def parse(frame: bytes) -> ArpPacket | DropReason:
    """Decode an Ethernet/IPv4 ARP frame, or say why it is not one."""
    problem = _not_arp(frame)
    if problem is not None:
        return problem
    return ArpPacket(
        eth_dst=frame[0:6],
        eth_src=frame[6:12],
        op=int.from_bytes(frame[20:22], "big"),
        sender_mac=frame[22:28],
        sender_ip=frame[28:32],
        target_mac=frame[32:38],
        target_ip=frame[38:42],
    )


def encode(pkt: ArpPacket) -> bytes:
    """Serialise ``pkt`` (padded to the Ethernet minimum)."""
    return (
        pkt.eth_dst
        + pkt.eth_src
        + _ETHERTYPE
        + _HEADER
        + pkt.op.to_bytes(2, "big")
        + pkt.sender_mac
        + pkt.sender_ip
        + pkt.target_mac
        + pkt.target_ip
        + _PAD
    )


_LIMITED_BROADCAST = b"\xff\xff\xff\xff"


def invalid_sender(sha: bytes, spa: bytes) -> DropReason | None:
    """Why a request's sender hardware/protocol address pair is not one a host can have.

    - Sender MAC broadcast or multicast (the I/G bit of the first octet, IEEE 802 clause 8.2):
      a group address names no station. RFC 826 has the receiver reply to ``ar$sha`` (and merge
      the pair into its table), so the reply would go to every station of the group; RFC 1812
      section 3.3.2: "A router MUST not believe any ARP reply that claims that the Link Layer
      address of another host or router is a broadcast or multicast address".
    - Sender MAC 00:00:00:00:00:00: no interface has it (RFC 5227 section 2.1.1 uses zeroes only
      for the *target* hardware address of a probe).
    - Sender IP 255.255.255.255 (RFC 1122 section 3.2.1.3 (c): "MUST NOT be used as a source
      address"), 224.0.0.0/4 (RFC 1112 section 4: a host group address "must never be placed in
      the source address field"), 127.0.0.0/8 (RFC 1122 section 3.2.1.3 (g): "MUST NOT appear
      outside a host").

    Sender IP 0.0.0.0 is an ARP probe (RFC 5227 section 2.1.1) and stays valid: answering it is
    how the owner defends its address.
    """
    if sha[0] & 1:
        return (
            DropReason.SENDER_MAC_BROADCAST if sha == BROADCAST else DropReason.SENDER_MAC_MULTICAST
        )
    if sha == ZERO_MAC:
        return DropReason.SENDER_MAC_ZERO
    first = spa[0]
    if first == 127:
        return DropReason.SENDER_IP_LOOPBACK
    if 224 <= first < 240:
        return DropReason.SENDER_IP_MULTICAST
    if spa == _LIMITED_BROADCAST:
        return DropReason.SENDER_IP_BROADCAST
    return None


def decide_reply(frame: bytes, my_mac: bytes, owned: Collection[bytes]) -> bytes | DropReason:
    """The reply to send for ``frame`` received on an interface with ``my_mac``, or why not.

    ``owned`` holds the packed IPv4 VIPs (:func:`vip_key`) this interface answers for. ARP probes
    (RFC 5227, sender IP 0.0.0.0) are answered: that is how the owner defends its address.
    Requests from a sender no host can be are not (:func:`invalid_sender`).
    """
    problem = _not_arp(frame)
    if problem is not None:
        return problem
    if frame[20:22] != _OP_REQUEST:
        return DropReason.NOT_REQUEST
    dst = frame[0:6]
    if dst not in (BROADCAST, my_mac):
        return DropReason.NOT_FOR_US
    tpa = frame[38:42]
    if tpa not in owned:
        return DropReason.NOT_OWNED
    sha = frame[22:28]
    if sha == my_mac:
        return DropReason.FROM_SELF
    spa = frame[28:32]
    if spa == tpa:
        return DropReason.GRATUITOUS
    invalid = invalid_sender(sha, spa)
    if invalid is not None:
        return invalid
    # RFC 826: swap sender/target, fill in our hardware address, op = reply; unicast back.
    return sha + my_mac + _ETHERTYPE + _HEADER + _OP_REPLY + my_mac + tpa + sha + spa + _PAD


def claimed_by_other(
    frame: bytes, my_macs: Collection[bytes], owned: Collection[bytes]
) -> tuple[bytes, bytes] | None:
    """(vip, mac) if ``frame`` is another host claiming one of our VIPs, else None.

    A claim is any ARP frame (reply, or request in gratuitous/announce form) whose *sender* IP is
    an owned VIP and whose sender MAC is not ours. Probes (sender IP 0.0.0.0) claim nothing.
    """
    if _not_arp(frame) is not None:
        return None
    spa = frame[28:32]
    if spa not in owned:
        return None
    sha = frame[22:28]
    if sha in my_macs:
        return None
    return spa, sha


def gratuitous(vip: bytes, mac: bytes) -> tuple[bytes, bytes]:
    """Gratuitous ARP in both forms (request and reply), broadcast, sender = target = ``vip``.

    Both forms because implementations differ in which one updates an existing cache entry
    (RFC 5227 section 3 recommends the request form; many routers only act on replies).
    The reply form's target hardware address is our own MAC, as RFC 2002 section 4.6 defines a
    gratuitous reply: Linux only treats a reply with target MAC == sender MAC as gratuitous, and
    only a gratuitous frame overrides an entry changed less than ``locktime`` (1 s) ago - with
    a broadcast target the reply form was ignored right after the previous owner's last answer.
    """
    request = BROADCAST + mac + _ETHERTYPE + _HEADER + _OP_REQUEST + mac + vip + ZERO_MAC + vip
    reply = BROADCAST + mac + _ETHERTYPE + _HEADER + _OP_REPLY + mac + vip + mac + vip
    return request + _PAD, reply + _PAD


def request(
    *, src_mac: bytes, src_ip: bytes, target_ip: bytes, dst_mac: bytes = BROADCAST
) -> bytes:
    """An ARP request (who-has ``target_ip``); used by tests, benchmarks and the lab client."""
    return (
        dst_mac
        + src_mac
        + _ETHERTYPE
        + _HEADER
        + _OP_REQUEST
        + src_mac
        + src_ip
        + ZERO_MAC
        + target_ip
        + _PAD
    )

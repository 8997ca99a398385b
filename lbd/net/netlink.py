"""A minimal rtnetlink client: dump links and addresses (RTM_GETLINK / RTM_GETADDR).

Why not pyroute2 here: the link monitor is imported by the speaker wiring, and the layering
contract keeps pyroute2 behind ``lbd.net`` *including indirect imports*; the two dumps the
speaker needs are ~100 lines of ``struct`` (rtnetlink(7), netlink(7)), with no event loop or
thread of their own, which also keeps the idle speaker cheap. The lab keeps using pyroute2 for
building topologies.

Messages: ``nlmsghdr`` (len u32, type u16, flags u16, seq u32, pid u32), then ``ifinfomsg``
(family u8, pad u8, type u16, index i32, flags u32, change u32) or ``ifaddrmsg`` (family u8,
prefixlen u8, flags u8, scope u8, index u32), then attributes (len u16, type u16, value, padded
to 4 bytes).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_ROUTE = 0
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTA = struct.Struct("=HH")
_seq = itertools.count(1)


class NetlinkError(OSError):
    pass


@dataclass(frozen=True)
class RawLink:
    index: int
    name: str
    flags: int
    mac: str
    master: int | None
    kind: str | None


@dataclass(frozen=True)
class RawAddress:
    index: int
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _align(n: int) -> int:
    return (n + 3) & ~3


def attributes(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Parse a run of rtattrs into {type: value} (first occurrence wins; malformed ends it)."""
    out: dict[int, bytes] = {}
    while offset + _RTA.size <= len(data):
        length, kind = _RTA.unpack_from(data, offset)
        if length < _RTA.size or offset + length > len(data):
            break
        out.setdefault(kind & 0x3FFF, data[offset + _RTA.size : offset + length])
        offset += _align(length)
    return out


def _dump(msg_type: int, body: bytes) -> Iterator[tuple[int, bytes]]:
    """Send one dump request; yield (type, payload) of every answer message."""
    seq = next(_seq)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        request = _HDR.pack(_HDR.size + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        sock.sendto(request + body, (0, 0))
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, kind, _flags, mseq, _pid = _HDR.unpack_from(data, offset)
                if length < _HDR.size:
                    return
                payload = data[offset + _HDR.size : offset + length]
                offset += _align(length)
                if mseq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload)[0]
                    if err:
                        raise NetlinkError(err, os.strerror(err))
                    return
                yield kind, payload


def _mac(raw: bytes | None) -> str:
    return ":".join(f"{b:02x}" for b in raw) if raw else ""


def dump_links() -> list[RawLink]:
    links: list[RawLink] = []
    for kind, payload in _dump(RTM_GETLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
        if kind != RTM_NEWLINK or len(payload) < _IFINFO.size:
            continue
        _family, _type, index, flags, _change = _IFINFO.unpack_from(payload)
        attrs = attributes(payload, _IFINFO.size)
        name = attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace")
        master = attrs.get(IFLA_MASTER)
        info = attributes(attrs[IFLA_LINKINFO]) if IFLA_LINKINFO in attrs else {}
        link_kind = info.get(IFLA_INFO_KIND)
        links.append(
            RawLink(
                index=index,
                name=name,
                flags=flags,
                mac=_mac(attrs.get(IFLA_ADDRESS)),
                master=struct.unpack("=I", master)[0] if master and len(master) == 4 else None,
                kind=link_kind.rstrip(b"\0").decode() if link_kind else None,
            )
        )
    return links


def dump_addresses() -> list[RawAddress]:
    out: list[RawAddress] = []
    for kind, payload in _dump(RTM_GETADDR, _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
        if kind != RTM_NEWADDR or len(payload) < _IFADDR.size:
            continue
        family, prefixlen, _flags, _scope, index = _IFADDR.unpack_from(payload)
        attrs = attributes(payload, _IFADDR.size)
        # IFA_LOCAL is the interface's own address on point-to-point links; prefer it.
        raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
        if raw is None or family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            ip = ipaddress.ip_address(raw)
            iface = ipaddress.ip_interface(f"{ip}/{prefixlen}")
        except ValueError:
            continue
        out.append(RawAddress(index, iface))
    return out

"""A tiny raw-socket L2 client for tests: ask who has an address, sniff, inject frames.

Call these inside a namespace (``Segment.call``): they open their own AF_PACKET socket there.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterable

from lbd.core import arp, ndp

ETH_P_ALL = 0x0003


def open_raw(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, ETH_P_ALL))
    return sock


def collect(
    sock: socket.socket, match: Callable[[bytes], bool], timeout: float, stop_after: int = 0
) -> list[bytes]:
    """Frames matching ``match`` until ``timeout`` (or ``stop_after`` matches, if > 0)."""
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        frame, addr = sock.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        if match(frame):
            out.append(frame)
            if stop_after and len(out) >= stop_after:
                break
    return out


def arp_ask(
    ifname: str, src_mac: bytes, src_ip: str, target: str, timeout: float = 0.5
) -> list[bytes]:
    """Broadcast who-has ``target``; the MACs of every reply received within ``timeout``."""
    tip, sip = arp.vip_key(target), arp.vip_key(src_ip)

    def is_reply(f: bytes) -> bool:
        p = arp.parse(f)
        return (
            isinstance(p, arp.ArpPacket)
            and p.op == arp.OP_REPLY
            and p.sender_ip == tip
            and p.target_ip == sip
        )

    with open_raw(ifname) as sock:
        sock.send(arp.request(src_mac=src_mac, src_ip=sip, target_ip=tip))
        return [arp.parse(f).sender_mac for f in collect(sock, is_reply, timeout)]  # type: ignore[union-attr]


def ndp_ask(
    ifname: str, src_mac: bytes, src_ip: str, target: str, timeout: float = 0.5
) -> list[bytes]:
    """Send a Neighbor Solicitation; the Target Link-Layer Addresses of the NAs received."""
    tgt = ndp.vip_key(target)

    def is_na(f: bytes) -> bool:
        return (
            len(f) >= 86
            and f[12:14] == b"\x86\xdd"
            and f[20] == 58
            and f[54] == ndp.ICMP_NA
            and f[62:78] == tgt
        )

    with open_raw(ifname) as sock:
        sock.send(ndp.solicitation(src_mac=src_mac, src_ip=ndp.vip_key(src_ip), target=tgt))
        return [f[80:86] for f in collect(sock, is_na, timeout)]


def send_frames(ifname: str, frames: Iterable[bytes], rate: float = 0.0) -> int:
    """Send ``frames``; paced to ``rate`` frames/s when > 0 (a veth backlog holds ~1000)."""
    n = 0
    start = time.monotonic()
    with open_raw(ifname) as sock:
        for f in frames:
            if rate > 0:
                while time.monotonic() - start < n / rate:
                    pass
            try:
                sock.send(f)
                n += 1
            except OSError:
                pass
    return n

"""A tiny raw-socket L2 client for tests: ask who has an address, sniff, inject frames, and probe
a VIP every 10 ms in the background (:class:`VipProber`).

Call these inside a namespace (``Segment.call``): they open their own AF_PACKET socket there.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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


@dataclass
class ProbeResult:
    """What a :class:`VipProber` saw: probes sent and every reply (monotonic time, MAC)."""

    probes: int
    replies: list[tuple[float, bytes]]
    started: float
    stopped: float

    def macs(self) -> set[bytes]:
        return {mac for _t, mac in self.replies}

    def longest_silence(self) -> float:
        """The longest time without any reply (from the start to the end of probing)."""
        times = [self.started, *(t for t, _m in self.replies), self.stopped]
        return max(b - a for a, b in itertools.pairwise(times))


class VipProber:
    """A client that asks who has ``vip`` every ``interval`` seconds from namespace ``ns``
    (ARP, or NDP for an IPv6 VIP) and records every answer, on its own thread."""

    def __init__(
        self, ns: str, ifname: str, src_mac: bytes, src_ip: str, vip: str, interval: float = 0.01
    ) -> None:
        self.ns = ns
        self.ifname, self.src_mac, self.src_ip, self.vip = ifname, src_mac, src_ip, vip
        self.interval = interval
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._result: ProbeResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"prober-{vip}", daemon=True)

    def __enter__(self) -> VipProber:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("prober did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def result(self) -> ProbeResult:
        if self._error is not None:
            raise self._error
        assert self._result is not None, "probing still running"
        return self._result

    def _request(self) -> tuple[bytes, Callable[[bytes], bytes | None]]:
        if ":" in self.vip:
            tgt = ndp.vip_key(self.vip)
            frame = ndp.solicitation(
                src_mac=self.src_mac, src_ip=ndp.vip_key(self.src_ip), target=tgt
            )

            def na_mac(f: bytes) -> bytes | None:
                ok = len(f) >= 86 and f[12:14] == b"\x86\xdd" and f[20] == 58
                return f[80:86] if ok and f[54] == ndp.ICMP_NA and f[62:78] == tgt else None

            return frame, na_mac
        tip, sip = arp.vip_key(self.vip), arp.vip_key(self.src_ip)
        frame = arp.request(src_mac=self.src_mac, src_ip=sip, target_ip=tip)

        def arp_mac(f: bytes) -> bytes | None:
            p = arp.parse(f)
            if isinstance(p, arp.ArpPacket) and p.op == arp.OP_REPLY and p.sender_ip == tip:
                return p.sender_mac if p.target_ip == sip else None
            return None

        return frame, arp_mac

    def _run(self) -> None:
        from tests.netns.conftest import enter_netns

        try:
            enter_netns(self.ns)
            frame, answer = self._request()
            sock = open_raw(self.ifname)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        replies: list[tuple[float, bytes]] = []
        probes = 0
        with sock:
            sock.setblocking(False)
            started = time.monotonic()
            self._ready.set()
            next_probe = started
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_probe:
                    with contextlib.suppress(OSError):
                        sock.send(frame)
                        probes += 1
                    next_probe += self.interval
                    continue
                ready, _, _ = select.select([sock], [], [], next_probe - now)
                while ready:
                    try:
                        f, addr = sock.recvfrom(2048)
                    except BlockingIOError:
                        break
                    if addr[2] == socket.PACKET_OUTGOING:
                        continue
                    mac = answer(f)
                    if mac is not None:
                        replies.append((time.monotonic(), mac))
            self._result = ProbeResult(probes, replies, started, time.monotonic())

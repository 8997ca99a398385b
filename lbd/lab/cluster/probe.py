"""Client-side probes: what the lab's external client sees.

Every socket here is created inside the client's namespace (see :func:`.netns.call_in_netns`) and
then used from ordinary threads of the calling process, so the demo, the tests and the
benchmark need no helper process in the client namespace.

- :func:`arp_who_has` sends one ARP request and returns every MAC that answered (the demo shows
  which MAC answers; a test asserts that exactly one does).
- :func:`ping` sends an ICMP echo and waits for the answer.
- :func:`udp_ask` asks the echo service which node answers on a VIP.
- :class:`UdpProber` sends a numbered UDP request every ``interval`` to a VIP and records, per
  request, which node answered; :func:`longest_outage` turns that record into the
  client-observed interruption (the measure docs/SPEAKER.md's failover targets are stated in).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass

from lbd.core import arp
from lbd.lab.cluster.netns import call_in_netns
from lbd.runtime.clock import Clock, MonotonicClock

ECHO_PORT = 9000


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def arp_request_frame(src_mac: str, src_ip: str, target_ip: str) -> bytes:
    """A broadcast ARP request (RFC 826): who has ``target_ip``? tell ``src_ip``."""
    return arp.request(
        src_mac=_mac_bytes(src_mac),
        src_ip=ipaddress.IPv4Address(src_ip).packed,
        target_ip=ipaddress.IPv4Address(target_ip).packed,
    )


def parse_arp_reply(frame: bytes, target_ip: str) -> str | None:
    """The sender MAC if ``frame`` is an ARP reply from ``target_ip``, else None."""
    pkt = arp.parse(frame)
    if isinstance(pkt, arp.DropReason) or pkt.op != arp.OP_REPLY:
        return None
    if pkt.sender_ip != ipaddress.IPv4Address(target_ip).packed:
        return None
    return pkt.sender_mac.hex(":")


def arp_who_has(
    netns: str, ifname: str, src_mac: str, src_ip: str, target_ip: str, *, wait: float = 0.3
) -> list[str]:
    """Broadcast an ARP request for ``target_ip`` and return the MACs that answered in ``wait``."""

    def open_socket() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(arp.ETH_P_ARP))
        sock.bind((ifname, arp.ETH_P_ARP))
        return sock

    sock = call_in_netns(netns, open_socket)
    answers: list[str] = []
    with sock:
        sock.send(arp_request_frame(src_mac, src_ip, target_ip))
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            mac = parse_arp_reply(sock.recv(2048), target_ip)
            if mac is not None and mac not in answers:
                answers.append(mac)
    return answers


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(netns: str, target_ip: str, *, timeout: float = 1.0) -> bool:
    """One ICMP echo request to ``target_ip`` (IPv4) from namespace ``netns``; True if answered."""
    sock = call_in_netns(
        netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    )
    ident = os.getpid() & 0xFFFF
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    payload = b"lbd-lab"
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, 1) + payload
    with sock:
        sock.sendto(packet, (target_ip, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                return False
            data, (src, _port) = sock.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            icmp_type, _code, _sum, rid, _seq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if src == target_ip and icmp_type == 0 and rid == ident:
                return True
    return False


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def udp_ask(netns: str, vip: str, *, port: int = ECHO_PORT, timeout: float = 1.0) -> str | None:
    """Ask the echo service on ``vip`` who answers; the node name, or None on timeout."""
    sock = call_in_netns(netns, lambda: socket.socket(_family(vip), socket.SOCK_DGRAM))
    with sock:
        sock.connect((vip, port))
        sock.send(b"who")
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            return None
        try:
            reply = sock.recv(512).decode(errors="replace")
        except ConnectionRefusedError:
            return None
        return reply.partition(" ")[2].strip() or None


def tcp_ask(netns: str, vip: str, *, port: int = ECHO_PORT, timeout: float = 2.0) -> str:
    """Open a TCP connection to the echo service on ``vip`` and return the node name it sends."""

    def connect() -> socket.socket:
        return socket.create_connection((vip, port), timeout=timeout)

    with call_in_netns(netns, connect) as sock, sock.makefile("rb") as reader:
        sock.settimeout(timeout)
        return reader.readline().decode().strip()


def first_answers(
    netns: str,
    vips: list[str],
    *,
    accept: set[str] | None = None,
    since: float,
    timeout: float = 10.0,
    interval: float = 0.02,
) -> dict[str, tuple[float, str]]:
    """Per IPv4 VIP: (seconds from ``since``, node) of its first answer by a node in ``accept``.

    One unconnected UDP socket in the client namespace sends a request to every VIP still waiting
    each ``interval``; the echo service replies from the VIP itself, so ``recvfrom`` says which
    VIP answered and the payload says which node. VIPs not answered by ``timeout`` are missing
    from the result.
    """
    sock = call_in_netns(netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    pending = set(vips)
    answered: dict[str, tuple[float, str]] = {}
    deadline = time.monotonic() + timeout
    next_round = time.monotonic()
    with sock:
        while pending and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_round:
                for vip in pending:
                    with contextlib.suppress(OSError):
                        sock.sendto(b"0", (vip, ECHO_PORT))
                next_round = now + interval
            ready, _, _ = select.select([sock], [], [], max(0.0, next_round - time.monotonic()))
            while ready:
                try:
                    data, (src, _port) = sock.recvfrom(512)
                except OSError:
                    break
                node = data.decode(errors="replace").partition(" ")[2].strip()
                if src in pending and (accept is None or node in accept):
                    answered[src] = (time.monotonic() - since, node)
                    pending.discard(src)
                ready, _, _ = select.select([sock], [], [], 0)
    return answered


def owners(netns: str, vips: list[str], *, timeout: float = 5.0) -> dict[str, str]:
    """Which node answers each IPv4 VIP right now (VIPs nobody answers are missing)."""
    found = first_answers(netns, vips, since=time.monotonic(), timeout=timeout)
    return {vip: node for vip, (_t, node) in found.items()}


@dataclass(frozen=True)
class Probe:
    """One request of a :class:`UdpProber`: when it was sent and who answered it (if anyone)."""

    seq: int
    sent: float
    answered_by: str | None


@dataclass(frozen=True)
class Outage:
    """The longest run of unanswered probes: last answer before, first answer after."""

    seconds: float
    last_before: Probe | None
    first_after: Probe | None
    lost: int


def longest_outage(probes: list[Probe], *, after: float = float("-inf")) -> Outage:
    """The longest interruption seen by the client among probes sent after ``after``.

    The interruption is measured between the send times of the last answered probe before the
    gap and the first answered probe after it (resolution: the probe interval). A gap that is
    never closed counts until the last probe sent, with ``first_after`` None.
    """
    best = Outage(0.0, None, None, 0)
    last: Probe | None = None
    lost = 0
    for probe in probes:
        if probe.answered_by is None:
            lost += 1
            continue
        if last is not None and lost and probe.sent >= after:
            gap = Outage(probe.sent - last.sent, last, probe, lost)
            if gap.seconds > best.seconds:
                best = gap
        last, lost = probe, 0
    if lost and last is not None and probes:
        gap = Outage(probes[-1].sent - last.sent, last, None, lost)
        if gap.seconds > best.seconds:
            best = gap
    return best


class UdpProber:
    """Send a numbered UDP request every ``interval`` to ``vip`` and record who answers.

    One socket in the client namespace; a sender thread paced on the clock and a receiver
    thread. Replies are matched by sequence number, so late replies still count for the probe
    they answer.
    """

    def __init__(
        self,
        netns: str,
        vip: str,
        *,
        port: int = ECHO_PORT,
        interval: float = 0.01,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or MonotonicClock()
        self._interval = interval
        self._sock = call_in_netns(netns, lambda: socket.socket(_family(vip), socket.SOCK_DGRAM))
        self._sock.connect((vip, port))
        self._sent: list[float] = []
        self._answers: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send_loop, name="prober-send", daemon=True),
            threading.Thread(target=self._recv_loop, name="prober-recv", daemon=True),
        ]

    def start(self) -> UdpProber:
        for thread in self._threads:
            thread.start()
        return self

    def _send_loop(self) -> None:
        next_at = self._clock.monotonic()
        seq = 0
        while not self._stop.is_set():
            now = self._clock.monotonic()
            with self._lock:
                self._sent.append(now)
            # ECONNREFUSED from an earlier ICMP error surfaces on send: not a reason to stop.
            with contextlib.suppress(OSError):
                self._sock.send(f"{seq}".encode())
            seq += 1
            next_at += self._interval
            self._clock.sleep(next_at - self._clock.monotonic())

    def _recv_loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.05)
            if not ready:
                continue
            try:
                data = self._sock.recv(512)
            except OSError:
                continue
            seq_text, _, node = data.decode(errors="replace").partition(" ")
            if seq_text.isdigit():
                with self._lock:
                    self._answers.setdefault(int(seq_text), node.strip())

    def probes(self) -> list[Probe]:
        with self._lock:
            return [Probe(seq, sent, self._answers.get(seq)) for seq, sent in enumerate(self._sent)]

    def stop(self) -> list[Probe]:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._sock.close()
        return self.probes()

    def __enter__(self) -> UdpProber:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        if not self._stop.is_set():
            self.stop()

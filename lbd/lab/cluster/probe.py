"""Client-side probes: what the lab's external client sees.

Every socket here is created inside the client's namespace (see :func:`.netns.call_in_netns`) and
then used from ordinary threads of the calling process, so the demo, the tests and the
benchmark need no helper process in the client namespace.

- :func:`arp_who_has` sends one ARP request and returns every MAC that answered (the demo shows
  which MAC answers; a test asserts that exactly one does).
- :func:`ping` sends an ICMP echo and waits for the answer.
- :func:`udp_ask` asks the echo service which node answers on a VIP; :func:`tcp_ask` reads the
  one line a TCP echo port sends; :func:`http_get` fetches a page, as ``curl`` would.
- :class:`UdpProber` sends a numbered UDP request every ``interval`` to a VIP and records, per
  request, which node answered; :func:`longest_outage` turns that record into the
  client-observed interruption (the measure docs/SPEAKER.md's failover targets are stated in).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass

from lbd.core import arp
from lbd.lab.cluster.netns import call_in_netns, enter_netns
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


def arp_reply_sender(frame: bytes) -> tuple[str, str] | None:
    """(sender IP, sender MAC) if ``frame`` is an ARP reply, else None."""
    pkt = arp.parse(frame)
    if isinstance(pkt, arp.DropReason) or pkt.op != arp.OP_REPLY:
        return None
    return str(ipaddress.IPv4Address(pkt.sender_ip)), pkt.sender_mac.hex(":")


def parse_arp_reply(frame: bytes, target_ip: str) -> str | None:
    """The sender MAC if ``frame`` is an ARP reply from ``target_ip``, else None."""
    sender = arp_reply_sender(frame)
    if sender is None or sender[0] != str(ipaddress.IPv4Address(target_ip)):
        return None
    return sender[1]


def arp_who_has(
    netns: str, ifname: str, src_mac: str, src_ip: str, target_ip: str, *, wait: float = 0.3
) -> list[str]:
    """Broadcast an ARP request for ``target_ip`` and return the MACs that answered in ``wait``."""
    return arp_owners(netns, ifname, src_mac, src_ip, [target_ip], wait=wait).get(target_ip, [])


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


def http_get(
    netns: str, host: str, *, port: int = 80, path: str = "/", timeout: float = 2.0
) -> str:
    """``curl http://host:port/path`` from namespace ``netns``: the body of a 200 answer;
    :class:`OSError` otherwise (a plain client, so the lab needs no curl)."""
    import http.client

    def connect() -> socket.socket:
        return socket.create_connection((host, port), timeout=timeout)

    sock = call_in_netns(netns, connect)
    conn = http.client.HTTPConnection(
        host if ":" not in host else f"[{host}]", port, timeout=timeout
    )
    conn.sock = sock  # already connected from inside the namespace
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        if resp.status != 200:
            raise OSError(f"http://{host}:{port}{path} answered {resp.status} {resp.reason}")
        return body
    finally:
        conn.close()


def first_answers(
    netns: str,
    vips: list[str],
    *,
    accept: set[str] | None = None,
    since: float,
    not_before: float | None = None,
    timeout: float = 10.0,
    interval: float = 0.02,
) -> dict[str, tuple[float, str]]:
    """Per IPv4 VIP: (seconds from ``since``, node) of its first answer by a node in ``accept``.

    One unconnected UDP socket in the client namespace sends a request to every VIP still waiting
    each ``interval``; the echo service replies from the VIP itself, so ``recvfrom`` says which
    VIP answered and the payload says which node. Each request carries a number, so an answer to
    a request sent before ``not_before`` (e.g. before a node was cut off) is not counted. VIPs
    not answered by ``timeout`` are missing from the result.
    """
    sock = call_in_netns(netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    pending = set(vips)
    answered: dict[str, tuple[float, str]] = {}
    sent_at: list[float] = []
    deadline = time.monotonic() + timeout
    next_round = time.monotonic()
    with sock:
        while pending and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_round:
                sent_at.append(now)
                payload = str(len(sent_at) - 1).encode()
                for vip in pending:
                    with contextlib.suppress(OSError):
                        sock.sendto(payload, (vip, ECHO_PORT))
                next_round = now + interval
            ready, _, _ = select.select([sock], [], [], max(0.0, next_round - time.monotonic()))
            while ready:
                try:
                    data, (src, _port) = sock.recvfrom(512)
                except OSError:
                    break
                number, _, node = data.decode(errors="replace").partition(" ")
                node = node.strip()
                early = (
                    not_before is not None
                    and number.isdigit()
                    and int(number) < len(sent_at)
                    and sent_at[int(number)] < not_before
                )
                if src in pending and not early and (accept is None or node in accept):
                    answered[src] = (time.monotonic() - since, node)
                    pending.discard(src)
                ready, _, _ = select.select([sock], [], [], 0)
    return answered


def arp_owners(
    netns: str, ifname: str, src_mac: str, src_ip: str, vips: list[str], *, wait: float = 1.0
) -> dict[str, list[str]]:
    """Per IPv4 VIP, the MACs that answered one broadcast ARP request each (one socket, all
    requests at once, then ``wait`` seconds of listening); VIPs nobody answered are missing."""

    def open_socket() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(arp.ETH_P_ARP))
        sock.bind((ifname, arp.ETH_P_ARP))
        return sock

    sock = call_in_netns(netns, open_socket)
    wanted = {str(ipaddress.IPv4Address(v)): v for v in vips}
    found: dict[str, list[str]] = {}
    with sock:
        for vip in vips:
            sock.send(arp_request_frame(src_mac, src_ip, vip))
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            sender = arp_reply_sender(sock.recv(2048))
            if sender is None or sender[0] not in wanted:
                continue
            macs = found.setdefault(wanted[sender[0]], [])
            if sender[1] not in macs:
                macs.append(sender[1])
    return found


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

    Replies are matched by sequence number, so late replies still count for the probe they
    answer. Two kinds of client:

    - one flow (default): one connected socket, so every request has the same source port; on
      the real lab kube-proxy keeps such a flow on the pod it first picked (conntrack), like a
      long-lived UDP session. A sender thread paced on the clock and a receiver thread;
    - ``fresh_flows``: a new socket, hence a new source port and a new flow, for every request,
      like a client that opens a new connection per request; kube-proxy picks a pod for each.
      One thread that lives in the client's namespace sends and receives; a socket is closed
      two seconds after its request (a later answer no longer counts).
    """

    FRESH_SOCKET_LIFETIME = 2.0

    def __init__(
        self,
        netns: str,
        vip: str,
        *,
        port: int = ECHO_PORT,
        interval: float = 0.01,
        clock: Clock | None = None,
        fresh_flows: bool = False,
    ) -> None:
        self._clock = clock or MonotonicClock()
        self._interval = interval
        self._netns = netns
        self._target = (vip, port)
        self._sock: socket.socket | None = None
        self._sent: list[float] = []
        self._answers: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if fresh_flows:
            self._threads = [
                threading.Thread(target=self._fresh_loop, name="prober-fresh", daemon=True)
            ]
        else:
            self._sock = call_in_netns(
                netns, lambda: socket.socket(_family(vip), socket.SOCK_DGRAM)
            )
            self._sock.connect(self._target)
            self._threads = [
                threading.Thread(target=self._send_loop, name="prober-send", daemon=True),
                threading.Thread(target=self._recv_loop, name="prober-recv", daemon=True),
            ]

    def start(self) -> UdpProber:
        for thread in self._threads:
            thread.start()
        return self

    def _record(self, data: bytes) -> None:
        seq_text, _, node = data.decode(errors="replace").partition(" ")
        if seq_text.isdigit():
            with self._lock:
                self._answers.setdefault(int(seq_text), node.strip())

    def _send_loop(self) -> None:
        assert self._sock is not None
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
        assert self._sock is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.05)
            if not ready:
                continue
            try:
                data = self._sock.recv(512)
            except OSError:
                continue
            self._record(data)

    def _fresh_loop(self) -> None:
        enter_netns(self._netns)  # this thread only; its sockets are the client's
        family = _family(self._target[0])
        opened: dict[socket.socket, float] = {}
        sel = selectors.DefaultSelector()
        next_at = self._clock.monotonic()
        seq = 0
        try:
            while not self._stop.is_set():
                now = self._clock.monotonic()
                if now >= next_at:
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                    sock.setblocking(False)
                    with self._lock:
                        self._sent.append(now)
                    with contextlib.suppress(OSError):
                        sock.connect(self._target)
                        sock.send(f"{seq}".encode())
                    opened[sock] = now
                    sel.register(sock, selectors.EVENT_READ)
                    seq += 1
                    next_at += self._interval
                for sock in [s for s, t in opened.items() if now - t > self.FRESH_SOCKET_LIFETIME]:
                    sel.unregister(sock)
                    sock.close()
                    del opened[sock]
                for key, _events in sel.select(max(0.0, next_at - self._clock.monotonic())):
                    with contextlib.suppress(OSError):
                        self._record(key.fileobj.recv(512))  # type: ignore[union-attr]
        finally:
            for sock in opened:
                sock.close()
            sel.close()

    def probes(self) -> list[Probe]:
        with self._lock:
            return [Probe(seq, sent, self._answers.get(seq)) for seq, sent in enumerate(self._sent)]

    def stop(self) -> list[Probe]:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self._sock is not None:
            self._sock.close()
        return self.probes()

    def __enter__(self) -> UdpProber:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        if not self._stop.is_set():
            self.stop()

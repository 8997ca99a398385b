"""The lab's echo service: answers with the node's name on TCP and UDP port 9000.

It stands in for the Service's pods: a client that reaches a VIP learns which node answered.

- TCP: one line, the node name, then close.
- UDP: the request's payload, a space, the node name (``"17 n2"``), so a prober can match
  replies to requests by the number it sent.

The sockets are bound to the wildcard address so that every VIP the kube-proxy stand-in puts on
``lo`` is answered without restarting anything. A wildcard UDP socket would reply from the node's
own address (the route's preferred source) and a client's connected socket would drop that
reply, so replies are sent with ``IP_PKTINFO``/``IPV6_PKTINFO`` carrying the address the request
was sent to, as UDP servers on multi-homed hosts do.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import select
import socket
import struct
import threading

from lbd import log as lbd_log

log = logging.getLogger(__name__)

# Not exported by Python's socket module on every version (Linux uapi values).
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
_PKTINFO4 = struct.Struct("=i4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
_PKTINFO6 = struct.Struct("=16si")  # struct in6_pktinfo: addr, ifindex


def _reply_pktinfo(level: int, ctype: int, data: bytes) -> tuple[int, int, bytes] | None:
    """Ancillary data that makes the reply leave from the address the request was sent to."""
    if level == socket.IPPROTO_IP and ctype == IP_PKTINFO:
        _ifindex, _spec_dst, dst = _PKTINFO4.unpack(data[: _PKTINFO4.size])
        return (socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO4.pack(0, dst, b"\0" * 4))
    if level == socket.IPPROTO_IPV6 and ctype == IPV6_PKTINFO:
        dst6, _ifindex = _PKTINFO6.unpack(data[: _PKTINFO6.size])
        return (socket.IPPROTO_IPV6, IPV6_PKTINFO, _PKTINFO6.pack(dst6, 0))
    return None


class EchoServer:
    """TCP + UDP echo on ``port`` for IPv4 and IPv6, answering with ``node``."""

    def __init__(self, node: str, port: int = 9000) -> None:
        self.node = node
        self._reply = node.encode()
        self._stop = threading.Event()
        self._udp: list[socket.socket] = []
        self._tcp: list[socket.socket] = []
        for family, any_addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                for sock in (udp, tcp):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                udp.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            else:
                udp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            udp.bind((any_addr, port))
            tcp.bind((any_addr, port))
            tcp.listen(128)
            self._udp.append(udp)
            self._tcp.append(tcp)

    def serve_forever(self) -> None:
        socks = self._udp + self._tcp
        while not self._stop.is_set():
            ready, _, _ = select.select(socks, [], [], 0.2)
            for sock in ready:
                if sock in self._udp:
                    self._answer_udp(sock)
                else:
                    self._answer_tcp(sock)

    def _answer_udp(self, sock: socket.socket) -> None:
        try:
            data, ancdata, _flags, peer = sock.recvmsg(2048, 256)
        except OSError:
            return
        anc = [a for a in (_reply_pktinfo(*item) for item in ancdata) if a is not None]
        with contextlib.suppress(OSError):  # the client may be gone; never stop serving
            sock.sendmsg([data.strip(), b" ", self._reply, b"\n"], anc, 0, peer)

    def _answer_tcp(self, sock: socket.socket) -> None:
        try:
            conn, _peer = sock.accept()
        except OSError:
            return
        with conn, contextlib.suppress(OSError):
            conn.settimeout(1.0)
            conn.sendall(self._reply + b"\n")

    def stop(self) -> None:
        self._stop.set()
        for sock in self._udp + self._tcp:
            sock.close()


def run(args: argparse.Namespace) -> int:
    lbd_log.setup("info")
    server = EchoServer(args.node_name, args.port)
    log.info("echo serving", extra={"node": args.node_name, "count": args.port})
    server.serve_forever()
    return 0

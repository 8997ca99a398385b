"""The lab's echo service: answers with the node's name on TCP and UDP port 9000.

On the stand-in lab it stands in for the Service's pods, one per node; on the real lab each echo
Pod runs one (:class:`PodServer`, started by the lab kubelet inside the pod's namespace). Either
way a client that reaches a VIP learns which node answered.

- TCP 9000: one line, the node name, then close.
- UDP 9000: the request's payload, a space, the node name (``"17 n2"``), so a prober can match
  replies to requests by the number it sent.
- Pods only: TCP 9001, one line ``<node> <pod> <client address it saw>`` (what
  ``externalTrafficPolicy`` changes: the client's own address, or the forwarding node's), and
  TCP 80, an HTTP page naming the pod and its node, so ``curl http://EXTERNAL-IP/`` works as in
  the tutorials.

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
from collections.abc import Callable

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


_FAMILIES = ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::"))


def _tcp_listeners(port: int) -> list[socket.socket]:
    """Wildcard TCP listeners on ``port`` for IPv4 and IPv6 (in the caller's namespace)."""
    out = []
    for family, any_addr in _FAMILIES:
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        tcp.bind((any_addr, port))
        tcp.listen(128)
        out.append(tcp)
    return out


class EchoServer:
    """TCP + UDP echo on ``port`` for IPv4 and IPv6, answering with ``node``.

    The sockets are made in the constructor, so they belong to the network namespace of the
    thread that constructs the server; :meth:`serve_forever` may then run in any thread.
    """

    def __init__(self, node: str, port: int = 9000) -> None:
        self.node = node
        self._reply = node.encode()
        self._stop = threading.Event()
        self._udp: list[socket.socket] = []
        for family, any_addr in _FAMILIES:
            udp = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                udp.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            else:
                udp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            udp.bind((any_addr, port))
            self._udp.append(udp)
        self._tcp: dict[socket.socket, Callable[[socket.socket], None]] = dict.fromkeys(
            _tcp_listeners(port), self._answer_tcp
        )

    def serve_forever(self) -> None:
        socks = self._udp + list(self._tcp)
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(socks, [], [], 0.2)
            except (OSError, ValueError):  # closed by stop()
                break
            for sock in ready:
                if sock in self._udp:
                    self._answer_udp(sock)
                else:
                    self._accept(sock)

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _peer = listener.accept()
        except OSError:
            return
        self._tcp[listener](conn)

    def _answer_udp(self, sock: socket.socket) -> None:
        try:
            data, ancdata, _flags, peer = sock.recvmsg(2048, 256)
        except OSError:
            return
        anc = [a for a in (_reply_pktinfo(*item) for item in ancdata) if a is not None]
        with contextlib.suppress(OSError):  # the client may be gone; never stop serving
            sock.sendmsg([data.strip(), b" ", self._reply, b"\n"], anc, 0, peer)

    def _answer_tcp(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(1.0)
            conn.sendall(self._reply + b"\n")

    def stop(self) -> None:
        self._stop.set()
        for sock in self._udp + list(self._tcp):
            sock.close()


WHOAMI_PORT = 9001
HTTP_PORT = 80


def _peer_address(conn: socket.socket) -> str:
    return str(conn.getpeername()[0])


class PodServer(EchoServer):
    """One echo Pod: the node echo on 9000 plus ``whoami`` on 9001 and HTTP on 80."""

    def __init__(self, node: str, pod: str, pod_ip: str, port: int = 9000) -> None:
        super().__init__(node, port)
        self.pod = pod
        self.pod_ip = pod_ip
        for sock in _tcp_listeners(WHOAMI_PORT):
            self._tcp[sock] = self._answer_whoami
        for sock in _tcp_listeners(HTTP_PORT):
            self._tcp[sock] = self._answer_http

    def _answer_whoami(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(1.0)
            conn.sendall(f"{self.node} {self.pod} {_peer_address(conn)}\n".encode())

    def page(self, client: str) -> bytes:
        return (
            f"pod {self.pod} on node {self.node} (pod IP {self.pod_ip}), you are {client}\n"
        ).encode()

    def _answer_http(self, conn: socket.socket) -> None:
        # A thread per request: a client that is slow to send its request must not hold up the
        # other ports of this pod.
        threading.Thread(target=self._serve_http, args=(conn,), daemon=True).start()

    def _serve_http(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(2.0)
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 8192:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            method = request.split(b" ", 1)[0]
            body = self.page(_peer_address(conn))
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                f"X-Pod: {self.pod}\r\nX-Node: {self.node}\r\n\r\n"
            ).encode()
            conn.sendall(head if method == b"HEAD" else head + body)


def run(args: argparse.Namespace) -> int:
    lbd_log.setup("info")
    server = EchoServer(args.node_name, args.port)
    log.info("echo serving", extra={"node": args.node_name, "count": args.port})
    server.serve_forever()
    return 0

"""A fault-injecting HTTPS proxy between lbd and a real kube-apiserver.

The stand-in API server (:mod:`lbd.lab.apiserver`) can misbehave on request; a real
kube-apiserver cannot. This proxy sits in front of one and misbehaves the same way, with the same
calls, so the same test drives either (the fault rules and outage clock are the stand-in's
:class:`~lbd.lab.apiserver.faults.Faults`)::

    proxy = FaultProxy(plane.url, plane.ca_cert, plane.pki.serving).start()
    proxy.fail_next(3, 429, verb="patch", path="/status")   # Status answers, Retry-After: 1
    proxy.add_latency(0.02, verb="patch")
    proxy.close_watches()                 # every watch stream ends cleanly (clients re-watch)
    proxy.reset_connections()             # every open connection gets a TCP RST
    proxy.outage(3.0)                     # refuse (RST) everything for 3 s; mode="hang" stalls
    proxy.reset_faults()

TLS in and out: clients verify the proxy with the control plane's CA (it serves the plane's own
certificate), and the proxy verifies kube-apiserver with it. Credentials pass through: the
caller's ``Authorization: Bearer`` header goes upstream unchanged, so kube-apiserver
authenticates and authorizes the caller itself (a client certificate cannot pass a
TLS-terminating proxy; that is why the harness's admin uses a token).

Each client connection gets its own upstream connection, and responses are relayed as they
arrive (a watch is a chunked response that never ends), so the client sees kube-apiserver's own
answers, headers and streaming. HTTP/1.1 only (no ALPN ``h2``): Go clients fall back to it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import socketserver
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lbd.lab.apiserver.errors import injected
from lbd.lab.apiserver.faults import FaultCalls, Faults, OutageMode
from lbd.lab.apiserver.http import TOO_MANY_REQUESTS
from lbd.lab.apiserver.tls import wrap_listener
from lbd.lab.control_plane.certs import CertFiles
from lbd.lab.lifecycle import Startable, serve_in_thread
from lbd.runtime.clock import Clock, MonotonicClock

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 section 7.6.1) are the proxy's own business on each side.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


def kube_verb(method: str, path: str, query: str) -> str:
    """The Kubernetes verb of a request (``get``, ``list``, ``watch``, ``create`` ...), as the
    stand-in names it for its fault rules."""
    parts = [p for p in path.split("/") if p]
    q = parse_qs(query)
    watch = q.get("watch", [""])[0] in ("true", "1") or "watch" in parts[2:3]
    # /api/v1/[namespaces/NS/]RESOURCE[/NAME[/SUB]] and /apis/GROUP/VERSION/...
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    single = len(rest) >= 2
    if method in ("GET", "HEAD"):
        return "watch" if watch else ("get" if single else "list")
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if single else "deletecollection"
    return method.lower()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        super().__init__(addr, _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.proxy.faults.refusing():
            _abort(request)
            return False
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        self.proxy.track(request, True)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.proxy.track(request, False)
        super().shutdown_request(request)


def _abort(sock: socket.socket) -> None:
    """Reset a connection (RST, not FIN), as a crashed server or a broken network does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)


class _Stream:
    """An open watch stream, so that :meth:`FaultProxy.close_watches` can end it."""

    def __init__(self, upstream: http.client.HTTPSConnection) -> None:
        self.upstream = upstream
        self.closed = False

    def close(self) -> None:
        self.closed = True
        sock = self.upstream.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self._upstream: http.client.HTTPSConnection | None = None

    def handle(self) -> None:
        conn = self.connection
        if isinstance(conn, ssl.SSLSocket):
            try:
                conn.do_handshake()
            except (OSError, ssl.SSLError):
                return
        try:
            super().handle()
        except (OSError, ssl.SSLError):
            pass
        finally:
            if self._upstream is not None:
                self._upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._relay
        raise AttributeError(name)

    # -- one request ----------------------------------------------------------------------------

    def _relay(self) -> None:
        proxy = self.server.proxy
        faults = proxy.faults
        if faults.refusing():
            self.close_connection = True
            _abort(self.connection)
            return
        faults.wait_while_hanging()
        body = self._read_body()
        url = urlsplit(self.path)
        verb = kube_verb(self.command, url.path, url.query)
        delay = faults.latency(verb, url.path)
        if delay > 0:
            faults.sleep(delay)
        code = faults.take_failure(verb, url.path)
        if code is not None:
            self._fail(code, f"injected fault: {verb} {url.path} fails with {code}")
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body:
            headers["Content-Length"] = str(len(body))
        try:
            upstream = self._upstream_conn()
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            resp = upstream.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_upstream()
            if faults.refusing():
                _abort(self.connection)
                self.close_connection = True
                return
            self._fail(503, f"fault proxy: kube-apiserver unreachable: {exc}")
            return
        self._answer(resp, verb == "watch")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _upstream_conn(self) -> http.client.HTTPSConnection:
        if self._upstream is None:
            proxy = self.server.proxy
            self._upstream = http.client.HTTPSConnection(
                proxy.upstream_host, proxy.upstream_port, context=proxy.upstream_ssl, timeout=None
            )
        return self._upstream

    def _drop_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _head(self, status: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _fail(self, code: int, message: str) -> None:
        headers = [("Cache-Control", "no-cache, private")]
        if code == 429:
            # as kube-apiserver's priority and fairness refuses: plain text and Retry-After
            raw = TOO_MANY_REQUESTS
            headers += [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "1")]
        else:
            raw = json.dumps(injected(code, message).status()).encode()
            headers.append(("Content-Type", "application/json"))
        headers.append(("Content-Length", str(len(raw))))
        reason = http.client.responses.get(code, "")
        self.wfile.write(self._head(code, reason, headers) + raw)

    def _answer(self, resp: http.client.HTTPResponse, watch: bool) -> None:
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
        if resp.getheader("Connection", "").lower() == "close":
            self.close_connection = True
        if self.command == "HEAD" or resp.status in (204, 304):
            resp.read()
            self.wfile.write(self._head(resp.status, resp.reason, headers))
            return
        length = resp.getheader("Content-Length")
        if length is not None and not watch:
            data = resp.read()
            headers.append(("Content-Length", str(len(data))))
            self.wfile.write(self._head(resp.status, resp.reason, headers) + data)
            return
        # Streamed (a watch, or a large list): relay each piece as it arrives.
        headers.append(("Transfer-Encoding", "chunked"))
        self.wfile.write(self._head(resp.status, resp.reason, headers))
        proxy = self.server.proxy
        stream = _Stream(self._upstream_conn())
        if watch:
            proxy.add_stream(stream)
        try:
            while True:
                try:
                    piece = resp.read1(65536)
                except (OSError, http.client.HTTPException, ValueError):
                    piece = b""
                if not piece:
                    break
                proxy.faults.wait_while_hanging()
                if proxy.faults.refusing():
                    raise ConnectionResetError("outage")
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            if stream.closed or not resp.isclosed():
                self._drop_upstream()  # cut short: this upstream connection is spent
            self.wfile.write(b"0\r\n\r\n")  # a clean end: the client re-watches
        finally:
            proxy.remove_stream(stream)


class FaultProxy(FaultCalls, Startable):
    """An HTTPS proxy to ``upstream`` (a kube-apiserver URL) that injects faults on request."""

    def __init__(
        self,
        upstream: str,
        upstream_ca: str | Path,
        serving: CertFiles,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "https" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream: must be https://HOST:PORT, got {upstream!r}")
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port
        self.upstream_ssl = ssl.create_default_context(cafile=str(upstream_ca))
        self._serving = serving
        self.host = host
        self.port = port
        self.faults = Faults(clock or MonotonicClock())
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._streams: set[_Stream] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def start(self) -> FaultProxy:
        server = _Server((self.host, self.port), self)
        wrap_listener(server, self._serving.cert, self._serving.key)
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = serve_in_thread(server, "fault-proxy")
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        self.close_watches()
        self.reset_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # -- bookkeeping (called by the handler threads) --------------------------------------------

    def track(self, sock: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._conns.add(sock)
            else:
                self._conns.discard(sock)

    def add_stream(self, stream: _Stream) -> None:
        with self._lock:
            self._streams.add(stream)

    def remove_stream(self, stream: _Stream) -> None:
        with self._lock:
            self._streams.discard(stream)

    # -- faults: fail_next, add_latency, reset_faults come from FaultCalls ---------------------

    def close_watches(self) -> int:
        """End every open watch stream cleanly (clients see the stream end and re-watch)."""
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.close()
        return len(streams)

    def reset_connections(self) -> int:
        """Reset (RST) every open client connection, watches included."""
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            _abort(sock)
        return len(conns)

    def outage(self, seconds: float, mode: OutageMode | str = OutageMode.REFUSE) -> None:
        """Stop answering for ``seconds``: ``refuse`` resets open and new connections (a crashed
        server), ``hang`` stalls requests and streams (a partition); then recover."""
        mode = OutageMode(mode)
        self.faults.start_outage(seconds, mode)
        if mode is OutageMode.REFUSE:
            self.close_watches()
            self.reset_connections()

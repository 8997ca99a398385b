"""The health and metrics HTTP endpoint shared by the controller and the speaker.

API::

    server = HealthServer("0.0.0.0:7472", healthz=lambda: True, readyz=ready_fn,
                          registry=metrics.registry)
    server.start()          # a daemon thread; server.port is the bound port (use ":0" in tests)
    server.stop()

``/healthz`` answers 200 while ``healthz()`` is true (the process is alive and not wedged),
``/readyz`` 200 while ``readyz()`` is true (caches synced, state restored), else 503 with the
reason when the callable returns a string instead of False. ``/metrics`` is the Prometheus text
exposition of ``registry``. The standard library's threading HTTP server is enough for a few
scrapes a second and keeps the speaker's hot path free of any web framework.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], "bool | str"]
"""True: healthy. False or a string (the reason): not healthy."""


def parse_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` (``":7472"`` = all addresses, ``"[::1]:80"`` for IPv6) -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"health address {addr!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(eq=False)
class HealthServer:
    """Serves ``/healthz``, ``/readyz`` and ``/metrics`` on its own thread."""

    addr: str
    """``HOST:PORT`` to listen on (:func:`parse_addr`; a bad one raises here, not at start)."""
    _: KW_ONLY
    healthz: Check = lambda: True
    readyz: Check = lambda: True
    registry: CollectorRegistry | None = None

    def __post_init__(self) -> None:
        self.bind = parse_addr(self.addr)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("health server not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._check(outer.healthz)
                elif path == "/readyz":
                    self._check(outer.readyz)
                elif path == "/metrics" and outer.registry is not None:
                    self._send(200, generate_latest(outer.registry), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _check(self, check: Check) -> None:
                try:
                    result = check()
                except Exception as exc:
                    result = f"check failed: {exc}"
                if result is True:
                    self._send(200, b"ok\n", "text/plain")
                else:
                    reason = result if isinstance(result, str) and result else "not ok"
                    self._send(503, reason.encode() + b"\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes and probes every few seconds would drown the JSON logs

        self._server = ThreadingHTTPServer(self.bind, Handler)
        self._server.daemon_threads = True
        # shutdown() waits for the serve loop's next poll: 0.1 s instead of the default 0.5 s
        # keeps a SIGTERMed speaker's exit within its one-second promise on a busy node
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.1), name="health", daemon=True
        )
        self._thread.start()
        log.info("health endpoint on %s:%d", self.bind[0], self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

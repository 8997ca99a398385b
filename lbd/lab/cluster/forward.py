"""The lab's API forwarder: 127.0.0.1:PORT in the root namespace -> the API inside the lab.

The API server listens on 198.18.0.1 inside ``<prefix>-cp``, which the root namespace cannot
reach (nothing of the lab is configured there). The supervisor creates a listening socket on
127.0.0.1 in the root namespace and passes its descriptor (``--fd``) to this process, which runs
inside the control-plane namespace: accepted connections come from the host, and the outgoing
connections it opens are in the lab. ``DIR/kubeconfig-host`` points at it, which is what the
demo, the tests and a user's ``kubectl`` on the host use.

A plain byte pipe, two threads per connection; watches are long-lived connections, which is
exactly what threads handle without any protocol knowledge.

With ``--tls-cert``/``--tls-key`` the host side speaks HTTPS (TLS is terminated here, the lab
side stays plain HTTP): kubectl never sends a bearer token over plain HTTP
(kubernetes/kubectl#744), so this is what makes ``kubectl --kubeconfig DIR/kubeconfig-host``
work with the lab's RBAC-checked admin token.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import ssl
import threading

from lbd import log as lbd_log

log = logging.getLogger(__name__)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    with contextlib.suppress(OSError):
        if isinstance(dst, ssl.SSLSocket):
            # No half-close under TLS (shutdown would drop the TLS layer under the other
            # direction's reader): end the whole connection instead.
            dst.close()
        else:
            dst.shutdown(socket.SHUT_WR)


def _serve(conn: socket.socket, target: tuple[str, int], tls: ssl.SSLContext | None) -> None:
    if tls is not None:
        try:
            conn.settimeout(10.0)
            conn = tls.wrap_socket(conn, server_side=True)
            conn.settimeout(None)
        except (OSError, ssl.SSLError) as exc:
            log.warning("tls handshake failed", extra={"error": str(exc)})
            conn.close()
            return
    try:
        upstream = socket.create_connection(target, timeout=5.0)
    except OSError as exc:
        log.warning("upstream unreachable", extra={"error": str(exc)})
        conn.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
    back.start()
    _pipe(conn, upstream)
    back.join()
    conn.close()
    upstream.close()


def forward_forever(
    listener: socket.socket, target: tuple[str, int], tls: ssl.SSLContext | None = None
) -> None:
    while True:
        conn, _peer = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve, args=(conn, target, tls), daemon=True).start()


def run(args: argparse.Namespace) -> int:
    lbd_log.setup("info")
    host, _, port = args.to.rpartition(":")
    listener = socket.socket(fileno=args.fd)
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    log.info("forwarding", extra={"address": args.to})
    forward_forever(listener, (host, int(port)), tls)
    return 0

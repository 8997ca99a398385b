"""Self-signed TLS for the lab API server.

Only needed for kubectl with a bearer token: client-go never sends credentials over plain HTTP
(kubernetes/kubectl#744), so a faithful RBAC check with kubectl needs HTTPS. The certificate is
made with the ``openssl`` command (no Python crypto dependency), valid for the listen address,
``127.0.0.1``, ``::1`` and ``localhost``; kubeconfigs embed it as ``certificate-authority-data``.
:func:`wrap_listener` serves TLS on a socketserver (the stand-in's and the fault proxy's).
"""

from __future__ import annotations

import ipaddress
import shutil
import socketserver
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TlsFiles:
    directory: Path
    cert: Path
    key: Path

    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()


def make_self_signed(host: str) -> TlsFiles:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("tls: the openssl command is needed to make a certificate")
    directory = Path(tempfile.mkdtemp(prefix="lbd-lab-tls-"))
    cert, key = directory / "tls.crt", directory / "tls.key"
    sans = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    try:
        ipaddress.ip_address(host)
        sans.append(f"IP:{host}")
    except ValueError:
        if host:
            sans.append(f"DNS:{host}")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "365",
            "-subj",
            "/CN=lbd-lab-apiserver",
            "-addext",
            "subjectAltName=" + ",".join(dict.fromkeys(sans)),
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return TlsFiles(directory, cert, key)


def wrap_listener(server: socketserver.TCPServer, cert: Path, key: Path) -> None:
    """Make ``server`` accept TLS with ``cert`` and ``key``. The handshake happens in the
    connection's own thread (``do_handshake_on_connect=False``), not in the accept loop, where
    one slow client would hold up every other."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)

"""A quick way to connect with a kubeconfig whose context holds only static credentials.

API::

    transport = static_transport("/path/kubeconfig", pool_size=32)   # or None: use the
                                                                     # official loader

Why it exists: importing the official client (``kubernetes``: its package imports every
generated model) costs about 0.3 s, a fifth of what ``lbd status`` takes on 10 000 Services
(tests/bench/bench_status.py, issue 15). A command-line tool pays it on every run, although for
the usual kubeconfig (a server, its CA, and a bearer token or a client certificate) it needs no
more than a TLS context and one header.

What it takes, and what it leaves to the official loader: this reader accepts a file only when
its current context's cluster and user use nothing but the keys in :data:`CLUSTER_KEYS` and
:data:`USER_KEYS`, when no proxy is set in the environment (the official client honours
``HTTPS_PROXY`` and friends), and when every file it names can be read. For anything else
(``exec`` plugins, ``auth-provider``, basic auth, ``tokenFile``, ``proxy-url``,
``tls-server-name``, ``insecure-skip-tls-verify``, no CA, a broken file) it answers None and
:func:`lbd.k8s.client.load_kube` uses ``kubernetes.config`` as before, with its own error
messages: a file this module cannot read gets exactly the answer it got before. The keys and
the relative-path rule follow kubectl's documented kubeconfig format (paths are relative to the
file that names them).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
import yaml
from urllib3.util.ssl_ import create_urllib3_context

CLUSTER_KEYS = frozenset({"server", "certificate-authority", "certificate-authority-data"})
"""A cluster entry with only these keys is read here (a CA is required: see the module doc)."""
USER_KEYS = frozenset(
    {"token", "client-certificate", "client-certificate-data", "client-key", "client-key-data"}
)
"""A user entry with only these keys is read here; any other (exec, auth-provider, username,
tokenFile, as ...) goes to the official loader."""
PROXY_VARIABLES = (
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
)


@dataclass
class Transport:
    """Where requests go and how they authenticate.

    ``auth_headers`` is called for every request: the official client's credentials may be
    refreshed (in-cluster token rotation, exec plugins); a static one returns the same header.
    """

    host: str
    pool: urllib3.PoolManager
    auth_headers: Callable[[], Mapping[str, str]]
    closer: Callable[[], None] | None = None
    """Releases what else the transport holds (the official ApiClient's thread pool)."""

    def close(self) -> None:
        self.pool.clear()
        if self.closer is not None:
            self.closer()


def static_transport(path: str, *, pool_size: int) -> Transport | None:
    """A :class:`Transport` for the kubeconfig at ``path``, or None when the official loader
    must read it (see the module doc)."""
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return None
    try:
        with open(path, "rb") as fh:
            doc = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        picked = _current(doc)
        if picked is None:
            return None
        cluster, user = picked
        server = cluster.get("server")
        if not isinstance(server, str) or not server.startswith("https://"):
            return None
        base = os.path.dirname(os.path.abspath(path))
        context = _tls_context(cluster, user, base)
    except (OSError, ValueError, yaml.YAMLError, ssl.SSLError, binascii.Error):
        return None  # the official loader reads it again and says what is wrong
    if context is None:
        return None
    headers = {"authorization": f"Bearer {user['token']}"} if user.get("token") else {}
    pool = urllib3.PoolManager(maxsize=pool_size, ssl_context=context, cert_reqs="CERT_REQUIRED")
    return Transport(host=server.rstrip("/"), pool=pool, auth_headers=lambda: headers)


def _current(doc: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """The current context's cluster and user entries, when both hold only keys read here."""
    if not isinstance(doc, dict):
        return None
    context = _named(doc.get("contexts"), doc.get("current-context"), "context")
    if context is None:
        return None
    cluster = _named(doc.get("clusters"), context.get("cluster"), "cluster")
    user = _named(doc.get("users"), context.get("user"), "user")
    if cluster is None or user is None:
        return None
    # ``extensions`` (minikube writes one per cluster) carry nothing a connection uses.
    cluster = {k: v for k, v in cluster.items() if k != "extensions"}
    user = {k: v for k, v in user.items() if k != "extensions"}
    if not cluster.keys() <= CLUSTER_KEYS or not user.keys() <= USER_KEYS:
        return None
    if not all(isinstance(v, str) for v in (*cluster.values(), *user.values())):
        return None
    return cluster, user


def _named(entries: Any, name: Any, field: str) -> Mapping[str, Any] | None:
    if not isinstance(entries, list) or not isinstance(name, str) or not name:
        return None
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            inner = entry.get(field)
            return inner if isinstance(inner, dict) else None
    return None


def _tls_context(
    cluster: Mapping[str, Any], user: Mapping[str, Any], base: str
) -> ssl.SSLContext | None:
    """The TLS context: the cluster's CA, and the user's client certificate if it has one."""
    context = create_urllib3_context()
    if cluster.get("certificate-authority-data"):
        pem = base64.b64decode(cluster["certificate-authority-data"], validate=True)
        context.load_verify_locations(cadata=pem.decode("ascii"))
    elif cluster.get("certificate-authority"):
        context.load_verify_locations(cafile=_path(base, cluster["certificate-authority"]))
    else:
        return None  # the official client then trusts the system's CAs: its way, not ours
    cert = _pem(user, "client-certificate", base)
    key = _pem(user, "client-key", base)
    if (cert is None) != (key is None):
        return None
    if cert is not None and key is not None:
        with _files(cert, key) as (cert_file, key_file):
            context.load_cert_chain(cert_file, key_file)
    return context


def _path(base: str, name: str) -> str:
    return os.path.join(base, os.path.expanduser(name))


def _pem(user: Mapping[str, Any], key: str, base: str) -> bytes | None:
    """A certificate or key, from its ``-data`` field (base64) or its file."""
    if user.get(f"{key}-data"):
        return base64.b64decode(user[f"{key}-data"], validate=True)
    if user.get(key):
        with open(_path(base, user[key]), "rb") as fh:
            return fh.read()
    return None


@contextlib.contextmanager
def _files(*contents: bytes) -> Iterator[tuple[str, ...]]:
    """The contents in private files for as long as ``ssl`` needs to load them (it reads
    certificates only from files); the folder is removed at once after."""
    with tempfile.TemporaryDirectory(prefix="lbd-kubeconfig-") as folder:
        paths = []
        for i, data in enumerate(contents):
            name = os.path.join(folder, str(i))
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            paths.append(name)
        yield tuple(paths)

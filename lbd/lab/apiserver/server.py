"""``LabApiServer``: the in-process handle tests and ``lbd lab apiserver`` use.

::

    server = LabApiServer(crds_dir="crds", rbac_files=["deploy/rbac.yaml"])
    server.start()
    server.add_token("t0k3n", user="system:serviceaccount:lbd-system:lbd-controller")
    server.write_kubeconfig("kubeconfig", token="t0k3n")
    ...
    server.stop()

The server owns a :class:`~lbd.lab.apiserver.store.Store`, the resource
:class:`~lbd.lab.apiserver.resources.Registry`, the token table, the RBAC authorizer and the
:class:`~lbd.lab.apiserver.faults.Faults`. An admin token (user ``admin``, group
``system:masters``) is created at start; it bypasses RBAC and is the only identity allowed to
use ``/_lab/faults`` and ``/_lab/audit`` (the record of every authorization decision, see
:mod:`~lbd.lab.apiserver.audit`).

Outages are implemented at the socket level so clients see what they would see when a real API
server goes away: in ``refuse`` mode open connections (watches included) are shut down and
connections made during the outage are reset right after ``accept``; in ``hang`` mode requests
and watch streams stall. Afterwards everything works again.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import os
import secrets
import shutil
import socket
import struct
import threading
from collections.abc import Iterable, Sequence
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lbd.lab.apiserver.api import Api
from lbd.lab.apiserver.audit import AuditLog, AuditRecord
from lbd.lab.apiserver.builtin import KUBERNETES_SERVICE_IP, NODE_PORTS, IpAllocator
from lbd.lab.apiserver.errors import ApiError
from lbd.lab.apiserver.faults import FaultCalls, Faults, OutageMode
from lbd.lab.apiserver.http import Handler
from lbd.lab.apiserver.openapi import Documents
from lbd.lab.apiserver.rbac import (
    ADMIN_GROUP,
    ANONYMOUS,
    Attributes,
    Authorizer,
    Tokens,
    User,
    rbac_documents,
    user_for,
)
from lbd.lab.apiserver.resources import Registry
from lbd.lab.apiserver.store import SavedState, Store
from lbd.lab.apiserver.tls import TlsFiles, make_self_signed, wrap_listener
from lbd.lab.lifecycle import Startable, serve_in_thread
from lbd.runtime.clock import Clock, MonotonicClock

if TYPE_CHECKING:
    from kubernetes import client as k8s_client

log = logging.getLogger("lbd.lab.apiserver")
ADMIN = user_for("admin", [ADMIN_GROUP])


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type[Handler], lab: LabApiServer) -> None:
        self.lab = lab
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.address_family = family
        super().__init__(addr, handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.lab.faults.refusing():
            self.lab.abort(request)
            return False
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)


class LabApiServer(FaultCalls, Startable):
    """A Kubernetes API stand-in serving on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        crds_dir: str | os.PathLike[str] | None = None,
        rbac_files: Sequence[str | os.PathLike[str]] = (),
        history_size: int = 20000,
        admin_token: str | None = None,
        bookmark_interval: float = 60.0,
        max_watch_seconds: float = 1800.0,
        advertise_host: str | None = None,
        anonymous_admin: bool = False,
        tls: bool | TlsFiles = False,
        clock: Clock | None = None,
        node_port_range: tuple[int, int] = NODE_PORTS,
    ) -> None:
        self.host = host
        self.port = port
        self.clock: Clock = clock or MonotonicClock()
        self.registry = Registry()
        self.openapi = Documents(self.registry)
        self.store = Store(history_size=history_size)
        self.api = Api(self.registry, self.store)
        self.api.alloc = IpAllocator(node_port_range)  # kube-apiserver's --service-node-port-range
        self.tokens = Tokens()
        self.authorizer = Authorizer(self.store)
        self.audit_log = AuditLog()
        self.faults = Faults(self.clock)
        self.bookmark_interval = bookmark_interval
        self.max_watch_seconds = max_watch_seconds
        self.admin_token = admin_token or secrets.token_hex(16)
        self.tokens.add(self.admin_token, "admin", [ADMIN_GROUP])
        self._advertise_host = advertise_host
        # kubectl never sends a bearer token over plain HTTP (kubernetes/kubectl#744); a lab
        # that wants kubectl without TLS can treat unauthenticated requests as the admin
        self.anonymous = ADMIN if anonymous_admin else ANONYMOUS
        # ``tls=True``: a self-signed certificate made now (and removed at stop); a TlsFiles:
        # the caller's certificate (the lab's, which its kubeconfigs trust), left in place
        self.tls: TlsFiles | None = None
        self._own_tls = tls is True
        if isinstance(tls, TlsFiles):
            self.tls = tls
        elif tls:
            self.tls = make_self_signed(advertise_host or host)
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._requests = 0
        self._errors: list[BaseException] = []
        if crds_dir is not None:
            self.apply_dir(crds_dir)
        for path in rbac_files:
            self.load_rbac(path)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> LabApiServer:
        handler = type("BoundHandler", (Handler,), {"lab": self})
        self._httpd = _HttpServer((self.host, self.port), handler, self)
        self.port = self._httpd.server_address[1]
        if self.tls is not None:
            wrap_listener(self._httpd, self.tls.cert, self.tls.key)
        self._publish_kubernetes_service()
        self._thread = serve_in_thread(self._httpd, "lab-apiserver")
        return self

    def _publish_kubernetes_service(self) -> None:
        """``default/kubernetes``, the Service (and EndpointSlice) every cluster has for its
        API server: ``kubectl get svc`` shows it first on any cluster."""
        svc_rt = self.registry.lookup("", "v1", "services")
        slice_rt = self.registry.lookup("discovery.k8s.io", "v1", "endpointslices")
        assert svc_rt is not None and slice_rt is not None
        if self.store.get(svc_rt.key, ("default", "kubernetes")) is not None:
            return
        labels = {"component": "apiserver", "provider": "kubernetes"}
        port = {"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.port}
        self.api.create(
            svc_rt,
            "default",
            {
                "metadata": {"name": "kubernetes", "labels": labels},
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": KUBERNETES_SERVICE_IP,
                    "ipFamilyPolicy": "SingleStack",
                    "ports": [port],
                    "sessionAffinity": "None",
                },
            },
        )
        host = self._advertise_host or self.host
        with contextlib.suppress(ValueError):  # a host name: no address to publish
            address = ipaddress.ip_address(host)
            if address.is_loopback or address.is_unspecified:
                # kube-apiserver cannot publish those either: endpoint addresses may not be
                # loopback, so a control plane on 127.0.0.1 has no kubernetes endpoints
                return
            family = "IPv6" if address.version == 6 else "IPv4"
            self.api.create(
                slice_rt,
                "default",
                {
                    "metadata": {
                        "name": "kubernetes",
                        "labels": {"kubernetes.io/service-name": "kubernetes"},
                    },
                    "addressType": family,
                    "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
                    "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}],
                },
            )

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        self.store.close_watchers()
        self._cut_connections(httpd)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.tls is not None and self._own_tls:
            shutil.rmtree(self.tls.directory, ignore_errors=True)

    @property
    def address(self) -> str:
        host = self._advertise_host or self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def request_count(self) -> int:
        return self._requests

    def count_request(self) -> None:
        self._requests += 1  # approximate under threads; only used for reporting

    def log_exception(self, exc: BaseException) -> None:
        self._errors.append(exc)
        log.exception("internal error while serving a request", exc_info=exc)

    @property
    def internal_errors(self) -> list[BaseException]:
        """Unexpected exceptions caught while serving (a test can assert there were none)."""
        return list(self._errors)

    # -- authorization and its audit record ---------------------------------------------------

    def authorize(self, user: User, attrs: Attributes) -> bool:
        """Whether RBAC lets ``user`` do ``attrs``; every decision goes into the audit record."""
        allowed = self.authorizer.allowed(user, attrs)
        self.audit_log.record(user, attrs, allowed)
        return allowed

    def audit(self) -> list[AuditRecord]:
        """The distinct authorization decisions so far, with counts (``GET /_lab/audit``)."""
        return self.audit_log.records()

    def reset_audit(self) -> None:
        self.audit_log.clear()

    # -- identities -----------------------------------------------------------------------------

    def add_token(self, token: str, user: str, groups: Iterable[str] = ()) -> User:
        """Map a bearer token to a user (``system:serviceaccount:NS:NAME`` for an SA)."""
        return self.tokens.add(token, user, groups)

    def add_node_token(self, token: str, user: str, node: str) -> User:
        """``token`` for ``user`` (the real server binds it to a Pod on ``node``; the stand-in
        has no admission policies, so the node changes nothing here)."""
        del node
        return self.add_token(token, user)

    def client_configuration(self, token: str | None = None) -> k8s_client.Configuration:
        """An official-client ``Configuration`` for ``token`` (default: the admin), trusting
        this server's certificate when it serves TLS (the real control plane's
        ``RealApiServer`` has the same call, so tests build clients the same way for both)."""
        from kubernetes import client as k8s_client  # only here: the stand-in starts without it

        cfg = k8s_client.Configuration()
        cfg.host = self.url
        cfg.api_key = {"BearerToken": token or self.admin_token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        if self.tls is not None:
            cfg.ssl_ca_cert = str(self.tls.cert)
        return cfg

    def kubeconfig(self, token: str | None = None, *, name: str = "lab") -> dict[str, Any]:
        token = token or self.admin_token
        cluster: dict[str, Any] = {"server": self.url}
        if self.tls is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.tls.cert_pem()).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": cluster}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [
                {
                    "name": name,
                    "context": {"cluster": name, "user": name, "namespace": "default"},
                }
            ],
            "current-context": name,
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | os.PathLike[str], token: str | None = None) -> Path:
        """Write a kubeconfig for ``token`` (default: the admin token); mode 0600."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(self.kubeconfig(token), fh, sort_keys=False)
        return out

    # -- loading objects ------------------------------------------------------------------------

    def apply_object(self, obj: dict[str, Any]) -> None:
        """Create ``obj`` (or replace it when it exists), as the admin; creates its namespace
        when that does not exist yet."""
        rt = self.registry.by_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        if rt is None:
            raise ValueError(
                f"{obj.get('apiVersion')}/{obj.get('kind')}: no such resource is served"
            )
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or ("default" if rt.namespaced else "")
        if rt.namespaced and self.store.get(("", "namespaces"), ("", ns)) is None:
            # files loaded at start (deploy/ RBAC) name namespaces nothing has created yet
            ns_rt = self.registry.lookup("", "v1", "namespaces")
            assert ns_rt is not None
            self.api.create(ns_rt, "", {"metadata": {"name": ns}})
        try:
            self.api.create(rt, ns, dict(obj))
        except ApiError as err:
            if err.code != 409:
                raise
            current = self.api.get(rt, ns, meta["name"])
            body = dict(obj)
            body["metadata"] = {
                **meta,
                "resourceVersion": current.obj["metadata"]["resourceVersion"],
            }
            self.api.update(rt, ns, meta["name"], "", body)

    def apply_dir(self, directory: str | os.PathLike[str]) -> int:
        """Apply every ``*.yaml`` / ``*.yml`` / ``*.json`` in ``directory`` (sorted)."""
        n = 0
        for path in sorted(Path(directory).iterdir()):
            if path.suffix in (".yaml", ".yml", ".json"):
                n += self.apply_file(path)
        return n

    def apply_file(self, path: str | os.PathLike[str]) -> int:
        with open(path) as fh:
            docs = [d for d in yaml.safe_load_all(fh) if isinstance(d, dict)]
        for doc in docs:
            self.apply_object(doc)
        return len(docs)

    def load_rbac(self, path: str | os.PathLike[str]) -> int:
        """Load the Roles, ClusterRoles and bindings of a multi-document YAML file."""
        with open(path) as fh:
            docs = rbac_documents(yaml.safe_load_all(fh))
        for doc in docs:
            self.apply_object(doc)
        return len(docs)

    # -- faults ---------------------------------------------------------------------------------

    def snapshot(self) -> SavedState:
        """Every object and the resourceVersion now, for :meth:`restore` (an etcd snapshot)."""
        return self.store.save()

    def restore(self, saved: object) -> None:
        """Rewind to ``saved`` (a :meth:`snapshot`) as restoring etcd and restarting
        kube-apiserver do: objects and resourceVersion go back with no watch event, every
        connection is cut, and a watch from a version after ``saved`` waits silently."""
        assert isinstance(saved, SavedState), "restore: a snapshot() of this server"
        self.store.restore(saved)
        if self._httpd is not None:
            self._cut_connections(self._httpd)

    def close_watches(self) -> int:
        """End every open watch stream cleanly (clients see the stream end and re-watch)."""
        return self.store.close_watchers()

    def reset_connections(self) -> int:
        """Reset (RST) every open connection, watches included, as a broken network does."""
        if self._httpd is None:
            return 0
        with self._httpd.conn_lock:
            n = len(self._httpd.connections)
        self._cut_connections(self._httpd)
        return n

    def outage(self, seconds: float, mode: OutageMode | str = OutageMode.REFUSE) -> None:
        """Stop answering for ``seconds``, then recover.

        ``refuse``: cut open connections (watches included) and reset new ones, like a crashed
        server. ``hang``: accept but do not answer, and stall watch streams, like a network
        partition; what is still waiting afterwards is served.
        """
        mode = OutageMode(mode)
        self.faults.start_outage(seconds, mode)
        if mode is OutageMode.REFUSE:
            self.store.close_watchers()
            if self._httpd is not None:
                self._cut_connections(self._httpd)

    def apply_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The JSON form used by ``POST /_lab/faults``."""
        action = spec.get("action")
        verb, path = spec.get("verb"), spec.get("path")
        if action == "fail":
            self.fail_next(
                int(spec.get("count", 1)), int(spec.get("code", 500)), verb=verb, path=path
            )
        elif action == "latency":
            self.add_latency(float(spec["seconds"]), verb=verb, path=path)
        elif action == "close_watches":
            return {"closed": self.close_watches()}
        elif action == "outage":
            # answer first: the outage would cut this very connection
            seconds, mode = float(spec["seconds"]), OutageMode(spec.get("mode", "refuse"))
            timer = threading.Timer(0.05, self.outage, args=(seconds, mode))
            timer.daemon = True
            timer.start()
        elif action == "reset":
            self.reset_faults()
        else:
            raise ValueError(
                "action: must be one of fail, latency, close_watches, outage, reset; "
                f"got {action!r}"
            )
        return {}

    def abort(self, sock: socket.socket) -> None:
        """Reset a connection (RST, not FIN), as a crashed or unreachable server would."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _cut_connections(self, httpd: _HttpServer) -> None:
        with httpd.conn_lock:
            conns = list(httpd.connections)
        for sock in conns:
            self.abort(sock)

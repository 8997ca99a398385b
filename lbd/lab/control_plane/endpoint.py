"""The stand-in's test-facing calls, on a real control plane behind a fault proxy.

Tests written against :class:`~lbd.lab.apiserver.LabApiServer` use a handful of its calls:
``url``, ``client_configuration(token)``, ``write_kubeconfig(path, token)``,
``add_token(token, user)``, ``apply_object`` / ``apply_file`` / ``apply_dir`` / ``load_rbac``,
and the faults (``fail_next``, ``add_latency``, ``close_watches``, ``reset_connections``,
``outage``, ``reset_faults``). :class:`RealApiServer` offers the same calls on a
:class:`~lbd.lab.control_plane.plane.ControlPlane`, so one test body drives either:

- requests go through a :class:`~lbd.lab.control_plane.proxy.FaultProxy` (``url`` is the
  proxy's), which is where the faults happen; ``direct`` is an admin client that bypasses it;
- ``add_token(name, "system:serviceaccount:NS:SA")`` asks the TokenRequest API for a real token
  of that ServiceAccount (created when missing) and remembers it under ``name``; wherever a token
  is taken, that name stands for the real token, so ``kube_for(server, CONTROLLER_TOKEN)`` works
  on both servers. A token never registered passes through as is (and is refused with 401);
- ``admin_token`` is a static token of a ``system:masters`` user (it bypasses RBAC, as the
  stand-in's admin does).

:class:`Sweeper` gives each test a clean cluster on a control plane shared by many tests: it
remembers what exists after set-up and deletes whatever a test added.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client

from lbd.k8s.client import ApiError, JsonDict, Kube, Resource
from lbd.lab.apiserver.faults import FaultCalls, OutageMode
from lbd.lab.control_plane.plane import ControlPlane
from lbd.lab.control_plane.proxy import FaultProxy
from lbd.lab.lifecycle import Startable

SA_PREFIX = "system:serviceaccount:"


class RealApiServer(FaultCalls, Startable):
    """A :class:`ControlPlane` seen through a fresh :class:`FaultProxy`, with the stand-in's
    calls. ``stop()`` stops the proxy only: the control plane belongs to whoever started it."""

    def __init__(
        self,
        plane: ControlPlane,
        tokens: Mapping[str, str] | None = None,
        *,
        proxy: bool = True,
    ) -> None:
        assert plane.pki is not None, "start the control plane first"
        self.plane = plane
        self.proxy = FaultProxy(plane.url, plane.ca_cert, plane.pki.serving, host=plane.host)
        self.faults = self.proxy.faults  # fail_next, add_latency, reset_faults (FaultCalls)
        self._proxied = proxy  # False (benchmarks): clients go straight to kube-apiserver
        self._tokens: dict[str, str] = dict(tokens or {})
        self._direct: Kube | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> RealApiServer:
        if self._proxied:
            self.proxy.start()
        return self

    def stop(self) -> None:
        self.proxy.stop()
        if self._direct is not None:
            self._direct.close()
            self._direct = None

    @property
    def url(self) -> str:
        return self.proxy.url if self._proxied else self.plane.url

    @property
    def request_count(self) -> int:
        """Requests kube-apiserver has served (``apiserver_request_total``), all clients."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.plane.call(lambda: self.direct.request_text("/metrics"))
        return int(
            sum(
                sample.value
                for family in text_string_to_metric_families(text)
                if family.name == "apiserver_request"
                for sample in family.samples
                if sample.name == "apiserver_request_total"
            )
        )

    @property
    def admin_token(self) -> str:
        return self.plane.admin_token

    @property
    def ca_cert(self) -> Path:
        return self.plane.ca_cert

    @property
    def direct(self) -> Kube:
        """An admin client straight to kube-apiserver (no faults)."""
        if self._direct is None:
            self._direct = self.plane.kube()
        return self._direct

    # -- identities -----------------------------------------------------------------------------

    def add_token(self, token: str, user: str, groups: Iterable[str] = ()) -> str:
        """Let ``token`` stand for a real token of ServiceAccount ``user``
        (``system:serviceaccount:NS:NAME``); returns the real token."""
        if tuple(groups):
            raise ValueError(f"groups: a ServiceAccount's groups are the server's, got {groups}")
        real = self.plane.service_account_token(*self._service_account(user))
        self._tokens[token] = real
        return real

    def add_node_token(self, token: str, user: str, node: str) -> str:
        """Let ``token`` stand for a token of ServiceAccount ``user`` bound to a Pod on
        ``node`` (what a speaker Pod holds); returns the real token."""
        namespace, name = self._service_account(user)
        real = self.plane.node_bound_token(namespace, name, node)
        self._tokens[token] = real
        return real

    def token(self, token: str | None) -> str:
        """The real token ``token`` stands for (the admin's for ``None``)."""
        if token is None:
            return self.admin_token
        return self._tokens.get(token, token)

    @staticmethod
    def _service_account(user: str) -> tuple[str, str]:
        if not user.startswith(SA_PREFIX) or user.count(":") != 3:
            raise ValueError(
                f"user: a real API server issues tokens only to ServiceAccounts "
                f"(system:serviceaccount:NS:NAME), got {user!r}"
            )
        namespace, name = user[len(SA_PREFIX) :].split(":")
        return namespace, name

    def client_configuration(self, token: str | None = None) -> k8s_client.Configuration:
        """An official-client ``Configuration`` for ``token`` (default: the admin), through the
        proxy, trusting the control plane's CA."""
        return self.plane.configuration(self.token(token), url=self.url)

    def kubeconfig(self, token: str | None = None) -> JsonDict:
        return self.plane.kubeconfig(self.token(token), url=self.url)

    def write_kubeconfig(self, path: str | os.PathLike[str], token: str | None = None) -> Path:
        return self.plane.write_kubeconfig(path, self.token(token), url=self.url)

    # -- loading objects ------------------------------------------------------------------------

    def apply_object(self, obj: dict[str, Any]) -> None:
        self.plane.apply_object(obj)

    def apply_file(self, path: str | os.PathLike[str]) -> int:
        return self.plane.apply_file(path)

    def apply_dir(self, directory: str | os.PathLike[str]) -> int:
        return self.plane.apply_dir(directory)

    def load_rbac(self, path: str | os.PathLike[str]) -> int:
        """Apply the RBAC objects of a manifest file (ServiceAccounts and Namespaces too)."""
        return self.plane.apply_file(path)

    # -- a rewound API --------------------------------------------------------------------------

    def snapshot(self) -> Path:
        """etcd's data now (:meth:`ControlPlane.etcd_snapshot`), for :meth:`restore`."""
        return self.plane.etcd_snapshot()

    def restore(self, snapshot: object) -> None:
        """Restore etcd from ``snapshot`` and restart kube-apiserver and
        kube-controller-manager (:meth:`ControlPlane.etcd_restore`)."""
        assert isinstance(snapshot, Path), "restore: a snapshot() of this server"
        self.plane.etcd_restore(snapshot)

    # -- faults (the proxy's) -------------------------------------------------------------------

    def close_watches(self) -> int:
        return self.proxy.close_watches()

    def reset_connections(self) -> int:
        return self.proxy.reset_connections()

    def outage(self, seconds: float, mode: OutageMode | str = OutageMode.REFUSE) -> None:
        self.proxy.outage(seconds, mode)


# Kinds a test may create, swept after each test; anything else is left as it was.
SWEPT = (
    Resource("", "v1", "namespaces", "Namespace", False),
    Resource("", "v1", "services", "Service", True),
    Resource("", "v1", "events", "Event", True),
    Resource("", "v1", "configmaps", "ConfigMap", True),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True),
    Resource("", "v1", "pods", "Pod", True),
    Resource("", "v1", "nodes", "Node", False),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    Resource("lbd.io", "v1beta1", "ipaddresspools", "IPAddressPool", False),
    Resource("lbd.io", "v1beta1", "l2advertisements", "L2Advertisement", False),
    Resource("lbd.io", "v1beta1", "servicel2statuses", "ServiceL2Status", True),
)


def _key(meta: Mapping[str, Any]) -> tuple[str, str]:
    return str(meta.get("namespace") or ""), str(meta["name"])


class Sweeper:
    """Remembers the objects of :data:`SWEPT` kinds that exist now; :meth:`sweep` deletes every
    one added since (namespaces last, and waits until they are gone, so that the next test may
    create a namespace of the same name)."""

    def __init__(self, kube: Kube, kinds: Iterable[Resource] = SWEPT) -> None:
        self.kube = kube
        self.kinds = tuple(kinds)
        self.baseline: dict[Resource, set[tuple[str, str]]] = {
            kind: {_key(o["metadata"]) for o in self._list(kind)} for kind in self.kinds
        }

    def _list(self, kind: Resource, timeout: float = 30.0) -> list[JsonDict]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                items: list[JsonDict] = self.kube.get(kind.path()).get("items") or []
            except ApiError as exc:
                if exc.status == 404:  # not served (a CRD not applied): nothing to sweep
                    return []
                # 429 "storage is (re)initializing": a restarted kube-apiserver fills the watch
                # cache of each custom resource on first use
                if exc.status not in (0, 429) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
            return items

    def sweep(self, timeout: float = 60.0) -> int:
        """Delete what was added since the baseline; returns how many objects."""
        deleted = 0
        namespaces = self.kinds[0] if self.kinds and self.kinds[0].plural == "namespaces" else None
        new_namespaces: set[str] = set()
        if namespaces is not None:
            base = self.baseline[namespaces]
            for namespace in self._list(namespaces):
                key = _key(namespace["metadata"])
                if key not in base:
                    new_namespaces.add(key[1])
                    deleted += self._delete(namespaces.path(name=key[1]))
        for kind in self.kinds:
            if kind is namespaces:
                continue
            base = self.baseline[kind]
            extra: dict[str, list[str]] = {}
            for obj in self._list(kind):
                ns, name = _key(obj["metadata"])
                if (ns, name) in base or ns in new_namespaces:
                    continue  # the namespace controller removes what a deleted namespace held
                if obj["metadata"].get("finalizers"):
                    self._clear_finalizers(kind, ns, name)
                extra.setdefault(ns, []).append(name)
            for ns, names in extra.items():
                # Many objects (the chaos test leaves thousands of Events) and none to keep in
                # that namespace: one delete-collection request instead of one per object.
                bulk = len(names) > 5 and kind.namespaced and not any(b[0] == ns for b in base)
                if bulk and self._delete(kind.path(namespace=ns), collection=True):
                    deleted += len(names)
                    continue
                for name in names:
                    deleted += self._delete(kind.path(namespace=ns or None, name=name))
        deadline = time.monotonic() + timeout
        while new_namespaces:
            left = {n["metadata"]["name"] for n in self._list(namespaces)} if namespaces else set()
            new_namespaces &= left
            if not new_namespaces:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"namespaces {sorted(new_namespaces)} not gone after {timeout} s"
                )
            time.sleep(0.1)
        return deleted

    def _clear_finalizers(self, kind: Resource, ns: str, name: str) -> None:
        with contextlib.suppress(ApiError):
            self.kube.patch(
                kind.path(namespace=ns or None, name=name), {"metadata": {"finalizers": None}}
            )

    def _delete(self, path: str, *, collection: bool = False) -> int:
        body = {"gracePeriodSeconds": 0, "propagationPolicy": "Background"}
        try:
            self.kube.delete(path, body=body)
        except ApiError as exc:
            if exc.status == 404 or (collection and exc.status == 405):
                return 0  # gone already / this resource has no delete-collection
            raise
        return 1

"""The lab's endpoints stand-in: EndpointSlices for the echo "pods" on every live node.

The lab has no kubelet and no pods; what answers on each node is the echo service (port 9000).
For every Service whose selector is exactly ``app: echo`` this keeps one EndpointSlice per IP
family listing one endpoint per node whose Node is ``Ready=True`` (address = the node's
InternalIP of that family, ``nodeName`` = the node), which is what the EndpointSlice controller
would publish for a DaemonSet of echo pods. ``externalTrafficPolicy: Local`` then behaves as in a
cluster: a node with a ready endpoint may announce.

Reconcile is level-triggered: on any change of Services, Nodes or our own slices, the desired
slices are recomputed (:func:`desired_slices`, pure) and only differences are written.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import threading
from collections.abc import Iterable
from typing import Any

from lbd import log as lbd_log
from lbd.k8s.client import ENDPOINTSLICES, NODES, SERVICES, ApiError, Kube, load_kube
from lbd.k8s.informer import Informer

log = logging.getLogger(__name__)

MANAGED_BY = "endpoints.lab.lbd.io"
ECHO_SELECTOR = {"app": "echo"}
ECHO_PORT = 9000
_FAMILY_TYPE = {"IPv4": "IPv4", "IPv6": "IPv6"}


def service_families(svc: dict[str, Any]) -> list[str]:
    spec = svc.get("spec") or {}
    families = spec.get("ipFamilies")
    if families:
        return [f for f in families if f in _FAMILY_TYPE]
    if spec.get("ipFamilyPolicy") in ("PreferDualStack", "RequireDualStack"):
        return ["IPv4", "IPv6"]
    return ["IPv4"]


def node_ready(node: dict[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def node_ip(node: dict[str, Any], family: str) -> str | None:
    version = 4 if family == "IPv4" else 6
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") != "InternalIP":
            continue
        try:
            if ipaddress.ip_address(addr.get("address", "")).version == version:
                return str(addr["address"])
        except ValueError:
            continue
    return None


def desired_slices(
    services: Iterable[dict[str, Any]], nodes: Iterable[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """``namespace/name`` -> EndpointSlice body for every echo Service and family."""
    live = sorted((n for n in nodes if node_ready(n)), key=lambda n: n["metadata"]["name"])
    out: dict[str, dict[str, Any]] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("selector") != ECHO_SELECTOR:
            continue
        meta = svc["metadata"]
        ports = [
            {"name": p.get("name", ""), "port": ECHO_PORT, "protocol": p.get("protocol", "TCP")}
            for p in spec.get("ports") or []
        ]
        for family in service_families(svc):
            endpoints = []
            for node in live:
                ip = node_ip(node, family)
                if ip is None:
                    continue
                endpoints.append(
                    {
                        "addresses": [ip],
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                        "nodeName": node["metadata"]["name"],
                    }
                )
            name = f"{meta['name']}-{family.lower()}"
            out[f"{meta['namespace']}/{name}"] = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": name,
                    "namespace": meta["namespace"],
                    "labels": {
                        "kubernetes.io/service-name": meta["name"],
                        "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                    },
                },
                "addressType": _FAMILY_TYPE[family],
                "endpoints": endpoints,
                "ports": ports,
            }
    return out


def _same(have: dict[str, Any], want: dict[str, Any]) -> bool:
    return all(have.get(k) == want.get(k) for k in ("addressType", "endpoints", "ports")) and (
        (have.get("metadata") or {}).get("labels") == want["metadata"]["labels"]
    )


class EndpointsStandIn:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.dirty = threading.Event()
        self.services = Informer(kube, SERVICES, name="services")
        self.nodes = Informer(kube, NODES, name="nodes")
        self.slices = Informer(
            kube,
            ENDPOINTSLICES,
            name="endpointslices",
            label_selector=f"endpointslice.kubernetes.io/managed-by={MANAGED_BY}",
        )
        for inf in (self.services, self.nodes, self.slices):
            inf.add_handler(lambda *_: self.dirty.set())

    def reconcile(self) -> bool:
        """Write the differences; False if a write failed (the caller retries later)."""
        ok = True
        want = desired_slices(self.services.store.list(), self.nodes.store.list())
        have = {
            f"{s['metadata']['namespace']}/{s['metadata']['name']}": s
            for s in self.slices.store.list()
        }
        for key, body in want.items():
            current = have.get(key)
            try:
                if current is None:
                    self.kube.create(ENDPOINTSLICES.path(namespace=key.split("/")[0]), body)
                    log.info("endpointslice created", extra={"key": key})
                elif not _same(current, body):
                    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    self.kube.replace(ENDPOINTSLICES.object_path(body), body)
                    log.info("endpointslice updated", extra={"key": key})
            except ApiError as exc:
                log.warning("endpointslice write failed", extra={"key": key, "error": str(exc)})
                ok = False
        for key, current in have.items():
            if key not in want:
                try:
                    self.kube.delete(ENDPOINTSLICES.object_path(current))
                    log.info("endpointslice deleted", extra={"key": key})
                except ApiError as exc:
                    if exc.status != 404:
                        ok = False
        return ok

    def run(self) -> None:
        for inf in (self.services, self.nodes, self.slices):
            inf.start()
        for inf in (self.services, self.nodes, self.slices):
            inf.wait_for_sync()
        self.dirty.set()
        pause = threading.Event()  # never set: a plain interruptible delay
        while True:
            self.dirty.wait()
            self.dirty.clear()
            if not self.reconcile():
                # Retry soon, but do not spin against a refusing API server.
                pause.wait(0.5)
                self.dirty.set()


def run(args: argparse.Namespace) -> int:
    lbd_log.setup("info")
    EndpointsStandIn(load_kube(args.kubeconfig)).run()
    return 0

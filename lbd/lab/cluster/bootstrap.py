"""What a cluster already has before lbd is installed, created in the lab's API server.

A real cluster has a kubelet per node that registers its Node (addresses, ``Ready``) and an
operator who creates the membership Secret and a pool. The lab does those steps itself, through
the API like anyone else, with the lab admin's credentials:

- namespace ``lbd-system`` and the Secret ``lbd-memberlist`` holding the membership key (the
  speakers read the key from a file, as they would from the mounted Secret);
- one Node per lab node: name, ``InternalIP`` addresses (IPv4 and IPv6), ``Ready=True``;
- the sample ``IPAddressPool`` ``lab`` (198.18.100.0/24, plus 2001:db8:18::100:0/120 with
  ``--ipv6``) and an ``L2Advertisement`` for it, as ``deploy/examples/lab-pool.yaml`` describes.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from lbd.k8s.client import (
    IPADDRESSPOOLS,
    L2ADVERTISEMENTS,
    LEASES,
    NAMESPACES,
    NODES,
    ApiError,
    Kube,
    PatchType,
    Resource,
    load_kube,
)
from lbd.lab.cluster.layout import POOL4, POOL6, Layout, Member

SECRETS = Resource("", "v1", "secrets", "Secret", True)
SYSTEM_NAMESPACE = "lbd-system"
MEMBERSHIP_SECRET = "lbd-memberlist"
POOL_NAME = "lab"


class BootstrapError(RuntimeError):
    """The lab API server did not come up or refused the lab's objects."""


def wait_for_api(kubeconfig: Path, *, timeout: float = 30.0) -> Kube:
    """A client for the lab API, once the server answers a list of namespaces."""
    kube = load_kube(str(kubeconfig), timeout=(2.0, 10.0))
    deadline = time.monotonic() + timeout
    while True:
        try:
            kube.get(NAMESPACES.path())
            return kube
        except ApiError as exc:
            if time.monotonic() > deadline:
                raise BootstrapError(
                    f"API server not answering after {timeout:.0f} s: {exc}; "
                    "see logs/apiserver.log in the lab directory"
                ) from exc
            time.sleep(0.05)  # polling for the server to come up: a condition with a deadline


def _create(kube: Kube, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        return kube.create(path, body)
    except ApiError as exc:
        if exc.status != 409:
            raise
        name = body["metadata"]["name"]
        return kube.get(f"{path}/{name}")


def node_object(member: Member, *, pod_cidrs: bool = False) -> dict[str, Any]:
    """The Node a kubelet would register; with ``pod_cidrs``, its pod ranges too (the real lab
    routes pods, and ``kubectl get nodes -o wide`` users expect ``spec.podCIDRs``)."""
    spec: dict[str, Any] = {}
    if pod_cidrs:
        spec = {"podCIDR": member.pod_cidrs()[0], "podCIDRs": list(member.pod_cidrs())}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": member.name,
            "labels": {
                "kubernetes.io/hostname": member.name,
                "kubernetes.io/os": "linux",
                "lab.lbd.io/node": "true",
            },
        },
        "spec": spec,
    }


def node_status(member: Member) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": member.ipv4},
                {"type": "InternalIP", "address": member.ipv6},
                {"type": "Hostname", "address": member.name},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "lab node (no kubelet: set by lbd lab)",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
        }
    }


def pool_objects(layout: Layout) -> list[tuple[Resource, dict[str, Any]]]:
    addresses = [POOL4] + ([POOL6] if layout.ipv6_pool else [])
    return [
        (
            IPADDRESSPOOLS,
            {
                "apiVersion": "lbd.io/v1beta1",
                "kind": "IPAddressPool",
                "metadata": {"name": POOL_NAME},
                "spec": {"addresses": addresses, "avoidBuggyIPs": True},
            },
        ),
        (
            L2ADVERTISEMENTS,
            {
                "apiVersion": "lbd.io/v1beta1",
                "kind": "L2Advertisement",
                "metadata": {"name": POOL_NAME},
                "spec": {"ipAddressPools": [POOL_NAME]},
            },
        ),
    ]


def bootstrap(kube: Kube, layout: Layout, *, membership_key: str, pod_cidrs: bool = False) -> None:
    for ns in (SYSTEM_NAMESPACE, "default"):
        _create(
            kube,
            NAMESPACES.path(),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        )
    _create(
        kube,
        SECRETS.path(namespace=SYSTEM_NAMESPACE),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": MEMBERSHIP_SECRET, "namespace": SYSTEM_NAMESPACE},
            "type": "Opaque",
            "data": {"key": base64.b64encode(membership_key.encode()).decode()},
        },
    )
    for member in layout.nodes:
        _create(kube, NODES.path(), node_object(member, pod_cidrs=pod_cidrs))
        kube.patch(
            NODES.path(name=member.name, subresource="status"),
            node_status(member),
            patch=PatchType.MERGE,
        )
    for resource, body in pool_objects(layout):
        _create(kube, resource.path(), body)


def set_node_ready(kube: Kube, name: str, status: str) -> None:
    """Set a Node's ``Ready`` condition (``True``/``False``/``Unknown``), as a kubelet would."""
    node = kube.get(NODES.path(name=name))
    conditions = [c for c in node.get("status", {}).get("conditions", []) if c["type"] != "Ready"]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conditions.append(
        {
            "type": "Ready",
            "status": status,
            "reason": "KubeletReady" if status == "True" else "LabSet",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
    )
    kube.patch(
        NODES.path(name=name, subresource="status"),
        {"status": {"conditions": conditions}},
        patch=PatchType.MERGE,
    )


def wait_ready(kube: Kube, layout: Layout, *, timeout: float = 30.0) -> None:
    """Wait until every Node is visible (the lab's objects are served)."""
    deadline = time.monotonic() + timeout
    want = {m.name for m in layout.nodes}
    while True:
        names = {n["metadata"]["name"] for n in kube.get(NODES.path()).get("items", [])}
        if want <= names:
            return
        if time.monotonic() > deadline:
            raise BootstrapError(f"nodes missing after {timeout:.0f} s: {sorted(want - names)}")
        time.sleep(0.05)  # polling a condition with a deadline


CONTROLLER_LEASE = "lbd-controller"


def get_or_none(kube: Kube, path: str) -> dict[str, Any] | None:
    """The object at ``path``, or None where there is none (yet)."""
    try:
        return kube.get(path)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def leader(kube: Kube) -> str | None:
    """The identity holding the controller's Lease, or None."""
    lease = get_or_none(kube, LEASES.path(namespace=SYSTEM_NAMESPACE, name=CONTROLLER_LEASE))
    holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
    return str(holder) if holder else None


def wait_for_leader(kube: Kube, *, timeout: float = 30.0, not_: str | None = None) -> str:
    """Wait until a controller replica (other than ``not_``) holds the Lease; its identity."""
    deadline = time.monotonic() + timeout
    while True:
        holder = leader(kube)
        if holder and holder != not_:
            return holder
        if time.monotonic() > deadline:
            raise BootstrapError(f"no controller leader after {timeout:.0f} s (holder: {holder})")
        time.sleep(0.1)  # polling a condition with a deadline

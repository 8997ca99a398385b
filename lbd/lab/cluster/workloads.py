"""The echo Pods of the real lab, and what the lab does to them in a kubelet's or a node
controller's place.

The lab places ``echo-<node>-<k>`` (``k`` = 1..N) on every node: ``spec.nodeName`` set (no
scheduler runs), label ``app: echo``, one container ``echo`` with ports 9000 TCP+UDP, 9001 TCP and
80 TCP. The node's lab kubelet (:mod:`lbd.lab.standins.kubelet`) gives each a namespace and
addresses and reports it Running and Ready; from there the real endpointslice controller lists
it and every kube-proxy sends Service traffic to it.

No node-lifecycle controller runs (nothing heartbeats for the nodes), so when ``kill-node`` cuts
a node off, the lab itself marks that node's pods not ready (:func:`set_pods_ready`), as the
node-lifecycle controller does once a node stops reporting (``MarkPodsNotReady``; reason
``NodeNotReady``). ``restore-node`` marks them ready again, as the node's kubelet would on
its next status update.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lbd.k8s.client import ApiError, Kube, PatchType, Resource
from lbd.lab.cluster.layout import Layout, Member

PODS = Resource("", "v1", "pods", "Pod", True)
NAMESPACE = "default"
APP_LABEL = {"app": "echo"}
CONTAINER = "echo"
IMAGE = "lbd.lab/echo:lab"  # never pulled: the lab kubelet runs the echo in-process
PORTS = (
    {"name": "echo-tcp", "containerPort": 9000, "protocol": "TCP"},
    {"name": "echo-udp", "containerPort": 9000, "protocol": "UDP"},
    {"name": "whoami", "containerPort": 9001, "protocol": "TCP"},
    {"name": "http", "containerPort": 80, "protocol": "TCP"},
)
DEFAULT_PODS_PER_NODE = 3


class PodsError(RuntimeError):
    """Pods could not be placed or did not become ready; the message says which and why."""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def pod_name(node: str, k: int) -> str:
    return f"echo-{node}-{k}"


def echo_pod(node: str, k: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(node, k),
            "namespace": NAMESPACE,
            "labels": {**APP_LABEL, "lab.lbd.io/node": node},
        },
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": CONTAINER, "image": IMAGE, "ports": [dict(p) for p in PORTS]}],
        },
    }


def pods_on(kube: Kube, node: str | None = None) -> list[dict[str, Any]]:
    """The echo pods (of every node, or of ``node``), by name."""
    query = {"labelSelector": "app=echo"}
    if node is not None:
        query["fieldSelector"] = f"spec.nodeName={node}"
    items: list[dict[str, Any]] = kube.get(PODS.path(namespace=NAMESPACE), query=query)["items"]
    return sorted(items, key=lambda p: p["metadata"]["name"])


def scale(kube: Kube, layout: Layout, per_node: int, nodes: Iterable[str] | None = None) -> int:
    """Make ``per_node`` echo pods exist on each of ``nodes`` (default: every node).

    Creates ``echo-<node>-1..per_node`` that are missing and deletes those above; returns how
    many pods were created or deleted. Deleting is graceful: the node's kubelet stops the pod and
    removes it, as a real one would.
    """
    if per_node < 0:
        raise PodsError(f"pods: {per_node} pods per node is negative")
    targets = [layout.node(n) for n in nodes] if nodes is not None else list(layout.nodes)
    changed = 0
    for member in targets:
        have = {p["metadata"]["name"]: p for p in pods_on(kube, member.name)}
        want = {pod_name(member.name, k) for k in range(1, per_node + 1)}
        for k in range(1, per_node + 1):
            if pod_name(member.name, k) not in have:
                try:
                    kube.create(PODS.path(namespace=NAMESPACE), echo_pod(member.name, k))
                    changed += 1
                except ApiError as exc:
                    if exc.status != 409:
                        raise
        for name, pod in have.items():
            if name not in want and not pod["metadata"].get("deletionTimestamp"):
                try:
                    kube.delete(PODS.path(namespace=NAMESPACE, name=name))
                    changed += 1
                except ApiError as exc:
                    if exc.status != 404:
                        raise
    return changed


def ready_condition(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def set_pods_ready(
    kube: Kube,
    node: Member,
    ready: bool,
    *,
    reason: str,
    pods: list[dict[str, Any]] | None = None,
) -> list[str]:
    """Set the Ready condition of every echo pod on ``node`` (``pods``: as listed before);
    returns the pods changed.

    The patches go out at once, one thread each: the endpointslice controller then sees the
    node's pods change together and writes one EndpointSlice update, which every kube-proxy
    applies in one sync. One after the other, the second change would reach a kube-proxy within
    its ``minSyncPeriod`` (1 s) of the first and wait for it (measured: 1.4 s client
    interruptions instead of 0.4 s when the probe's pod was marked last).
    """
    status = "True" if ready else "False"
    stamp = now()
    todo = [
        p
        for p in (pods if pods is not None else pods_on(kube, node.name))
        if ready_condition(p) != ready and not p["metadata"].get("deletionTimestamp")
    ]

    def mark(pod: dict[str, Any]) -> str:
        conditions = [
            {
                "type": kind,
                "status": status,
                "reason": None if ready else reason,
                "message": None if ready else f"node {node.name} is unreachable ({reason})",
                "lastTransitionTime": stamp,
            }
            for kind in ("Ready", "ContainersReady")
        ]
        kube.patch(
            PODS.path(namespace=NAMESPACE, name=pod["metadata"]["name"], subresource="status"),
            {"status": {"conditions": conditions}},
            patch=PatchType.STRATEGIC,
        )
        return str(pod["metadata"]["name"])

    if not todo:
        return []
    with ThreadPoolExecutor(max_workers=min(len(todo), 16)) as pool:
        return list(pool.map(mark, todo))


def wait_pods_ready(
    kube: Kube, layout: Layout, per_node: int, *, timeout: float, nodes: Iterable[str] | None = None
) -> None:
    """Wait until every node (or each of ``nodes``) runs exactly ``per_node`` ready echo pods."""
    names = list(nodes) if nodes is not None else [m.name for m in layout.nodes]
    deadline = time.monotonic() + timeout
    while True:
        pods = pods_on(kube)
        missing = []
        for node in names:
            mine = [p for p in pods if p["spec"].get("nodeName") == node]
            ready = [p for p in mine if ready_condition(p) and (p.get("status") or {}).get("podIP")]
            if len(ready) != per_node or len(mine) != per_node:
                missing.append(f"{node}: {len(ready)}/{per_node} ready, {len(mine)} present")
        if not missing:
            return
        if time.monotonic() > deadline:
            raise PodsError(
                f"pods: not ready after {timeout:.0f} s ({'; '.join(missing)}); "
                "see logs/kubelet-<node>.log in the lab directory"
            )
        time.sleep(0.1)  # polling a condition with a deadline

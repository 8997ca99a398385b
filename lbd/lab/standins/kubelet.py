"""The lab kubelet: runs the Pods bound to one node of the real lab and reports their status.

What a kubelet, a CNI plugin and a container runtime do for a pod, reduced to what the
load-balancing path needs (docs/LAB.md, "the lab on real components"):

- it watches the Pods whose ``spec.nodeName`` is its node (a field selector, as kubelets do);
- for each, it picks a slot on the node (``echo-n1-3`` gets slot 3 when free, so names and
  addresses agree; otherwise the lowest free one), builds the pod's network
  (:func:`lbd.lab.cluster.podnet.attach`: a namespace of its own, a veth routed from the node)
  and starts the pod's "container", an in-process :class:`~lbd.lab.standins.echo.PodServer`
  whose sockets live in the pod's namespace;
- it reports the pod ``Running`` and ``Ready`` with its ``podIP``/``podIPs`` and ``hostIP``, and
  puts that status back whenever it sees another one (a kubelet owns its pods' status; after
  ``restore-node`` this is what a node coming back does);
- a pod being deleted (``deletionTimestamp``) is stopped, its namespace removed, and the Pod
  deleted for good (grace period 0, with the pod's UID as precondition), as a kubelet finishes
  a graceful deletion.

After a restart it adopts the pod namespaces that still exist (the slot is read back from the
pod's address in its status) and removes those no Pod claims.

It runs in the node's network namespace, so it talks to the API server over the lab's switch:
when ``kill-node`` cuts the node off, its kubelet is cut off too, as on a cluster.
"""

from __future__ import annotations

import argparse
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lbd import log as lbd_log
from lbd.k8s.client import ApiError, Kube, PatchType, load_kube
from lbd.k8s.informer import Informer
from lbd.lab.cluster import podnet
from lbd.lab.cluster.layout import MAX_PODS_PER_NODE, Member, plan
from lbd.lab.cluster.netns import call_in_netns
from lbd.lab.cluster.workloads import CONTAINER, IMAGE, PODS, now
from lbd.lab.standins.echo import PodServer

log = logging.getLogger(__name__)

_NAME_SLOT = re.compile(r"-(\d+)$")


@dataclass
class RunningPod:
    uid: str
    name: str
    namespace: str
    net: podnet.PodNet
    server: PodServer
    thread: threading.Thread
    started: str

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(2.0)


def pod_status(pod: RunningPod, node: Member) -> dict[str, Any]:
    """The status a kubelet reports for a running, ready pod."""
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": pod.started}
        for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
    ]
    conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": pod.started})
    return {
        "phase": "Running",
        "hostIP": node.ipv4,
        "hostIPs": [{"ip": node.ipv4}, {"ip": node.ipv6}],
        "podIP": pod.net.ipv4,
        "podIPs": [{"ip": pod.net.ipv4}, {"ip": pod.net.ipv6}],
        "startTime": pod.started,
        "conditions": conditions,
        "containerStatuses": [
            {
                "name": CONTAINER,
                "image": IMAGE,
                "imageID": "",
                "containerID": f"lab://{pod.net.netns}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": pod.started}},
            }
        ],
    }


def _reported(status: dict[str, Any]) -> tuple[Any, ...]:
    """What must match for the reported status to be the one we want."""
    ready = {
        c.get("type"): c.get("status") for c in status.get("conditions") or [] if c.get("type")
    }
    return (
        status.get("phase"),
        status.get("podIP"),
        tuple(i.get("ip") for i in status.get("podIPs") or []),
        ready.get("Ready"),
        ready.get("ContainersReady"),
    )


class Kubelet:
    """Runs the pods of ``node``; see the module docstring."""

    def __init__(self, kube: Kube, prefix: str, node: Member) -> None:
        self.kube = kube
        self.prefix = prefix
        self.node = node
        self.pods: dict[str, RunningPod] = {}
        self.dirty = threading.Event()
        self.informer = Informer(
            kube,
            PODS,
            field_selector=f"spec.nodeName={node.name}",
            name="pods",
            resync_period=30.0,
            watch_timeout=60,
        )
        self.informer.add_handler(lambda *_: self.dirty.set())

    # -- slots ----------------------------------------------------------------------------------

    def _slot_for(self, pod: dict[str, Any], taken: set[int]) -> int:
        status = pod.get("status") or {}
        for address in [status.get("podIP")] + [i.get("ip") for i in status.get("podIPs") or []]:
            slot = self.node.pod_slot(address) if address else None
            if slot is not None and slot not in taken:
                return slot
        match = _NAME_SLOT.search(pod["metadata"]["name"])
        if match and 1 <= int(match.group(1)) <= MAX_PODS_PER_NODE:
            wanted = int(match.group(1))
            if wanted not in taken:
                return wanted
        for slot in range(1, MAX_PODS_PER_NODE + 1):
            if slot not in taken:
                return slot
        raise RuntimeError(f"node {self.node.name} has no free pod slot")

    # -- pods -----------------------------------------------------------------------------------

    def _start(self, pod: dict[str, Any]) -> RunningPod:
        meta = pod["metadata"]
        slot = self._slot_for(pod, {p.net.slot for p in self.pods.values()})
        net = podnet.attach(self.prefix, self.node, slot)
        server = call_in_netns(net.netns, lambda: PodServer(self.node.name, meta["name"], net.ipv4))
        thread = threading.Thread(
            target=server.serve_forever, name=f"pod-{meta['name']}", daemon=True
        )
        thread.start()
        started = (pod.get("status") or {}).get("startTime") or now()
        running = RunningPod(
            meta["uid"], meta["name"], meta["namespace"], net, server, thread, started
        )
        log.info(
            "pod started in netns %s",
            net.netns,
            extra={"key": f"{meta['namespace']}/{meta['name']}", "address": net.ipv4},
        )
        return running

    def _stop(self, running: RunningPod) -> None:
        running.stop()
        podnet.detach(running.net.netns)
        log.info("pod stopped", extra={"key": f"{running.namespace}/{running.name}"})

    def _finish_deletion(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            self.kube.delete(
                PODS.path(namespace=meta["namespace"], name=meta["name"]),
                body={
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": meta["uid"]},
                },
            )
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    def _report(self, pod: dict[str, Any], running: RunningPod) -> None:
        want = pod_status(running, self.node)
        if _reported(pod.get("status") or {}) == _reported(want):
            return
        meta = pod["metadata"]
        self.kube.patch(
            PODS.path(namespace=meta["namespace"], name=meta["name"], subresource="status"),
            {"status": want},
            patch=PatchType.MERGE,
        )
        log.info("pod status reported", extra={"key": f"{meta['namespace']}/{meta['name']}"})

    def reconcile(self) -> bool:
        """One pass; False if something failed (the caller tries again soon)."""
        ok = True
        pods = {p["metadata"]["uid"]: p for p in self.informer.store.list()}
        for uid in list(self.pods):
            pod = pods.get(uid)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                self._stop(self.pods.pop(uid))
        for uid, pod in pods.items():
            try:
                if pod["metadata"].get("deletionTimestamp"):
                    self._finish_deletion(pod)
                    continue
                running = self.pods.get(uid)
                if running is None:
                    running = self.pods[uid] = self._start(pod)
                self._report(pod, running)
            except (ApiError, OSError, RuntimeError) as exc:
                log.warning(
                    "pod not reconciled",
                    extra={"key": pod["metadata"].get("name"), "error": str(exc)},
                )
                ok = False
        in_use = {p.net.netns for p in self.pods.values()}
        for slot_netns in podnet.pod_namespaces(self.prefix, self.node).values():
            if slot_netns not in in_use:
                podnet.detach(slot_netns)
                log.info("orphaned pod namespace %s removed", slot_netns)
        return ok

    def run(self, stop: threading.Event) -> None:
        self.informer.start()
        while not self.informer.wait_for_sync(1.0):
            if stop.is_set():
                return
        self.dirty.set()
        while not stop.is_set():
            if not self.dirty.wait(0.5):
                continue
            self.dirty.clear()
            if not self.reconcile():
                stop.wait(0.5)  # do not spin against a refusing API server
                self.dirty.set()
        for running in list(self.pods.values()):
            running.stop()  # the namespaces stay: a restarted kubelet adopts them
        self.informer.stop()


def run(args: argparse.Namespace) -> int:
    import json
    import signal

    lbd_log.setup("info")
    lab = json.loads((Path(args.dir) / "lab.json").read_text())
    layout = plan(lab["prefix"], len(lab["nodes"]), ipv6_pool=bool(lab["pools"]["ipv6"]))
    node = layout.node(args.node_name)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    kubelet = Kubelet(load_kube(args.kubeconfig), layout.prefix, node)
    log.info("kubelet running", extra={"node": node.name})
    kubelet.run(stop)
    return 0

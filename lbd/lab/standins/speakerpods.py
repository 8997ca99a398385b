"""The lab's speaker Pods: what a DaemonSet's Pods and their kubelets show on a cluster.

On a cluster every speaker is a Pod of the ``lbd-speaker`` DaemonSet, and its kubelet keeps the
Pod's ``Ready`` condition from the speaker's readiness probe; the controller reads it to tell
that no speaker runs anywhere (condition ``lbd.io/Announced``, reason ``NoLiveSpeaker``:
lbd/controller/speakers.py). In the lab the speakers are processes of the lab's supervisor, so
this program plays that part, identically on both control planes: for each node it keeps a Pod
``lbd-speaker-<node>`` in ``lbd-system``, labelled as the DaemonSet's Pods are, ``Ready`` while
the supervisor runs that node's speaker and not Ready while it is stopped (``kill-node``, or a
test stopping it), written only when that changes.

The Pods carry no ``spec.nodeName``: the real lab's kubelet runs every Pod bound to its node
(as an echo server), and these are run by the supervisor. Their node is in the label
``lab.lbd.io/node``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lbd import log as lbd_log
from lbd.k8s.client import PODS, ApiError, JsonDict, Kube, load_kube
from lbd.lab.cluster.labdir import SYSTEM_NAMESPACE
from lbd.lab.cluster.supervisor import SupervisorError, request

log = logging.getLogger(__name__)

LABELS = {
    "app.kubernetes.io/name": "lbd",
    "app.kubernetes.io/component": "speaker",
    "app.kubernetes.io/part-of": "lbd",
}
NODE_LABEL = "lab.lbd.io/node"
POLL = 0.2
"""Seconds between looks at the supervisor (a speaker's stop shows within this)."""


def pod_name(node: str) -> str:
    return f"lbd-speaker-{node}"


def speaker_pod(node: str) -> JsonDict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(node),
            "namespace": SYSTEM_NAMESPACE,
            "labels": {**LABELS, NODE_LABEL: node},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "speaker", "image": "lbd:lab-process"}],
        },
    }


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def pod_status(ready: bool, stamp: str) -> JsonDict:
    """Running and Ready, or Running with the speaker stopped (not Ready)."""
    state = "True" if ready else "False"
    reason = None if ready else "SpeakerStopped"
    return {
        "phase": "Running",
        "conditions": [
            {"type": kind, "status": state, "reason": reason, "lastTransitionTime": stamp}
            for kind in ("Ready", "ContainersReady")
        ],
    }


def _shown_ready(pod: Mapping[str, Any]) -> bool | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return None


class SpeakerPods:
    """Keeps one Pod per node saying whether the supervisor runs that node's speaker."""

    def __init__(self, kube: Kube, nodes: list[str], running: Callable[[], Mapping[str, bool]]):
        self.kube = kube
        self.nodes = nodes
        self.running = running
        self.shown: dict[str, bool | None] = {}

    def sync(self) -> None:
        """One pass: create missing Pods, write Ready where it differs (level-triggered)."""
        running = self.running()
        for node in self.nodes:
            want = running.get(node, False)
            if node in self.shown and self.shown[node] == want:
                continue
            path = PODS.path(namespace=SYSTEM_NAMESPACE, name=pod_name(node))
            try:
                pod = self.kube.get(path)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                pod = self.kube.create(PODS.path(namespace=SYSTEM_NAMESPACE), speaker_pod(node))
            if _shown_ready(pod) != want:
                self.kube.patch(f"{path}/status", {"status": pod_status(want, _stamp())})
                log.info("speaker pod", extra={"node": node, "ready": want})
            self.shown[node] = want

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.sync()
            except (ApiError, SupervisorError, OSError) as exc:
                self.shown.clear()  # look again at everything once the API answers
                log.info("speaker pods: %s", exc, extra={"error": str(exc)})
                stop.wait(1.0)
            stop.wait(POLL)


def supervised_speakers(prefix: str, nodes: list[str]) -> Callable[[], Mapping[str, bool]]:
    """Node -> whether the supervisor runs its speaker process now."""

    def running() -> Mapping[str, bool]:
        procs = request(prefix, "status", timeout=5.0)["processes"]
        return {
            node: bool(p.get("running") and p.get("desired"))
            for node in nodes
            if (p := procs.get(f"speaker-{node}")) is not None
        }

    return running


def run(args: argparse.Namespace) -> int:
    lbd_log.setup("info")
    lab = json.loads((Path(args.dir) / "lab.json").read_text())
    nodes = [str(n["name"]) for n in lab["nodes"]]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    pods = SpeakerPods(load_kube(args.kubeconfig), nodes, supervised_speakers(lab["prefix"], nodes))
    pods.run(stop)
    return 0

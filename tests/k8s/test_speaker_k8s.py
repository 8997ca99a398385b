"""The speaker's Kubernetes side, under the speaker's own ServiceAccount token (deploy/ RBAC):
its informers and view (:class:`~lbd.k8s.speaker_informers.SpeakerCache`) and its
ServiceL2Status / NodeAssigned writer (:class:`~lbd.k8s.speaker_status.StatusWriter`).

On both servers with a hand-written EndpointSlice; on the real control plane also with Pods
whose EndpointSlices come from the real endpointslice controller (the lab plays kubelet).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lbd.k8s.client import (
    ENDPOINTSLICES,
    NODES,
    SERVICEL2STATUSES,
    SERVICES,
    ApiError,
    Kube,
    PatchType,
)
from lbd.k8s.events import EventRecorder
from lbd.k8s.speaker_informers import SpeakerCache
from lbd.k8s.speaker_status import Ownership, StatusWriter
from lbd.lab.control_plane import RealApiServer
from tests.k8s.controller_support import (
    ApiServer,
    event_reasons,
    kube_for,
    service,
    wait_for,
)

SPEAKER_SA = "system:serviceaccount:lbd-system:lbd-speaker"
SPEAKER_TOKEN = "speaker-token"
VIP = "198.18.100.7"


def node(kube: Kube, name: str, ip: str) -> None:
    kube.create(NODES.path(), {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    kube.patch(
        NODES.path(name=name, subresource="status"),
        {
            "status": {
                "addresses": [{"type": "InternalIP", "address": ip}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "LabNode"}],
            }
        },
    )


def announced_service(kube: Kube, name: str = "web") -> dict[str, Any]:
    """A LoadBalancer Service holding ``VIP`` in its status (the test plays the controller)."""
    service(kube, name)
    return kube.patch(
        SERVICES.path(namespace="default", name=name, subresource="status"),
        {"status": {"loadBalancer": {"ingress": [{"ip": VIP, "ipMode": "VIP"}]}}},
    )


class Speaker:
    """The speaker's Kubernetes side for one node: cache, status writer, event recorder."""

    def __init__(self, server: ApiServer, node_name: str) -> None:
        # the token a speaker Pod on that node holds (bound to the Pod, naming the node): the
        # admission policy of deploy/ lets it write only its own node's ServiceL2Status
        token = f"{SPEAKER_TOKEN}-{node_name}"
        server.add_node_token(token, SPEAKER_SA, node_name)
        self.kube = kube_for(server, token)
        self.changes = 0
        self.cache = SpeakerCache(self.kube, on_change=self._changed)
        self.events = EventRecorder(self.kube, component="lbd-speaker", host=node_name)
        self.writer = StatusWriter(
            self.kube, node_name=node_name, events=self.events, backoff_max=0.5
        )
        self.cache.on_rewind(self.writer.resync)  # as lbd.speaker.daemon wires them

    def _changed(self) -> None:
        self.changes += 1

    def start(self) -> Speaker:
        self.cache.start()
        assert self.cache.wait_for_sync(10), "the speaker's informers never synced"
        self.writer.start()
        return self

    def stop(self) -> None:
        self.writer.stop()
        self.events.stop()
        self.cache.stop()


@pytest.fixture
def speakers(lab: ApiServer) -> Iterator[dict[str, Speaker]]:
    made: dict[str, Speaker] = {}
    try:
        for name in ("n1", "n2"):
            made[name] = Speaker(lab, name).start()
        yield made
    finally:
        for s in made.values():
            s.stop()


def ready_nodes(speaker: Speaker, key: str = "default/web") -> frozenset[str] | None:
    summary = speaker.cache.view().endpoints.get(key)
    return summary.ready_nodes if summary is not None else None


def hand_written_slice(kube: Kube, service_name: str = "web", node_name: str = "n1") -> None:
    """An EndpointSlice of ``service_name`` with one ready endpoint on ``node_name`` (the
    stand-in has no endpointslice controller)."""
    kube.create(
        ENDPOINTSLICES.path(namespace="default"),
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service_name}-hand",
                "namespace": "default",
                "labels": {
                    "kubernetes.io/service-name": service_name,
                    "endpointslice.kubernetes.io/managed-by": "lbd-test",
                },
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["198.18.0.50"], "conditions": {"ready": True}, "nodeName": node_name}
            ],
            "ports": [{"name": "p0", "port": 80, "protocol": "TCP"}],
        },
    )


def l2status(kube: Kube, name: str = "web") -> dict[str, Any] | None:
    items = kube.get(SERVICEL2STATUSES.path(namespace="default"))["items"]
    return next((i for i in items if i["metadata"]["name"] == name), None)


def test_view_status_handover_and_garbage_collection(lab: ApiServer, speakers):
    admin = kube_for(lab)
    node(admin, "n1", "198.18.0.11")
    node(admin, "n2", "198.18.0.12")
    svc = announced_service(admin)
    hand_written_slice(admin)
    n1, n2 = speakers["n1"], speakers["n2"]
    assert wait_for(lambda: ready_nodes(n1) == frozenset({"n1"}), 10, "n1's endpoint in the view")

    def nodes_seen() -> set[str]:
        return {n["metadata"]["name"] for n in n1.cache.view().nodes}

    wait_for(lambda: nodes_seen() >= {"n1", "n2"}, 10, "both Nodes in the view")
    own = Ownership("default", "web", svc["metadata"]["uid"], (VIP,), ("eth0",))

    n1.writer.set_desired("default/web", own)
    got = wait_for(lambda: (l2status(admin) or {}).get("status"), 10, "n1's ServiceL2Status")
    assert got["node"] == "n1"
    assert got["vips"] == [VIP]
    assert got["interfaces"] == [{"name": "eth0"}]
    # Hand-over: n2 takes it, then n1 lets go of what is no longer its own (nothing deleted).
    n2.writer.set_desired("default/web", own)
    wait_for(lambda: (l2status(admin) or {}).get("status", {}).get("node") == "n2", 10, "n2")
    n1.writer.set_desired("default/web", None)
    wait_for(lambda: n1.writer.pending() == 0, 10, "n1's writer idle")
    current = l2status(admin)
    assert current is not None and current["status"]["node"] == "n2"
    assert current["metadata"]["labels"]["lbd.io/node"] == "n2"
    for s in (n1, n2):
        assert s.events.flush(10)
    assert event_reasons(admin, "web") == ["NodeAssigned", "NodeAssigned"]
    # The ownerReference lets the garbage collector remove the status with its Service.
    admin.delete(SERVICES.path(namespace="default", name="web"))
    wait_for(lambda: l2status(admin) is None, 20, "the ServiceL2Status collected")


def test_the_speaker_may_not_write_services(lab: ApiServer, speakers):
    admin = kube_for(lab)
    announced_service(admin)
    kube = speakers["n1"].kube
    path = SERVICES.path(namespace="default", name="web", subresource="status")
    with pytest.raises(ApiError) as err:
        kube.patch(path, {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.9"}]}}})
    assert err.value.status == 403


def test_endpoints_from_pods_via_the_real_endpointslice_controller(lab: ApiServer, speakers):
    """Pods bound to nodes, their status set as a kubelet would: the real endpointslice
    controller makes the slices; the speaker's view follows the pods' readiness."""
    if not isinstance(lab, RealApiServer):
        pytest.skip(
            "the stand-in has no endpointslice controller (the lab's stand-in writes slices)"
        )
    admin = kube_for(lab)
    node(admin, "n1", "198.18.0.11")
    node(admin, "n2", "198.18.0.12")
    announced_service(admin)
    for i, where in enumerate(("n1", "n2")):
        pod = f"web-{where}"
        admin.create(
            "/api/v1/namespaces/default/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "labels": {"app": "web"}},
                "spec": {"nodeName": where, "containers": [{"name": "echo", "image": "echo"}]},
            },
        )
        set_pod_ready(admin, pod, f"198.18.0.{11 + i}", f"198.18.1.{11 + i}", True)
    n1 = speakers["n1"]
    assert wait_for(lambda: ready_nodes(n1) == frozenset({"n1", "n2"}), 20, "both nodes ready")
    slices = admin.get(
        ENDPOINTSLICES.path(namespace="default"),
        query={"labelSelector": "kubernetes.io/service-name=web"},
    )["items"]
    assert {s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] for s in slices} == {
        "endpointslice-controller.k8s.io"
    }
    set_pod_ready(admin, "web-n2", "198.18.0.12", "198.18.1.12", False)
    assert wait_for(lambda: ready_nodes(n1) == frozenset({"n1"}), 20, "n2's pod no longer ready")


def set_pod_ready(kube: Kube, name: str, host_ip: str, pod_ip: str, ready: bool) -> None:
    status = "True" if ready else "False"
    kube.patch(
        f"/api/v1/namespaces/default/pods/{name}/status",
        {
            "status": {
                "phase": "Running",
                "hostIP": host_ip,
                "hostIPs": [{"ip": host_ip}],
                "podIP": pod_ip,
                "podIPs": [{"ip": pod_ip}],
                "conditions": [
                    {"type": "Ready", "status": status},
                    {"type": "ContainersReady", "status": status},
                ],
            }
        },
        patch=PatchType.STRATEGIC,
    )

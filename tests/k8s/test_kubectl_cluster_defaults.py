"""What every cluster has and does, which kubectl users see: on the stand-in as on kube-apiserver.

Found while comparing the two servers under kubectl (issue 14), aligned in the stand-in, run on
both (``[stand-in]`` and ``[real]``):

- ``default/kubernetes``, the API server's own Service, is the first row of ``kubectl get svc``;
- a Service with several ports needs a name on each (kube-apiserver refuses the write: applying
  ``deploy/examples/service.yaml`` over a Service made by ``kubectl expose`` fails on it);
- ports of the same number (TCP and UDP 53) get one node port;
- a deleted namespace is Terminating for a while with its objects still there (``kubectl
  delete -k deploy/`` deletes them one by one after the namespace and must not hit NotFound),
  then goes;
- a namespace gets its ``default`` ServiceAccount, and always the ``kubernetes`` finalizer;
- a new Pod is ``Pending`` with its QoS class.
"""

from __future__ import annotations

from typing import Any

import pytest

from lbd.k8s.client import NAMESPACES, SERVICES, ApiError, JsonDict, Kube, Resource
from tests.k8s.controller_support import ApiServer, kube_for, wait_for

PODS = Resource("", "v1", "pods", "Pod", True)
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount", True)
CONFIG_MAPS = Resource("", "v1", "configmaps", "ConfigMap", True)
NS = "kctl-defaults"


@pytest.fixture
def kube(lab: ApiServer) -> Kube:
    kube = kube_for(lab)
    kube.create(NAMESPACES.path(), {"metadata": {"name": NS}, "spec": {}})
    return kube


def _service(name: str, ports: list[JsonDict], kind: str = "ClusterIP") -> JsonDict:
    return {"metadata": {"name": name}, "spec": {"type": kind, "ports": ports}}


def test_the_kubernetes_service(kube: Kube) -> None:
    svc = kube.get(SERVICES.path(namespace="default", name="kubernetes"))
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP" and spec["ipFamilyPolicy"] == "SingleStack"
    assert [(p["name"], p["port"], p["protocol"]) for p in spec["ports"]] == [("https", 443, "TCP")]
    assert svc["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}


def test_several_ports_need_names(kube: Kube) -> None:
    ports: list[JsonDict] = [{"port": 80}, {"port": 9000, "name": "tcp-echo"}]
    with pytest.raises(ApiError) as exc:
        kube.create(SERVICES.path(namespace=NS), _service("unnamed", ports))
    assert exc.value.status == 422
    causes = (exc.value.body or {}).get("details", {}).get("causes", [])
    assert [(c["field"], c["reason"]) for c in causes] == [
        ("spec.ports[0].name", "FieldValueRequired")
    ]
    dupes = [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]
    with pytest.raises(ApiError) as exc:
        kube.create(SERVICES.path(namespace=NS), _service("dupes", dupes))
    causes = (exc.value.body or {}).get("details", {}).get("causes", [])
    assert [(c["field"], c["reason"]) for c in causes] == [
        ("spec.ports[1].name", "FieldValueDuplicate")
    ]


def test_one_node_port_per_port_number(kube: Kube) -> None:
    ports = [
        {"port": 53, "name": "dns", "protocol": "UDP"},
        {"port": 53, "name": "dns-tcp", "protocol": "TCP"},
        {"port": 80, "name": "http"},
    ]
    svc = kube.create(SERVICES.path(namespace=NS), _service("dns", ports, "NodePort"))
    node_ports = [p["nodePort"] for p in svc["spec"]["ports"]]
    assert node_ports[0] == node_ports[1] != node_ports[2]


def test_a_deleted_namespace_terminates_then_goes(kube: Kube) -> None:
    kube.create(CONFIG_MAPS.path(namespace=NS), {"metadata": {"name": "kept-a-moment"}})
    kube.delete(NAMESPACES.path(name=NS))
    terminating = kube.get(NAMESPACES.path(name=NS))
    assert terminating["status"]["phase"] == "Terminating"
    # still there: the namespace controller has not come by yet, so deleting it works
    kube.delete(CONFIG_MAPS.path(namespace=NS, name="kept-a-moment"))
    with pytest.raises(ApiError) as exc:
        kube.create(CONFIG_MAPS.path(namespace=NS), {"metadata": {"name": "new"}})
    assert exc.value.status == 403

    def gone() -> bool:
        try:
            kube.get(NAMESPACES.path(name=NS))
        except ApiError as err:
            return err.status == 404
        return False

    wait_for(gone, timeout=30, what=f"namespace {NS} gone")


def test_namespaces_get_defaults(kube: Kube) -> None:
    ns = kube.get(NAMESPACES.path(name=NS))
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": NS}
    wait_for(
        lambda: kube.get(SERVICE_ACCOUNTS.path(namespace=NS, name="default")),
        timeout=30,
        what="the default ServiceAccount",
    )


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        ({}, "BestEffort"),
        ({"requests": {"cpu": "100m"}}, "Burstable"),
        (
            {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "Guaranteed",
        ),
    ],
)
def test_a_new_pod_is_pending_with_its_qos_class(
    kube: Kube, resources: dict[str, Any], qos: str
) -> None:
    container = {"name": "c", "image": "busybox", "resources": resources}
    # no default ServiceAccount yet would be refused by kube-apiserver's admission
    wait_for(
        lambda: kube.get(SERVICE_ACCOUNTS.path(namespace=NS, name="default")),
        timeout=30,
        what="the default ServiceAccount",
    )
    pod = kube.create(
        PODS.path(namespace=NS), {"metadata": {"name": "p"}, "spec": {"containers": [container]}}
    )
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["qosClass"] == qos

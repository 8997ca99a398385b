"""Behaviour of the API server that lbd and its users rely on, asserted on both servers: where the
stand-in differed from kube-apiserver it was aligned, and these tests keep it so.

- Node ports are unique and run out: kube-apiserver gives every LoadBalancer Service a node port
  per port (and a health-check node port with ``externalTrafficPolicy: Local``) from a range of
  2 768 by default, and refuses the Service when the range is full. The stand-in used to hand
  the same ports out again. So a cluster with thousands of LoadBalancer Services (the
  controller benchmark) needs ``allocateLoadBalancerNodePorts: false``.
- Only a LoadBalancer Service may show ``status.loadBalancer.ingress`` (422 otherwise; the
  stand-in used to accept it), and a type change away from LoadBalancer clears it (the
  controller sees its address go without writing anything).
- A resource of a CRD just established may answer ``429 storage is (re)initializing`` with
  ``retryAfterSeconds`` for a moment (kube-apiserver only): lbd's client reads the wait.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lbd.k8s.client import SERVICES, ApiError, _error_from
from lbd.lab.apiserver import LabApiServer
from lbd.lab.control_plane import ControlPlane, RealApiServer
from tests.k8s.conftest import REAL, binaries_or_skip
from tests.k8s.controller_support import ApiServer, kube_for, service, service_body
from tests.k8s.test_apiserver_crd import GROUP, WIDGET_CRD

RANGE = (30000, 30002)


@pytest.fixture
def three_node_ports(control_plane: str) -> Iterator[ApiServer]:
    """A server whose node-port range holds three ports."""
    if control_plane == REAL:
        plane = ControlPlane(
            binaries_or_skip(),
            controllers=(),
            apiserver_args=[f"--service-node-port-range={RANGE[0]}-{RANGE[1]}"],
        )
        plane.start()
        try:
            with RealApiServer(plane) as server:
                yield server
        finally:
            plane.stop()
        return
    with LabApiServer(node_port_range=RANGE) as stand_in:
        yield stand_in


def node_ports(svc: dict[str, Any]) -> list[int]:
    spec = svc["spec"]
    ports = [p["nodePort"] for p in spec["ports"] if p.get("nodePort")]
    return ports + ([spec["healthCheckNodePort"]] if spec.get("healthCheckNodePort") else [])


def test_node_ports_are_unique_freed_and_run_out(three_node_ports: ApiServer):
    kube = kube_for(three_node_ports)
    a = service(kube, "a")
    b = service(kube, "b", externalTrafficPolicy="Local")  # + a health-check node port
    held = node_ports(a) + node_ports(b)
    assert len(held) == 3 and len(set(held)) == 3
    assert all(RANGE[0] <= p <= RANGE[1] for p in held)
    with pytest.raises(ApiError) as err:
        service(kube, "c")
    assert err.value.status == 500
    assert "failed to allocate a nodePort: range is full" in err.value.message
    # Without node ports a LoadBalancer Service needs none of the range.
    assert node_ports(service(kube, "d", allocateLoadBalancerNodePorts=False)) == []
    # A Service that no longer needs its ports gives them back.
    kube.patch(SERVICES.path(namespace="default", name="b"), {"spec": {"type": "ClusterIP"}})
    c = service(kube, "c", ports=[("TCP", 80), ("UDP", 53)])
    assert sorted(node_ports(c)) == sorted(node_ports(b))
    kube.delete(SERVICES.path(namespace="default", name="a"))
    e = kube.create(SERVICES.path(namespace="default"), service_body("e"))
    assert node_ports(e) == node_ports(a)


def test_only_a_load_balancer_shows_an_ingress_and_a_type_change_clears_it(lab: ApiServer):
    kube = kube_for(lab)
    status = {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1"}]}}}
    service(kube, "plain", type="ClusterIP")
    with pytest.raises(ApiError) as err:
        kube.patch(SERVICES.path(namespace="default", name="plain", subresource="status"), status)
    assert (err.value.status, err.value.reason) == (422, "Invalid")
    causes = err.value.body["details"]["causes"]
    assert [(c["field"], c["reason"]) for c in causes] == [
        ("status.loadBalancer.ingress", "FieldValueForbidden")
    ]
    service(kube, "lb")
    shown = kube.patch(SERVICES.path(namespace="default", name="lb", subresource="status"), status)
    assert shown["status"]["loadBalancer"]["ingress"] == [{"ip": "198.18.100.1", "ipMode": "VIP"}]
    after = kube.patch(
        SERVICES.path(namespace="default", name="lb"), {"spec": {"type": "ClusterIP"}}
    )
    assert not (after.get("status") or {}).get("loadBalancer", {}).get("ingress")


def test_a_new_custom_resource_may_be_briefly_unavailable_and_says_how_long(lab: ApiServer):
    """What lbd's informers do about it: wait as told (see lbd.k8s.client.ApiError)."""
    if not isinstance(lab, RealApiServer):
        pytest.skip("only kube-apiserver fills a watch cache for a new resource")
    crd = copy.deepcopy(WIDGET_CRD)
    kube = kube_for(lab)
    kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    try:
        seen: list[ApiError] = []
        for _ in range(400):
            try:
                kube.get(f"/apis/{GROUP}/v1/namespaces/default/widgets")
                break
            except ApiError as exc:
                if exc.status not in (404, 429):
                    raise
                seen.append(exc)
                time.sleep(0.02)
        else:
            pytest.fail("the new resource never became usable")
        for refusal in seen:
            if refusal.status == 429:
                assert refusal.retry_after is not None and refusal.retry_after > 0
    finally:
        kube.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}")


def test_the_wait_a_server_asks_for_is_read_from_either_form():
    apf = _error_from(429, b"Too many requests, please try again later.\n", "GET /x", "1")
    assert (apf.status, apf.reason, apf.retry_after) == (429, "TooManyRequests", 1.0)
    assert apf.message == "Too many requests, please try again later."
    status = b'{"kind":"Status","reason":"TooManyRequests","message":"storage is (re)initializing",'
    status += b'"details":{"retryAfterSeconds":2},"code":429}'
    cache = _error_from(429, status, "GET /x")
    assert (cache.reason, cache.message, cache.retry_after) == (
        "TooManyRequests",
        "storage is (re)initializing",
        2.0,
    )
    assert _error_from(500, b"{}", "GET /x", "soon").retry_after is None

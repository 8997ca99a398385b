"""What kubectl is sent: Tables, content negotiation and OpenAPI, on the stand-in and the real
kube-apiserver side by side.

kubectl prints what the server renders: the columns of ``kubectl get`` (Tables), which
representation a request's ``Accept`` gets (JSON, YAML, metadata only, a 406), and what
``kubectl explain`` reads (OpenAPI v3). Each test here makes the same objects on both servers
and compares the raw answers, kube-apiserver being the reference: column definitions (name,
type, format, priority) and cells, ages and allocated addresses set aside.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from lbd.lab.apiserver import LabApiServer
from lbd.lab.control_plane import ControlPlane, RealApiServer, Sweeper
from tests.k8s.controller_support import start_lab

pytestmark = pytest.mark.real_k8s

NS = "kctl-tables"
OBJECTS = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Node
metadata: {{name: kctl-n1, labels: {{node-role.kubernetes.io/control-plane: ""}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: cip, namespace: {NS}}}
spec: {{ports: [{{port: 80}}], selector: {{app: x}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: np, namespace: {NS}}}
spec:
  type: NodePort
  ports: [{{port: 53, name: dns, protocol: UDP}}, {{port: 53, name: dns-tcp}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ext, namespace: {NS}}}
spec: {{type: ExternalName, externalName: example.org}}
---
apiVersion: v1
kind: Endpoints
metadata: {{name: ep1, namespace: {NS}}}
subsets: [{{addresses: [{{ip: 198.18.5.1}}, {{ip: 198.18.5.2}}], ports: [{{port: 80, name: a}}]}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: es1, namespace: {NS}}}
addressType: IPv4
ports: [{{port: 80, name: a}}]
endpoints:
- addresses: [198.18.5.1]
- addresses: [198.18.5.2]
- addresses: [198.18.5.3]
- addresses: [198.18.5.4]
---
apiVersion: v1
kind: Secret
metadata: {{name: s1, namespace: {NS}}}
stringData: {{a: b}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: cm1, namespace: {NS}}}
data: {{a: b, c: d}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: sa1, namespace: {NS}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: p1, namespace: {NS}}}
spec: {{containers: [{{name: c, image: busybox}}]}}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {{name: l1, namespace: {NS}}}
spec: {{holderIdentity: me}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: r1, namespace: {NS}}}
rules: [{{apiGroups: [""], resources: [pods], verbs: [get]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: rb1, namespace: {NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: r1}}
subjects:
- {{kind: ServiceAccount, name: sa1, namespace: {NS}}}
- {{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}}
- {{kind: Group, name: devs, apiGroup: rbac.authorization.k8s.io}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: d1, namespace: {NS}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: d1}}}}
  template:
    metadata: {{labels: {{app: d1}}}}
    spec: {{containers: [{{name: c, image: busybox}}, {{name: c2, image: nginx}}]}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: ds1, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: ds1}}}}
  template:
    metadata: {{labels: {{app: ds1}}}}
    spec: {{nodeSelector: {{kubernetes.io/os: linux}}, containers: [{{name: c, image: busybox}}]}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: pdb1, namespace: {NS}}}
spec: {{maxUnavailable: 25%, selector: {{matchLabels: {{app: d1}}}}}}
---
apiVersion: v1
kind: Event
metadata: {{name: ev1, namespace: {NS}}}
involvedObject: {{kind: Service, name: cip, namespace: {NS}, fieldPath: "spec.ports[0]"}}
reason: Tested
message: "hello  "
type: Normal
source: {{component: me, host: n1}}
firstTimestamp: "2026-01-01T00:00:00Z"
lastTimestamp: "2026-01-01T00:01:00Z"
count: 2
---
apiVersion: lbd.io/v1beta1
kind: IPAddressPool
metadata: {{name: kctl-pool}}
spec: {{addresses: [198.18.100.0/24]}}
---
apiVersion: lbd.io/v1beta1
kind: L2Advertisement
metadata: {{name: kctl-adv}}
spec: {{ipAddressPools: [kctl-pool], interfaces: [eth0, eth1]}}
---
apiVersion: lbd.io/v1beta1
kind: ServiceL2Status
metadata: {{name: st1, namespace: {NS}}}
"""
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
LISTS = (
    "/api/v1/namespaces",
    "/api/v1/nodes",
    f"/api/v1/namespaces/{NS}/services",
    f"/api/v1/namespaces/{NS}/endpoints",
    f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices",
    f"/api/v1/namespaces/{NS}/secrets",
    f"/api/v1/namespaces/{NS}/configmaps",
    f"/api/v1/namespaces/{NS}/serviceaccounts",
    f"/api/v1/namespaces/{NS}/pods",
    f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases",
    f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles",
    f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings",
    f"/apis/apps/v1/namespaces/{NS}/deployments",
    f"/apis/apps/v1/namespaces/{NS}/daemonsets",
    f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets",
    f"/api/v1/namespaces/{NS}/events",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "/apis/lbd.io/v1beta1/ipaddresspools",
    "/apis/lbd.io/v1beta1/l2advertisements",
    f"/apis/lbd.io/v1beta1/namespaces/{NS}/servicel2statuses",
)
SINGLE = (
    f"/api/v1/namespaces/{NS}",
    "/api/v1/nodes/kctl-n1",
    f"/api/v1/namespaces/{NS}/services/np",
    f"/api/v1/namespaces/{NS}/pods/p1",
    f"/apis/apps/v1/namespaces/{NS}/deployments/d1",
    f"/api/v1/namespaces/{NS}/events/ev1",
    "/apis/lbd.io/v1beta1/ipaddresspools/kctl-pool",
    "/apis/lbd.io/v1beta1/l2advertisements/kctl-adv",
)


class Raw:
    """Plain HTTPS requests with the admin token: the headers are the point here."""

    def __init__(self, server: LabApiServer | RealApiServer) -> None:
        cfg = server.client_configuration()
        url = urlsplit(cfg.host)
        self.host, self.port = url.hostname or "", url.port or 443
        self.context = (
            ssl.create_default_context(cafile=cfg.ssl_ca_cert) if url.scheme == "https" else None
        )
        self.token = server.admin_token
        self.server = server

    def __call__(
        self, path: str, accept: str = "application/json", method: str = "GET"
    ) -> tuple[int, str, bytes]:
        conn: http.client.HTTPConnection
        if self.context is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        else:
            conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=30
            )
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Accept": accept}
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()
        finally:
            conn.close()

    def json(self, path: str, accept: str = "application/json") -> Any:
        status, _, body = self(path, accept)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)


@pytest.fixture(scope="module")
def both(real_plane: ControlPlane, real_sweeper: Sweeper) -> Iterator[tuple[Raw, Raw]]:
    """(kube-apiserver, stand-in), each with the objects above, made once for the module (the
    tests only read, or add objects of their own); the real cluster is swept afterwards."""
    real = RealApiServer(real_plane, proxy=False).start()
    stand_in = start_lab()
    try:
        for server in (real, stand_in):
            for doc in yaml.safe_load_all(OBJECTS):
                server.apply_object(doc)
        yield Raw(real), Raw(stand_in)
    finally:
        stand_in.stop()
        real.stop()
        real_sweeper.sweep()


_AGE = re.compile(r"^(\d+(s|m|h|d|y))+$|^<unknown>$")
_IP = re.compile(r"^198\.19\.\d+\.\d+$")
_NODE_PORT = re.compile(r":3\d{4}/")


def _cell(value: Any) -> Any:
    """A cell with what differs by design (ages, cluster IPs, node port numbers) masked."""
    if isinstance(value, str):
        if _AGE.match(value) or re.match(r"^\d{4}-\d\d-\d\dT", value):
            return "<time>"
        if _IP.match(value):
            return "<cluster-ip>"
        return _NODE_PORT.sub(":<node-port>/", value)
    return value


def _shape(table: dict[str, Any]) -> tuple[Any, Any]:
    columns = [
        (c["name"], c["type"], c["format"], c["priority"]) for c in table["columnDefinitions"]
    ]
    rows = sorted(
        ([_cell(c) for c in row["cells"]] for row in table["rows"]),
        key=json.dumps,
    )
    return columns, rows


MINE = {doc["metadata"]["name"] for doc in yaml.safe_load_all(OBJECTS)} | {
    "ipaddresspools.lbd.io",
    "l2advertisements.lbd.io",
}


def _own_rows(table: dict[str, Any]) -> dict[str, Any]:
    """Only the rows of the objects made above: a cluster has more (its namespaces, what its
    controllers make: EndpointSlices, kube-root-ca.crt, events)."""
    rows = [r for r in table["rows"] if r["object"]["metadata"]["name"] in MINE]
    return {**table, "rows": rows}


@pytest.mark.parametrize("path", LISTS, ids=lambda p: p.rsplit("/", 1)[-1])
def test_list_tables_match_kube_apiserver(both: tuple[Raw, Raw], path: str) -> None:
    real, stand_in = both
    want = _shape(_own_rows(real.json(path, TABLE)))
    got = _shape(_own_rows(stand_in.json(path, TABLE)))
    assert got == want


def test_single_object_tables_match_kube_apiserver(both: tuple[Raw, Raw]) -> None:
    """``kubectl get svc echo``: the README's own command showed only NAME and AGE."""
    real, stand_in = both
    for path in SINGLE:
        want, got = real.json(path, TABLE), stand_in.json(path, TABLE)
        assert _shape(got) == _shape(want), path
        assert got["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_events_of_the_events_api_print_as_core_events(both: tuple[Raw, Raw]) -> None:
    """events.k8s.io/v1 Events get the columns and cells of core Events (kube-apiserver prints
    both as one type). Known difference: kube-apiserver stores the two APIs' Events as one, the
    stand-in keeps them apart, so only the events.k8s.io one is compared."""
    event = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "ev2", "namespace": NS},
        "regarding": {"kind": "Service", "name": "np", "namespace": NS},
        "reason": "Other",
        "note": "newer",
        "type": "Warning",
        "eventTime": "2026-01-01T00:02:00.000000Z",
        "reportingController": "lbd.io/controller",
        "reportingInstance": "ctl-1",
        "action": "Assign",
    }
    shapes = []
    for server in both:
        server.server.apply_object(event)
        table = server.json(f"/apis/events.k8s.io/v1/namespaces/{NS}/events", TABLE)
        rows = [r for r in table["rows"] if r["object"]["metadata"]["name"] == "ev2"]
        shapes.append(_shape({**table, "rows": rows}))
    assert shapes[1] == shapes[0]


def test_node_ports_are_shared_by_port_number(both: tuple[Raw, Raw]) -> None:
    """TCP and UDP 53 of one Service get one node port, on both servers."""
    for server in both:
        ports = server.json(f"/api/v1/namespaces/{NS}/services/np")["spec"]["ports"]
        assert len({p["nodePort"] for p in ports}) == 1, ports


@pytest.mark.parametrize("include", ["Object", "None", "Metadata", ""])
def test_include_object(both: tuple[Raw, Raw], include: str) -> None:
    """``kubectl get --sort-by`` asks for ``includeObject=Object`` and sorts the rows on a
    JSONPath into each row's object."""
    path = f"/api/v1/namespaces/{NS}/events?includeObject={include}"
    for server in both:
        rows = server.json(path, TABLE)["rows"]
        (row,) = [r for r in rows if r["cells"][-1] == "ev1"]  # the NAME column (-o wide)
        if include == "None":
            assert row["object"] is None
        elif include == "Object":
            assert row["object"]["kind"] == "Event"
            assert row["object"]["lastTimestamp"] == "2026-01-01T00:01:00Z"
        else:
            assert row["object"]["kind"] == "PartialObjectMetadata"
            assert "lastTimestamp" not in row["object"]


ACCEPTS = (
    (TABLE, "Table"),
    ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", "Table"),
    ("application/json;as=Table;v=v2;g=meta.k8s.io", 406),
    ("application/json;as=Table", 406),
    ("application/json;as=Table;v=v2;g=meta.k8s.io, application/json", "Namespace"),
    ("application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io", "PartialObjectMetadata"),
    ("text/html", 406),
    ("application/cbor", 406),
    ("application/yaml", "yaml"),
    ("*/*", "Namespace"),
    ("", "Namespace"),
    ("application/vnd.kubernetes.protobuf;q=0.5, application/json", "Namespace"),
)


@pytest.mark.parametrize(("accept", "expect"), ACCEPTS, ids=[a for a, _ in ACCEPTS])
def test_content_negotiation(both: tuple[Raw, Raw], accept: str, expect: str | int) -> None:
    for server in both:
        status, ctype, body = server(f"/api/v1/namespaces/{NS}", accept)
        if isinstance(expect, int):
            assert status == expect, (server.server, body[:200])
            assert json.loads(body)["reason"] == "NotAcceptable"
        elif expect == "yaml":
            assert (status, ctype) == (200, "application/yaml")
            assert yaml.safe_load(body)["metadata"]["name"] == NS
        else:
            assert (status, json.loads(body)["kind"]) == (200, expect)


def test_custom_resources_are_json_or_yaml_only(both: tuple[Raw, Raw]) -> None:
    path = "/apis/lbd.io/v1beta1/ipaddresspools/kctl-pool"
    for server in both:
        assert server(path, "application/vnd.kubernetes.protobuf")[0] == 406
        status, _, body = server(path, "application/vnd.kubernetes.protobuf,application/json")
        assert (status, json.loads(body)["kind"]) == (200, "IPAddressPool")


def test_list_table_metadata_has_continue(both: tuple[Raw, Raw]) -> None:
    """``kubectl get`` pages with ``limit``: the Table carries the list's continue token."""
    path = f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices?limit=1"
    real, stand_in = both
    for server in both:
        server.server.apply_object(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": "es2", "namespace": NS},
                "addressType": "IPv4",
            }
        )
    for server in (real, stand_in):
        total = len(server.json(path.split("?", maxsplit=1)[0], TABLE)["rows"])
        meta = server.json(path, TABLE)["metadata"]
        assert meta.get("continue") and meta.get("remainingItemCount") == total - 1


def test_openapi_v3_describes_lbd_crds_as_kube_apiserver(both: tuple[Raw, Raw]) -> None:
    """``kubectl explain ipaddresspools.spec``: the CRD's schema, found by its kind."""
    docs = []
    for server in both:
        index = server.json("/openapi/v3")
        url = index["paths"]["apis/lbd.io/v1beta1"]["serverRelativeURL"]
        docs.append(server.json(url))
    for doc in docs:
        schemas = doc["components"]["schemas"]
        pool = schemas["io.lbd.v1beta1.IPAddressPool"]
        assert pool["x-kubernetes-group-version-kind"] == [
            {"group": "lbd.io", "kind": "IPAddressPool", "version": "v1beta1"}
        ]
        assert set(pool["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    real, stand_in = (d["components"]["schemas"]["io.lbd.v1beta1.IPAddressPool"] for d in docs)
    assert stand_in["properties"]["spec"] == real["properties"]["spec"]
    patch_real, patch_stand_in = (
        d["paths"]["/apis/lbd.io/v1beta1/ipaddresspools/{name}"]["patch"] for d in docs
    )
    assert set(patch_stand_in["requestBody"]["content"]) == set(
        patch_real["requestBody"]["content"]
    )

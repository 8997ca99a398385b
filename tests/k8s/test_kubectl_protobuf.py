"""kubectl's protobuf request bodies: decoded as kube-apiserver decodes them.

``kubectl create namespace``, ``create secret``, ``create deployment`` ... send protobuf and
never fall back to JSON. The first half encodes bodies by hand (the wire format is simple) to
pin the rules the decoder follows: zero values dropped unless the Go field is a pointer or has
no ``omitempty``, ``IntOrString``, times, bytes, maps, packed and unpacked repeated numbers,
unknown fields ignored, malformed bodies refused. The second half runs the real kubectl against
both servers and compares what each stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lbd.lab.apiserver import LabApiServer
from lbd.lab.apiserver.protobuf import (
    MAGIC,
    ProtobufError,
    UnknownKindError,
    decode,
    kinds,
)
from lbd.lab.control_plane import RealApiServer
from tests.k8s.kubectl_support import Kubectl, kubectl_or_skip

# -- a minimal encoder ------------------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative numbers: ten bytes of two's complement, as Go writes them
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def num(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def raw(field: int, data: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(data)) + data


def text(field: int, value: str) -> bytes:
    return raw(field, value.encode())


def envelope(api_version: str, kind: str, body: bytes) -> bytes:
    type_meta = text(1, api_version) + text(2, kind)
    return MAGIC + raw(1, type_meta) + raw(2, body)


def meta(name: str, **more: bytes) -> bytes:
    """ObjectMeta: name (1), plus fields given by number as ``f<N>=bytes``."""
    out = text(1, name) + text(2, "") + text(3, "")  # generateName, namespace: zero, omitempty
    for key in sorted(more):
        out += more[key]
    return out


# -- the rules --------------------------------------------------------------------------------


def test_namespace_as_kubectl_create_namespace_sends_it() -> None:
    label = raw(11, text(1, "team") + text(2, "a"))  # map entry: key 1, value 2
    body = raw(1, meta("team-a", labels=label)) + raw(2, b"") + raw(3, b"")
    assert decode(envelope("v1", "Namespace", body)) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"team": "a"}},
        "spec": {},
        "status": {},
    }


def test_pointers_keep_their_zero_and_values_drop_theirs() -> None:
    spec = (
        num(1, 0)  # replicas: *int32, 0 kept (a Deployment scaled to zero)
        + num(5, 0)  # minReadySeconds: int32, omitempty: dropped
        + num(6, -1)  # revisionHistoryLimit: *int32; negative numbers are ten-byte varints
        + num(7, 0)  # paused: bool, omitempty: dropped
    )
    obj = decode(envelope("apps/v1", "Deployment", raw(1, meta("d")) + raw(2, spec)))
    assert obj["spec"] == {"replicas": 0, "revisionHistoryLimit": -1}


def test_int_or_string_secret_bytes_and_times() -> None:
    port = (
        text(1, "http")
        + text(2, "TCP")
        + num(3, 80)
        + raw(4, num(1, 1) + text(3, "web"))  # targetPort: the string form
        + num(5, 0)  # nodePort: int32, omitempty: dropped
    )
    svc = decode(envelope("v1", "Service", raw(1, meta("s")) + raw(2, raw(1, port))))
    assert svc["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web"}
    ]
    number = raw(4, num(1, 0) + num(2, 8080))
    svc = decode(envelope("v1", "Service", raw(1, meta("s")) + raw(2, raw(1, number))))
    assert svc["spec"]["ports"] == [{"targetPort": 8080}]  # the number form
    data = raw(2, text(1, "key") + raw(2, b"\x00\xffsecret"))
    deleted = raw(9, num(1, 1767225600))  # deletionTimestamp: *Time, seconds since 1970
    secret = decode(envelope("v1", "Secret", raw(1, meta("k", deleted=deleted)) + data))
    assert secret["data"] == {"key": "AP9zZWNyZXQ="}
    assert secret["metadata"]["deletionTimestamp"] == "2026-01-01T00:00:00Z"
    event_time = raw(2, num(1, 1767225600) + num(2, 123456000))
    event = decode(envelope("events.k8s.io/v1", "Event", raw(1, meta("e")) + event_time))
    assert event["eventTime"] == "2026-01-01T00:00:00.123456Z"


def test_repeated_numbers_packed_or_not_and_unknown_fields() -> None:
    groups_packed = raw(4, varint(1) + varint(2))  # supplementalGroups, packed
    groups_unpacked = num(4, 3)
    security = raw(14, groups_packed + groups_unpacked)  # PodSpec.securityContext
    unknown = raw(999, b"from a newer client")
    pod = decode(envelope("v1", "Pod", raw(1, meta("p")) + raw(2, security + unknown)))
    assert pod["spec"]["securityContext"]["supplementalGroups"] == [1, 2, 3]


def test_malformed_bodies_and_unknown_kinds_are_refused() -> None:
    with pytest.raises(ProtobufError):
        decode(b"not protobuf")
    with pytest.raises(ProtobufError):
        decode(MAGIC + b"\x0a\x0f")  # a length past the end
    with pytest.raises(ProtobufError, match="strategy: wire type 0"):
        decode(envelope("apps/v1", "Deployment", raw(2, num(4, 1))))  # a number for a message
    with pytest.raises(UnknownKindError, match="apps/v1/ReplicaSet"):
        decode(envelope("apps/v1", "ReplicaSet", b""))


def test_the_kinds_kubectl_creates_are_covered() -> None:
    covered = set(kinds())
    for kind in (
        "v1/Namespace",
        "v1/Secret",
        "v1/ConfigMap",
        "v1/ServiceAccount",
        "v1/Service",
        "apps/v1/Deployment",
        "rbac.authorization.k8s.io/v1/Role",
        "rbac.authorization.k8s.io/v1/ClusterRoleBinding",
        "policy/v1/PodDisruptionBudget",
    ):
        assert kind in covered


# -- kubectl, both servers ----------------------------------------------------------------------

CREATES = (
    ("create", "namespace", "kctl-pb"),
    ("-n", "kctl-pb", "create", "secret", "generic", "s", "--from-literal=key=c2VjcmV0"),
    ("-n", "kctl-pb", "create", "configmap", "cm", "--from-literal=a=b"),
    ("-n", "kctl-pb", "create", "serviceaccount", "sa"),
    ("-n", "kctl-pb", "create", "role", "r", "--verb=get", "--resource=pods"),
    ("-n", "kctl-pb", "create", "rolebinding", "rb", "--role=r", "--serviceaccount=kctl-pb:sa"),
    ("create", "clusterrole", "kctl-pb", "--verb=get,list", "--resource=nodes"),
    ("create", "clusterrolebinding", "kctl-pb", "--clusterrole=kctl-pb", "--group=g"),
    ("-n", "kctl-pb", "create", "pdb", "pdb", "--selector=app=x", "--max-unavailable=25%"),
    ("-n", "kctl-pb", "create", "service", "clusterip", "svc", "--tcp=5678:8080"),
    ("-n", "kctl-pb", "create", "service", "nodeport", "np", "--tcp=53:53"),
    ("-n", "kctl-pb", "create", "deployment", "web", "--image=nginx", "--replicas=0"),
)
READS = (
    "namespace/kctl-pb",
    "secret/s",
    "configmap/cm",
    "serviceaccount/sa",
    "role/r",
    "rolebinding/rb",
    "clusterrole/kctl-pb",
    "clusterrolebinding/kctl-pb",
    "pdb/pdb",
    "service/svc",
    "service/np",
    "deployment/web",
)
SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation")


def _stored(obj: dict[str, Any]) -> dict[str, Any]:
    """What kubectl sent, as stored: server-set metadata, status, allocations taken out."""
    for key in SERVER_SET:
        obj["metadata"].pop(key, None)
    obj.pop("status", None)
    spec = obj.get("spec") or {}
    for key in ("clusterIP", "clusterIPs"):
        spec.pop(key, None)
    for port in spec.get("ports") or []:
        port.pop("nodePort", None)
    if obj["kind"] == "Deployment":  # kube-apiserver's defaulting of workloads: not in the lab
        template = spec["template"]["spec"]
        spec = {"replicas": spec["replicas"], "selector": spec["selector"]}
        obj["spec"] = {
            **spec,
            "containers": [
                {"name": c["name"], "image": c["image"]} for c in template["containers"]
            ],
        }
    return obj


@pytest.fixture
def stand_in() -> Iterator[LabApiServer]:
    with LabApiServer(tls=True) as server:
        yield server


@pytest.mark.real_k8s
def test_kubectl_create_stores_what_kube_apiserver_stores(
    real_api: RealApiServer, stand_in: LabApiServer, tmp_path: Path
) -> None:
    binary = kubectl_or_skip()
    stored = []
    for name, server in (("real", real_api), ("stand-in", stand_in)):
        config = server.write_kubeconfig(tmp_path / f"{name}.kubeconfig")
        kubectl = Kubectl(binary, config, tmp_path / name)
        for args in CREATES:
            assert "created" in kubectl(*args)
        stored.append(
            {
                what: _stored(json.loads(kubectl("-n", "kctl-pb", "get", what, "-o", "json")))
                for what in READS
            }
        )
    real, stand = stored
    for what in READS:
        assert stand[what] == real[what], what

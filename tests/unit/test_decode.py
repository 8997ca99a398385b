"""Lean decoding of the big lists (:mod:`lbd.k8s.decode`): an item reads exactly as
json.loads reads it (numbers beyond 64 bits too), minus ``metadata.managedFields``; a page
msgspec refuses is read by json.loads, whole; the views read from it are the same."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from lbd.k8s.decode import decode_lean_list
from lbd.k8s.l2status import observe_l2status
from lbd.k8s.service import observe_service

MANAGED = [
    {
        "manager": "kubectl",
        "operation": "Update",
        "apiVersion": "v1",
        "time": "2026-01-01T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:ports": {}}},
    }
]


def full_service() -> dict[str, Any]:
    """Every ObjectMeta field, set, with odd values where JSON allows them."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "web",
            "generateName": "web-",
            "namespace": "ns",
            "selfLink": "/api/v1/namespaces/ns/services/web",
            "uid": "6b1c9a4e-0000-4000-8000-000000000001",
            "resourceVersion": "123",
            "generation": 2**70,  # beyond 64 bits: JSON allows it, and it must stay exact
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "deletionTimestamp": "2026-01-02T00:00:00Z",
            "deletionGracePeriodSeconds": 30,
            "labels": {"app": "web", "": ""},
            "annotations": None,
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u"}],
            "finalizers": ["a/b"],
            "managedFields": MANAGED,
        },
        "spec": {
            "type": "LoadBalancer",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": None}],
            "ipFamilies": ["IPv4"],
            "x": [1.5, -0.0, 1e300, True, False, None, "\u00e9\U0001f600", {"deep": [[]]}],
        },
        "status": {
            "loadBalancer": {"ingress": [{"ip": "198.18.0.1", "ipMode": "VIP"}]},
            "conditions": [{"type": "lbd.io/AddressAssigned", "status": "True"}],
            "big": -(2**100),
            "max": 2**64 - 1,
        },
    }


def page(*items: Any, **top: Any) -> bytes:
    body = {
        "apiVersion": "v1",
        "kind": "ServiceList",
        "metadata": {"resourceVersion": "7", "continue": "c", "remainingItemCount": 3},
        "items": list(items),
        **top,
    }
    return json.dumps(body).encode()


def without_managed(body: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(body)
    for item in out.get("items") or []:
        item.get("metadata", {}).pop("managedFields", None)
    return out


def test_every_field_but_managed_fields_reads_as_json_loads_reads_it():
    raw = page(full_service(), {"metadata": {"name": "bare"}}, {})
    lean = decode_lean_list(raw)
    assert lean == without_managed(json.loads(raw))
    assert "managedFields" not in lean["items"][0]["metadata"]
    assert lean["items"][0]["metadata"]["generation"] == 2**70
    assert lean["items"][0]["status"]["big"] == -(2**100)
    assert repr(lean) == repr(without_managed(json.loads(raw)))  # same types, key order too


def test_views_read_from_a_lean_page_are_the_same():
    svc = full_service()
    svc["metadata"]["annotations"] = {"lbd.io/address-pool": "gold"}
    l2 = {
        "apiVersion": "lbd.io/v1beta1",
        "kind": "ServiceL2Status",
        "metadata": {"name": "web", "namespace": "ns", "managedFields": MANAGED},
        "spec": {},
        "status": {"node": "n1", "vips": ["198.18.0.1"], "interfaces": [{"name": "eth0"}]},
    }
    raw = page(svc, l2)
    lean, general = decode_lean_list(raw)["items"], json.loads(raw)["items"]
    assert observe_service(lean[0]) == observe_service(general[0])
    assert observe_service(lean[0]).request == observe_service(general[0]).request
    assert observe_l2status(lean[1]) == observe_l2status(general[1])


@pytest.mark.parametrize(
    "raw",
    [
        page(items=None),
        page(items={}),
        page({"metadata": None}),
        page({"metadata": ["x"]}),
        page(1),
        page(full_service()).replace(b'"max": ', b'"max": 1e400, "m": '),  # beyond a float
        page(full_service()).replace(b'"items": ', b'"items": null, "i": '),  # big ints kept
        b"[]",
    ],
    ids=[
        "null items",
        "map items",
        "null metadata",
        "list metadata",
        "int item",
        "1e400",
        "big ints",
        "array",
    ],
)
def test_a_page_msgspec_refuses_is_read_by_json_loads(raw: bytes):
    assert repr(decode_lean_list(raw)) == repr(json.loads(raw))


def test_malformed_json_fails_as_json_loads_fails():
    with pytest.raises(ValueError, match="Expecting"):
        decode_lean_list(b'{"items": [')

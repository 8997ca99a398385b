"""The CRDs in crds/ are what docs/API.md describes and what a real API server accepts.

The structural rules come from tests/unit/crd_structural.py; the tests at the bottom break a
copy of a CRD on purpose to show each rule does reject what it should.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from lbd.core.model import render_count
from tests.unit.crd_structural import (
    apply_defaults,
    crd_errors,
    resolve_json_path,
    to_json_schema,
)

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
EXAMPLES = ROOT / "deploy" / "examples"
K8S_VERSION = "1.30"


def _load_crds() -> dict[str, dict[str, Any]]:
    crds: dict[str, dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1, f"{path.name}: one CRD per file"
        crds[docs[0]["spec"]["names"]["kind"]] = docs[0]
    return crds


CRDS = _load_crds()


def _version(kind: str) -> dict[str, Any]:
    versions: list[dict[str, Any]] = CRDS[kind]["spec"]["versions"]
    (version,) = versions
    return version


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = _version(kind)["schema"]["openAPIV3Schema"]
    return schema


def _validate_cr(obj: dict[str, Any]) -> dict[str, Any]:
    """Default and validate a custom resource as the API server would; return the stored form."""
    schema = _schema(obj["kind"])
    stored = apply_defaults(schema, obj)
    jsonschema.Draft4Validator(to_json_schema(schema)).validate(stored)
    return dict(stored)


def test_the_three_crds_exist_and_nothing_else():
    assert set(CRDS) == {"IPAddressPool", "L2Advertisement", "ServiceL2Status"}
    assert all(f.name.startswith("lbd.io_") for f in CRD_DIR.iterdir())


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_passes_the_api_server_rules(kind):
    assert crd_errors(CRDS[kind]) == []


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_matches_the_kubernetes_openapi_of_crds(kind):
    kubernetes_validate.validate(CRDS[kind], K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("kind", "scope", "short", "plural"),
    [
        ("IPAddressPool", "Cluster", "ipp", "ipaddresspools"),
        ("L2Advertisement", "Cluster", "l2adv", "l2advertisements"),
        ("ServiceL2Status", "Namespaced", "sl2", "servicel2statuses"),
    ],
)
def test_names_scope_and_group(kind, scope, short, plural):
    spec = CRDS[kind]["spec"]
    assert spec["group"] == "lbd.io"
    assert spec["scope"] == scope
    assert short in spec["names"]["shortNames"]
    assert spec["names"]["plural"] == plural
    assert "lbd" in spec["names"]["categories"]
    version = _version(kind)
    assert (version["name"], version["served"], version["storage"]) == ("v1beta1", True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("IPAddressPool", ["ADDRESSES", "AUTO", "ASSIGNED", "AVAILABLE", "READY", "AGE"]),
        ("ServiceL2Status", ["SERVICE", "ANNOUNCED", "NODE", "REASON", "VIPS", "AGE"]),
        ("L2Advertisement", ["IPADDRESSPOOLS", "INTERFACES", "AGE"]),
    ],
)
def test_printer_columns_as_in_api_md(kind, columns):
    shown = [
        c["name"].upper()
        for c in _version(kind)["additionalPrinterColumns"]
        if c.get("priority", 0) == 0
    ]
    assert [c for c in shown if c in columns] == columns


def test_pool_ready_column_reads_the_ready_condition():
    (ready,) = [
        c for c in _version("IPAddressPool")["additionalPrinterColumns"] if c["name"] == "Ready"
    ]
    node = resolve_json_path(_schema("IPAddressPool"), ready["jsonPath"])
    assert node is not None and node["enum"] == ["True", "False", "Unknown"]


def test_pool_defaults_auto_assign_true_and_avoid_buggy_ips_false():
    pool = {
        "apiVersion": "lbd.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p"},
        "spec": {"addresses": ["198.18.100.0/24"]},
    }
    stored = _validate_cr(pool)
    assert stored["spec"]["autoAssign"] is True
    assert stored["spec"]["avoidBuggyIPs"] is False


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({}, "addresses is required"),
        ({"addresses": []}, "addresses must not be empty"),
        ({"addresses": ["198.18.100.0/24"], "autoAssign": "yes"}, "autoAssign is a bool"),
        ({"addresses": ["198.18.100.0/24"], "autoassign": True}, "unknown (misspelt) field"),
        (
            {"addresses": ["198.18.100.0/24"], "serviceAllocation": {"priority": "1"}},
            "priority is an integer",
        ),
        (
            {
                "addresses": ["198.18.100.0/24"],
                "serviceAllocation": {
                    "serviceSelectors": [{"matchExpressions": [{"key": "a", "operator": "Is"}]}]
                },
            },
            "selector operator must be In/NotIn/Exists/DoesNotExist",
        ),
    ],
)
def test_bad_pools_are_rejected(spec, why):
    pool = {"apiVersion": "lbd.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "p"}}
    with pytest.raises(jsonschema.ValidationError):
        _validate_cr({**pool, "spec": spec})


@pytest.mark.parametrize(
    "count",
    [0, 2**53, "18446744073709551616", "1208925819614629174706176"],
    ids=["zero", "2^53 as integer", "/64 as string", "/56 as string"],
)
def test_pool_status_counts_are_int_or_string(count):
    pool = {
        "apiVersion": "lbd.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p"},
        "spec": {"addresses": ["2001:db8:18::/64"]},
        "status": {
            "assignedIPv6": 0,
            "availableIPv6": count,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Valid",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        },
    }
    _validate_cr(pool)
    with pytest.raises(jsonschema.ValidationError):
        _validate_cr({**pool, "status": {"availableIPv6": 1.5}})


def test_counts_as_the_controller_renders_them_are_valid():
    """lbd.core.model.render_count is what the controller writes into these fields."""
    status = {
        "assignedIPv4": render_count(3),
        "availableIPv4": render_count(253),
        "assignedIPv6": render_count(2**53),
        "availableIPv6": render_count(2**64 - 1),
    }
    assert isinstance(status["availableIPv6"], str)
    pool = {
        "apiVersion": "lbd.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p"},
        "spec": {"addresses": ["198.18.100.0/24", "2001:db8:18::/64"]},
        "status": status,
    }
    _validate_cr(pool)


def test_status_schema_documents_how_huge_counts_are_shown():
    text = _schema("IPAddressPool")["properties"]["status"]["description"]
    assert "2^53" in text and "string" in text


def test_service_l2_status_holds_what_the_speaker_writes():
    obj: dict[str, Any] = {
        "apiVersion": "lbd.io/v1beta1",
        "kind": "ServiceL2Status",
        "metadata": {"name": "echo", "namespace": "default"},
        "spec": {},
        "status": {
            "node": "n1",
            "serviceName": "echo",
            "serviceNamespace": "default",
            "interfaces": [{"name": "eth0"}],
            "vips": ["198.18.100.7", "2001:db8:18::100:7"],
            "since": "2026-11-23T23:59:59.5Z",
        },
    }
    _validate_cr(obj)
    with pytest.raises(jsonschema.ValidationError):
        _validate_cr({**obj, "status": {**obj["status"], "interfaces": ["eth0"]}})


def _example_docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for i, doc in enumerate(d for d in yaml.safe_load_all(path.read_text()) if d):
            out.append((f"{path.name}#{i}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


EXAMPLE_DOCS = _example_docs()


@pytest.mark.parametrize(("where", "doc"), EXAMPLE_DOCS, ids=[w for w, _ in EXAMPLE_DOCS])
def test_examples_are_valid(where, doc):
    if doc["apiVersion"] == "lbd.io/v1beta1":
        _validate_cr(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_examples_cover_lab_and_tutorial_pools():
    pools = {
        d["metadata"]["name"]: d["spec"]["addresses"]
        for _, d in EXAMPLE_DOCS
        if d["kind"] == "IPAddressPool"
    }
    assert ["198.18.100.0/24", "2001:db8:18::100:0/120"] in pools.values()
    assert ["172.25.250.50-172.25.250.99"] in pools.values()
    advertised = {
        p
        for _, d in EXAMPLE_DOCS
        if d["kind"] == "L2Advertisement"
        for p in d["spec"]["ipAddressPools"]
    }
    assert advertised == set(pools)
    assert any(
        d["kind"] == "Service" and d["spec"]["type"] == "LoadBalancer" for _, d in EXAMPLE_DOCS
    )


# --- the checker itself: each rule rejects a CRD broken on purpose --------------------------


def _broken(kind: str, path: list[str | int], value: Any) -> dict[str, Any]:
    crd = copy.deepcopy(CRDS[kind])
    node: Any = crd
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return crd


_DELETE = object()
_POOL_SCHEMA: list[str | int] = ["spec", "versions", 0, "schema", "openAPIV3Schema"]
_POOL_SPEC = [*_POOL_SCHEMA, "properties", "spec", "properties"]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ([*_POOL_SPEC, "autoAssign", "type"], _DELETE, "type is required"),
        ([*_POOL_SPEC, "autoAssign", "default"], "true", "default 'true'"),
        ([*_POOL_SPEC, "addresses", "items"], [{"type": "string"}], "must be one schema"),
        ([*_POOL_SPEC, "addresses", "$ref"], "#/x", "forbidden"),
        ([*_POOL_SCHEMA, "properties", "metadata", "properties"], {"labels": {"type": "object"}},
         "only name and generateName"),
        (["spec", "versions", 0, "additionalPrinterColumns", 2, "jsonPath"], ".status.assigned",
         "names no schema field"),
        (["spec", "versions", 0, "additionalPrinterColumns", 0, "type"], "array",
         "not a printer column type"),
        (["spec", "versions", 0, "storage"], False, "exactly one version"),
        (["spec", "names", "singular"], "pool", "lowercase kind"),
        (["metadata", "name"], "pools.lbd.io", "metadata.name"),
        (["metadata", "name"], "ipaddresspools.lbd.io", None),
        (["extra"], 1, "unknown top-level field"),
    ],
)  # fmt: skip
def test_checker_rejects_broken_crds(path, value, message):
    errors = crd_errors(_broken("IPAddressPool", path, value))
    if message is None:
        assert errors == []
    else:
        assert any(message in e for e in errors), errors

"""``lbd migrate from-metallb``: MetalLB's documented configurations convert, validate as lbd's
CRDs and controller do, convert back to what they were, and everything that does not carry over
is reported (never dropped silently).

The fixtures in tests/unit/metallb/ are written from MetalLB's documented fields (see its
README). "Converting back" is :func:`to_metallb` below: the inverse of the mapping, so a field
the conversion lost or changed without a finding makes the round trip fail.
"""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lbd.core.config import build_config
from lbd.core.model import ServiceRequest
from lbd.tools.migrate import (
    MIGRATED_FROM,
    Finding,
    FindingKind,
    Migration,
    from_metallb,
)
from tests.unit.crd_structural import apply_defaults, to_json_schema

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "metallb"
NS = "metallb-system"


def load(name: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((FIXTURES / name).read_text()) if d]
    out: list[dict[str, Any]] = []
    for doc in docs:
        out += doc["items"] if doc["kind"] == "List" else [doc]
    return out


def _schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        (version,) = crd["spec"]["versions"]
        out[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return out


SCHEMAS = _schemas()


def validate_against_crd(obj: dict[str, Any]) -> None:
    """As the API server checks a created object (defaults applied, unknown fields rejected)."""
    assert obj["apiVersion"] == "lbd.io/v1beta1"
    schema = SCHEMAS[obj["kind"]]
    jsonschema.Draft4Validator(to_json_schema(schema)).validate(apply_defaults(schema, obj))


def to_metallb(obj: dict[str, Any]) -> dict[str, Any]:
    """The inverse of the conversion: an lbd object back into the MetalLB object it came from."""
    meta = copy.deepcopy(obj["metadata"])
    annotations = meta.pop("annotations")
    source = annotations.pop(MIGRATED_FROM)
    api_version, kind, where = source.split(" ")
    assert (api_version, kind) == ("metallb.io/v1beta1", obj["kind"])
    namespace, _, name = where.rpartition("/")
    assert name == meta["name"]
    meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = annotations
    back = {"apiVersion": api_version, "kind": kind, "metadata": meta}
    if obj["spec"]:
        back["spec"] = copy.deepcopy(obj["spec"])
    return back


def _without(obj: dict[str, Any], path: str) -> None:
    """Delete ``path`` (``spec.a.b``; ``metadata.annotations[k]``) from ``obj`` if there."""
    parts = path.replace("[", ".").replace("]", "").split(".")
    node: Any = obj
    for part in parts[:-1]:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def expected_back(original: dict[str, Any], findings: tuple[Finding, ...]) -> dict[str, Any]:
    """The original as converting back must give it: minus what a finding reports as changed or
    left out, minus what the API server owns (status, uid ...), priority 0 as absent."""
    want = copy.deepcopy(original)
    want.pop("status", None)
    meta = want["metadata"]
    for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"):
        meta.pop(key, None)
    meta.get("annotations", {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if meta.get("annotations") == {}:
        del meta["annotations"]
    subject = f"{original['kind']} {meta['namespace']}/{meta['name']}"
    for f in findings:
        if f.subject == subject and f.path:
            _without(want, f.path)
    allocation = want.get("spec", {}).get("serviceAllocation", {})
    if allocation.get("priority") == 0:
        del allocation["priority"]
    if want.get("spec") == {}:
        del want["spec"]
    return want


def converted(objects: list[dict[str, Any]], **kw: Any) -> Migration:
    migration = from_metallb(objects, **kw)
    for obj in migration.objects:
        validate_against_crd(dict(obj))
    config = build_config(
        {
            o["metadata"]["name"]: o["spec"]
            for o in migration.objects
            if o["kind"] == "IPAddressPool"
        },
        {
            o["metadata"]["name"]: o["spec"]
            for o in migration.objects
            if o["kind"] != "IPAddressPool"
        },
    )
    assert not config.invalid and not config.invalid_advertisements
    return migration


def by_kind(migration: Migration, kind: FindingKind) -> list[Finding]:
    return [f for f in migration.findings if f.kind is kind]


def names(migration: Migration, kind: str) -> list[str]:
    return [o["metadata"]["name"] for o in migration.objects if o["kind"] == kind]


def assert_round_trip(objects: list[dict[str, Any]], migration: Migration) -> None:
    originals = {
        (o["kind"], o["metadata"]["name"]): o
        for o in objects
        if o["apiVersion"] == "metallb.io/v1beta1"
        and o["kind"] in ("IPAddressPool", "L2Advertisement")
    }
    back = {(o["kind"], o["metadata"]["name"]): to_metallb(dict(o)) for o in migration.objects}
    assert set(back) == set(originals)
    for key, obj in back.items():
        assert obj == expected_back(originals[key], migration.findings), key


# --------------------------------------------------------------------------- documented examples

FIXTURE_FILES = sorted(p.name for p in FIXTURES.glob("*.yaml"))


@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_every_documented_example_converts_validates_and_converts_back(name):
    objects = load(name)
    migration = converted(objects, namespace=NS)
    assert_round_trip(objects, migration)
    assert not by_kind(migration, FindingKind.INVALID)


def test_layer2_example():
    migration = converted(load("l2.yaml"))
    assert names(migration, "IPAddressPool") == ["first-pool", "lan-pool"]
    assert names(migration, "L2Advertisement") == ["everything", "lan"]
    (first,) = [o for o in migration.objects if o["metadata"]["name"] == "first-pool"]
    assert first["spec"]["addresses"] == [
        "198.18.10.0/24",
        "198.18.9.1-198.18.9.5",
        "2001:db8:18::/124",
    ]
    assert "namespace" not in first["metadata"], "lbd pools are cluster-scoped"
    assert first["metadata"]["annotations"][MIGRATED_FROM] == (
        "metallb.io/v1beta1 IPAddressPool metallb-system/first-pool"
    )
    assert not by_kind(migration, FindingKind.NOT_ANNOUNCED)


def test_pool_options_keep_their_meaning():
    migration = converted(load("pools.yaml"))
    pools = {o["metadata"]["name"]: o for o in migration.objects if o["kind"] == "IPAddressPool"}
    assert pools["costly"]["spec"]["autoAssign"] is False
    assert pools["costly"]["metadata"]["labels"] == {"cost": "high"}
    assert pools["tenants"]["spec"]["avoidBuggyIPs"] is True
    assert pools["tenants"]["spec"]["serviceAllocation"]["priority"] == 50
    # MetalLB ranks priority 0 like no priority; lbd would rank 0 first, so 0 becomes absent
    assert "priority" not in pools["tenants-overflow"]["spec"]["serviceAllocation"]
    overflow = migration.config.pools["tenants-overflow"].allocation
    tenants = migration.config.pools["tenants"].allocation
    assert overflow is not None and overflow.priority is None
    assert tenants is not None and tenants.priority == 50


def test_advanced_layer2_reports_soft_node_preferences():
    migration = converted(load("l2-advanced.yaml"))
    assert names(migration, "L2Advertisement") == [
        "frontends",
        "prefer-edge",
        "zone-a-nodes",
        "zone-b-eth3",
    ]
    (lost,) = by_kind(migration, FindingKind.NOT_CONVERTED)
    assert (lost.subject, lost.path) == (
        "L2Advertisement metallb-system/prefer-edge",
        "spec.preferredNodeSelectors",
    )
    (edge,) = [o for o in migration.objects if o["metadata"]["name"] == "prefer-edge"]
    assert edge["spec"] == {"ipAddressPools": ["zone-a"]}
    adv = migration.config.advertisements["zone-b-eth3"]
    assert adv.interfaces == ("eth3",)
    assert adv.selects_pool("zone-b", {"zone": "b"}) and not adv.selects_pool("zone-a", {})


def test_bgp_objects_are_reported_and_a_bgp_only_pool_is_not_announced():
    migration = converted(load("bgp.yaml"))
    not_converted = {f.subject for f in by_kind(migration, FindingKind.NOT_CONVERTED)}
    assert not_converted == {
        "BGPPeer metallb-system/router",
        "BFDProfile metallb-system/fast",
        "Community metallb-system/communities",
        "BGPAdvertisement metallb-system/routed-out",
    }
    (unannounced,) = by_kind(migration, FindingKind.NOT_ANNOUNCED)
    assert unannounced.subject == "IPAddressPool metallb-system/routed"
    assert "BGPAdvertisement routed-out" in unannounced.message
    assert names(migration, "IPAddressPool") == ["both", "routed"]


def test_services_need_no_edit_and_unknown_metallb_annotations_are_reported():
    migration = converted(load("services.yaml"))
    assert migration.objects == ()
    kept = {f.subject: f.message for f in by_kind(migration, FindingKind.KEPT)}
    assert set(kept) == {
        "Service default/pinned",
        "Service default/dns-tcp",
        "Service default/dns-udp",
    }
    assert "metallb.universe.tf/allow-shared-ip" in kept["Service default/dns-tcp"]
    (unknown,) = by_kind(migration, FindingKind.NOT_CONVERTED)
    assert unknown.path == "metadata.annotations[metallb.io/some-future-knob]"
    # MetalLB's own bookkeeping annotation, the Namespace and the ClusterIP Service: no finding
    assert not [f for f in migration.findings if "ip-allocated-from-pool" in str(f)]
    assert not [
        f for f in migration.findings if "internal" in f.subject or "Namespace" in f.subject
    ]


def test_annotations_lbd_keeps_are_the_ones_its_service_reader_reads():
    """The tool says "no edit needed" only for annotations lbd.k8s.service really reads."""
    from lbd.k8s.service import observe_service

    for prefix in ("metallb.io/", "metallb.universe.tf/"):
        svc = {
            "metadata": {
                "namespace": "default",
                "name": "s",
                "annotations": {
                    f"{prefix}loadBalancerIPs": "198.18.0.7",
                    f"{prefix}address-pool": "p",
                    f"{prefix}allow-shared-ip": "k",
                },
            },
            "spec": {"type": "LoadBalancer"},
        }
        req = observe_service(svc).request
        assert isinstance(req, ServiceRequest), req
        assert (req.requested, req.pool, req.sharing_key) == (("198.18.0.7",), "p", "k")


# --------------------------------------------------------------------------- differences said


def test_random_choices_of_metallb_are_named_with_lbds_order():
    pools = [
        _pool("b", ["198.18.0.0/28"], serviceAllocation={"priority": 5, "namespaces": ["x"]}),
        _pool("a", ["198.18.0.16/28"], serviceAllocation={"priority": 5, "namespaces": ["y"]}),
        _pool("c", ["198.18.0.32/28"], serviceAllocation={"priority": 7, "namespaces": ["y"]}),
    ]
    differs = [
        f.message for f in by_kind(converted(pools), FindingKind.DIFFERS) if "priority" in f.message
    ]
    assert differs == [
        "IPAddressPools a, b: MetalLB picks at random among pools of equal serviceAllocation "
        "priority (priority 5); lbd tries them by name"
    ]


def test_negative_priority_is_left_out_and_said():
    migration = converted([_pool("p", ["198.18.0.0/28"], serviceAllocation={"priority": -3})])
    assert migration.objects[0]["spec"]["serviceAllocation"] == {}
    (finding,) = [f for f in by_kind(migration, FindingKind.DIFFERS) if f.path]
    assert finding.path == "spec.serviceAllocation.priority" and "-3" in finding.message


def test_tool_annotations_are_dropped_and_user_annotations_kept():
    pool = _pool("p", ["198.18.0.0/28"])
    pool["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "meta.helm.sh/release-name": "metallb-config",
        "team.example.com/owner": "netops",
    }
    (obj,) = converted([pool]).objects
    assert obj["metadata"]["annotations"] == {
        "team.example.com/owner": "netops",
        MIGRATED_FROM: "metallb.io/v1beta1 IPAddressPool metallb-system/p",
    }


# --------------------------------------------------------------------------- bad inputs


def _pool(name: str, addresses: Any, ns: str = NS, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"addresses": addresses, **spec},
    }


def _adv(name: str, ns: str = NS, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


BAD = [
    (
        "prefix too long",
        [_pool("p", ["198.18.0.0/33"])],
        FindingKind.INVALID,
        "IPAddressPool metallb-system/p",
        "spec.addresses[0]",
        "not a valid CIDR",
    ),
    (
        "addresses not a list",
        [_pool("p", "198.18.0.0/24")],
        FindingKind.INVALID,
        "IPAddressPool metallb-system/p",
        "spec.addresses",
        "must be a list",
    ),
    (
        "spec not an object",
        [{**_pool("p", []), "spec": ["198.18.0.0/24"]}],
        FindingKind.INVALID,
        "IPAddressPool metallb-system/p",
        "spec",
        "must be an object",
    ),
    (
        "unknown pool field",
        [_pool("p", ["198.18.0.0/24"], autoassign=False)],
        FindingKind.NOT_CONVERTED,
        "IPAddressPool metallb-system/p",
        "spec.autoassign",
        "not a field",
    ),
    (
        "unknown serviceAllocation field",
        [_pool("p", ["198.18.0.0/24"], serviceAllocation={"namespace": ["a"]})],
        FindingKind.NOT_CONVERTED,
        "IPAddressPool metallb-system/p",
        "spec.serviceAllocation.namespace",
        "not a field",
    ),
    (
        "bad selector operator",
        [_adv("a", nodeSelectors=[{"matchExpressions": [{"key": "k", "operator": "Is"}]}])],
        FindingKind.INVALID,
        "L2Advertisement metallb-system/a",
        "spec.nodeSelectors[0].matchExpressions[0].operator",
        "unknown operator",
    ),
    (
        "interface name too long",
        [_adv("a", interfaces=["a-very-long-interface-name"])],
        FindingKind.INVALID,
        "L2Advertisement metallb-system/a",
        "spec.interfaces[0]",
        "not an interface name",
    ),
    (
        "no name",
        [{"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {}, "spec": {}}],
        FindingKind.INVALID,
        "IPAddressPool <no name>",
        "metadata.name",
        "required",
    ),
    (
        "same name in two namespaces",
        [_pool("p", ["198.18.0.0/24"], ns="a"), _pool("p", ["198.18.1.0/24"], ns="b")],
        FindingKind.NOT_CONVERTED,
        "IPAddressPool b/p",
        "metadata.name",
        "IPAddressPool a/p has the same name",
    ),
    (
        "wrong version",
        [{**_pool("p", ["198.18.0.0/24"]), "apiVersion": "metallb.io/v1alpha1"}],
        FindingKind.NOT_CONVERTED,
        "IPAddressPool metallb-system/p",
        "apiVersion",
        "metallb.io/v1beta1 only",
    ),
    (
        "old AddressPool kind",
        [{**_pool("p", ["198.18.0.0/24"]), "kind": "AddressPool"}],
        FindingKind.NOT_CONVERTED,
        "AddressPool metallb-system/p",
        "",
        "deprecated AddressPool",
    ),
    (
        "unknown MetalLB kind",
        [{**_pool("p", []), "kind": "OSPFInstance"}],
        FindingKind.NOT_CONVERTED,
        "OSPFInstance metallb-system/p",
        "",
        "lbd has no use for",
    ),
    (
        "legacy ConfigMap",
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "config", "namespace": NS},
                "data": {"config": "address-pools:\n- name: default\n  protocol: layer2\n"},
            }
        ],
        FindingKind.NOT_CONVERTED,
        "ConfigMap metallb-system/config",
        "data.config",
        "old ConfigMap configuration",
    ),
    (
        "unrelated object",
        [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d", "namespace": NS},
            }
        ],
        FindingKind.IGNORED,
        "Deployment metallb-system/d",
        "",
        "not MetalLB configuration",
    ),
    (
        "MetalLB status object",
        [
            {
                "apiVersion": "metallb.io/v1beta1",
                "kind": "ServiceL2Status",
                "metadata": {"name": "l2-x", "namespace": NS},
            }
        ],
        FindingKind.IGNORED,
        "ServiceL2Status metallb-system/l2-x",
        "",
        "MetalLB's own status",
    ),
    (
        "owner reference",
        [
            {
                **_pool("p", ["198.18.0.0/24"]),
                "metadata": {"name": "p", "namespace": NS, "ownerReferences": [{}]},
            }
        ],
        FindingKind.NOT_CONVERTED,
        "IPAddressPool metallb-system/p",
        "metadata.ownerReferences",
        "left out",
    ),
]


@pytest.mark.parametrize(
    ("objects", "kind", "subject", "path", "words"),
    [b[1:] for b in BAD],
    ids=[b[0] for b in BAD],
)
def test_bad_input_is_reported_with_the_field_and_never_half_written(
    objects, kind, subject, path, words
):
    migration = from_metallb(objects)
    hits = [f for f in migration.findings if (f.kind, f.subject, f.path) == (kind, subject, path)]
    assert hits, migration.findings
    assert any(words in f.message for f in hits), hits
    for obj in migration.objects:
        validate_against_crd(dict(obj))
    if kind is FindingKind.INVALID:
        name = subject.rpartition("/")[2]
        assert name not in [o["metadata"]["name"] for o in migration.objects]


def test_overlapping_pools_are_written_and_reported_conflicting():
    migration = converted([_pool("a", ["198.18.0.0/24"]), _pool("b", ["198.18.0.128/25"])])
    assert names(migration, "IPAddressPool") == ["a", "b"]
    conflicting = {f.subject: f.message for f in by_kind(migration, FindingKind.CONFLICTING)}
    # only the newer of two overlapping pools (here: same age, so the later name) is Conflicting
    assert set(conflicting) == {"IPAddressPool metallb-system/b"}
    assert "overlaps older pool a" in conflicting["IPAddressPool metallb-system/b"]


def test_objects_outside_metallbs_namespace_are_ignored_and_said():
    migration = converted(
        [_pool("a", ["198.18.0.0/24"]), _pool("b", ["198.18.1.0/24"], ns="other")], namespace=NS
    )
    assert names(migration, "IPAddressPool") == ["a"]
    (ignored,) = by_kind(migration, FindingKind.IGNORED)
    assert ignored.subject == "IPAddressPool other/b" and NS in ignored.message


def test_a_pool_without_any_advertisement_is_not_announced():
    migration = converted([_pool("a", ["198.18.0.0/24"]), _adv("only-b", ipAddressPools=["b"])])
    (finding,) = by_kind(migration, FindingKind.NOT_ANNOUNCED)
    assert finding.subject == "IPAddressPool metallb-system/a"
    assert "BGP" not in finding.message


# --------------------------------------------------------------------------- randomized round trips

_LABEL = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
_SELECTOR = st.one_of(
    st.builds(lambda k, v: {"matchLabels": {k: v}}, _LABEL, _LABEL),
    st.builds(
        lambda k, op, vs: {"matchExpressions": [{"key": k, "operator": op, "values": vs}]},
        _LABEL,
        st.sampled_from(["In", "NotIn"]),
        st.lists(_LABEL, min_size=1, max_size=3, unique=True),
    ),
    st.builds(lambda k: {"matchExpressions": [{"key": k, "operator": "Exists"}]}, _LABEL),
)


@st.composite
def metallb_configs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Pools of disjoint random /28 blocks (IPv4 or IPv6) with random documented options, and
    L2Advertisements selecting them in every documented way."""
    n = draw(st.integers(1, 5))
    blocks = draw(st.lists(st.integers(0, 4095), min_size=n, max_size=n, unique=True))
    pools = []
    for i, block in enumerate(blocks):
        if draw(st.booleans()):
            cidr = f"{ipaddress.IPv4Address('198.18.0.0') + 16 * block}/28"
        else:
            cidr = f"2001:db8:{block:x}::/124"
        spec: dict[str, Any] = {"addresses": [cidr]}
        if draw(st.booleans()):
            spec["autoAssign"] = draw(st.booleans())
        if draw(st.booleans()):
            spec["avoidBuggyIPs"] = draw(st.booleans())
        if draw(st.booleans()):
            allocation: dict[str, Any] = {}
            if draw(st.booleans()):
                allocation["priority"] = draw(st.integers(1, 100))
            if draw(st.booleans()):
                allocation["namespaces"] = draw(
                    st.lists(_LABEL, min_size=1, max_size=3, unique=True)
                )
            for key in ("namespaceSelectors", "serviceSelectors"):
                if draw(st.booleans()):  # MetalLB rejects duplicate selectors too
                    allocation[key] = draw(
                        st.lists(_SELECTOR, min_size=1, max_size=2, unique_by=repr)
                    )
            spec["serviceAllocation"] = allocation
        pool = _pool(f"pool-{i}", spec.pop("addresses"), **spec)
        if draw(st.booleans()):
            pool["metadata"]["labels"] = {"tier": draw(_LABEL)}
        pools.append(pool)
    advs = []
    for i in range(draw(st.integers(0, 3))):
        spec = {}
        if draw(st.booleans()):
            spec["ipAddressPools"] = draw(
                st.lists(
                    st.sampled_from([p["metadata"]["name"] for p in pools]), min_size=1, unique=True
                )
            )
        for key in ("ipAddressPoolSelectors", "nodeSelectors", "serviceSelectors"):
            if draw(st.booleans()):
                spec[key] = draw(st.lists(_SELECTOR, min_size=1, max_size=2, unique_by=repr))
        if draw(st.booleans()):
            spec["interfaces"] = draw(
                st.lists(
                    st.from_regex(r"(eth|ens|bond)[0-9]{1,2}", fullmatch=True),
                    min_size=1,
                    max_size=3,
                    unique=True,
                )
            )
        advs.append(_adv(f"adv-{i}", **spec))
    return pools + advs


@settings(max_examples=60, deadline=None)
@given(metallb_configs())
def test_random_documented_configurations_round_trip(objects):
    migration = converted(objects, namespace=NS)
    assert not by_kind(migration, FindingKind.INVALID)
    assert not by_kind(migration, FindingKind.NOT_CONVERTED)
    assert_round_trip(objects, migration)
    # what lbd will do with each pool equals what the MetalLB spec said
    for pool in objects:
        if pool["kind"] != "IPAddressPool":
            continue
        lbd_pool = migration.config.pools[pool["metadata"]["name"]]
        assert lbd_pool.auto_assign == pool["spec"].get("autoAssign", True)
        assert lbd_pool.avoid_buggy_ips == pool["spec"].get("avoidBuggyIPs", False)
        assert lbd_pool.labels == pool["metadata"].get("labels", {})

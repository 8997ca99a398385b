"""Moving over from MetalLB without surprises (issue 10 point 5), configuration side.

Each case names the MetalLB test it comes from (``metallb: <its wording>``, from
``internal/config/config_test.go`` or ``controller/controller_test.go``), so that a reader can
check that lbd reads the same input the same way."""

from __future__ import annotations

from typing import Any

import pytest

from lbd.core.config import (
    FieldError,
    PoolInput,
    build_config,
    parse_advertisement,
    parse_pool,
)
from lbd.core.ipam import Allocator
from lbd.core.model import Allocation, Family, Pool
from tests.unit.ipam_support import svc

# --------------------------------------------------------------------------- host bits


@pytest.mark.parametrize(
    ("entry", "network", "family", "first", "last"),
    [
        pytest.param(
            "10.20.30.40/24",
            "10.20.30.0/24",
            Family.IPV4,
            0x0A141E00,
            0x0A141EFF,
            id="metallb: different local pref - same peers and nodes (pool 10.20.30.40/24)",
        ),
        pytest.param(
            "1000::1/127",
            "1000::/127",
            Family.IPV6,
            0x1000 << 112,
            (0x1000 << 112) + 1,
            id="metallb: TestControllerReassign (pool 1000::1/127)",
        ),
        pytest.param(
            "198.18.100.1/24", "198.18.100.0/24", Family.IPV4, 0xC6126400, 0xC61264FF, id="lab"
        ),
    ],
)
def test_a_cidr_with_host_bits_is_read_as_its_network_with_a_warning(
    entry: str, network: str, family: Family, first: int, last: int
) -> None:
    cfg = build_config({"p": {"addresses": ["198.18.200.0/30", entry]}})
    pool = cfg.pools["p"]
    assert (family, first, last) in [(r.family, r.first, r.last) for r in pool.ranges]
    (warning,) = cfg.warnings["p"]
    assert warning.path == "spec.addresses[1]"
    assert f"read as {network}" in warning.reason
    assert cfg.invalid == {}


def test_a_clean_cidr_has_no_warning() -> None:
    assert build_config({"p": {"addresses": ["10.0.0.0/24", "1000::/127"]}}).warnings == {}


# --------------------------------------------------------------------------- priority


def test_priority_zero_is_no_priority() -> None:
    spec = {"addresses": ["198.18.100.0/30"], "serviceAllocation": {"priority": 0}}
    pool = parse_pool("p", spec)
    assert isinstance(pool, Pool) and pool.allocation is not None
    assert pool.allocation.priority is None


def allocate_from(pools: dict[str, dict[str, Any]], **svc_args: Any) -> str:
    cfg = build_config(pools)
    a = Allocator()
    a.set_pools(cfg.pools.values(), cfg.conflicting, cfg.invalid.keys())
    got = a.allocate(svc("s", **svc_args))
    assert isinstance(got, Allocation), got
    return got.pool


@pytest.mark.parametrize(
    ("pools", "ns", "expected"),
    [
        pytest.param(
            {
                "aaa-zero": {
                    "addresses": ["198.18.100.0/30"],
                    "serviceAllocation": {"priority": 0, "namespaces": ["test-ns1"]},
                },
                "zzz-ten": {
                    "addresses": ["198.18.101.0/30"],
                    "serviceAllocation": {"priority": 10, "namespaces": ["test-ns1"]},
                },
            },
            "test-ns1",
            "zzz-ten",
            id="metallb: request IP for service from namespace specific ip pool "
            "(priority 0 ranks after a pool with priority, whatever the names)",
        ),
        pytest.param(
            {
                "aaa-unset": {
                    "addresses": ["198.18.100.0/30"],
                    "serviceAllocation": {"namespaces": ["test-ns2"]},
                },
                "zzz-nine": {
                    "addresses": ["198.18.101.0/30"],
                    "serviceAllocation": {"priority": 9, "namespaces": ["test-ns2"]},
                },
            },
            "test-ns2",
            "zzz-nine",
            id="metallb: request IP for service from no priority namespace specific ip pool",
        ),
        pytest.param(
            {
                "aaa-plain": {"addresses": ["198.18.100.0/30"]},
                "zzz-zero": {
                    "addresses": ["198.18.101.0/30"],
                    "serviceAllocation": {"priority": 0, "namespaces": ["test-ns1"]},
                },
            },
            "test-ns1",
            "zzz-zero",
            id="a pool with serviceAllocation but no priority still ranks before plain pools",
        ),
    ],
)
def test_pool_rank_with_and_without_priority(
    pools: dict[str, dict[str, Any]], ns: str, expected: str
) -> None:
    assert allocate_from(pools, ns=ns) == expected


def test_negative_priority_names_the_field() -> None:
    spec = {"addresses": ["198.18.100.0/30"], "serviceAllocation": {"priority": -1}}
    errors = parse_pool("p", spec)
    assert errors == (
        FieldError(
            "spec.serviceAllocation.priority", "must be 0 (no priority) or a positive integer"
        ),
    )


# --------------------------------------------------------------------------- duplicates

SEL = {"matchLabels": {"foo": "bar"}}
EXPR_IN = {"key": "kubernetes.io/hostname", "operator": "In", "values": ["first", "second"]}
EXPR_IN_REORDERED = {
    "key": "kubernetes.io/hostname",
    "operator": "In",
    "values": ["second", "first"],
}


@pytest.mark.parametrize(
    ("allocation", "path", "reason"),
    [
        pytest.param(
            {"namespaces": ["test-ns1", "test-ns1"]},
            "spec.serviceAllocation.namespaces[1]",
            "duplicates spec.serviceAllocation.namespaces[0] (test-ns1)",
            id="metallb: ip address pool with duplicate namespace selection",
        ),
        pytest.param(
            {"namespaceSelectors": [SEL, SEL]},
            "spec.serviceAllocation.namespaceSelectors[1]",
            "duplicates spec.serviceAllocation.namespaceSelectors[0]",
            id="metallb: ip address pool with duplicate namespace selectors",
        ),
        pytest.param(
            {
                "serviceSelectors": [
                    {
                        "matchExpressions": [
                            {"key": "foo", "operator": "In", "values": ["bar", "bar"]}
                        ]
                    }
                ]
            },
            "spec.serviceAllocation.serviceSelectors[0].matchExpressions[0].values[1]",
            "duplicates values[0] (bar)",
            id="metallb: ip address pool with duplicate service selection",
        ),
        pytest.param(
            {"serviceSelectors": [{"matchExpressions": [EXPR_IN, EXPR_IN_REORDERED]}]},
            "spec.serviceAllocation.serviceSelectors[0].matchExpressions[1]",
            "duplicates spec.serviceAllocation.serviceSelectors[0].matchExpressions[0]",
            id="metallb: use duplicate match expression values in node selector "
            "(the same expression twice, values in another order)",
        ),
        pytest.param(
            {
                "serviceSelectors": [
                    {"matchExpressions": [EXPR_IN]},
                    {"matchExpressions": [EXPR_IN_REORDERED]},
                ]
            },
            "spec.serviceAllocation.serviceSelectors[1]",
            "duplicates spec.serviceAllocation.serviceSelectors[0]",
            id="metallb: duplicate service selectors (equal up to value order)",
        ),
    ],
)
def test_duplicates_in_a_pool_are_rejected_with_the_field_path(
    allocation: dict[str, Any], path: str, reason: str
) -> None:
    errors = parse_pool("pool1", {"addresses": ["10.20.0.0/16"], "serviceAllocation": allocation})
    assert isinstance(errors, tuple), errors
    assert FieldError(path, reason) in errors, errors


@pytest.mark.parametrize(
    ("spec", "path", "reason"),
    [
        pytest.param(
            {
                "ipAddressPoolSelectors": [
                    {"matchLabels": {"test": "pool1"}},
                    {"matchLabels": {"test": "pool1"}},
                ]
            },
            "spec.ipAddressPoolSelectors[1]",
            "duplicates spec.ipAddressPoolSelectors[0]",
            id="metallb: use duplicate ip pool selectors - in L2 adv",
        ),
        pytest.param(
            {
                "ipAddressPoolSelectors": [
                    {
                        "matchExpressions": [
                            {"key": "test", "operator": "In", "values": ["pool1", "pool1"]}
                        ]
                    }
                ]
            },
            "spec.ipAddressPoolSelectors[0].matchExpressions[0].values[1]",
            "duplicates values[0] (pool1)",
            id="metallb: use duplicate match expression in ip pool selector",
        ),
        pytest.param(
            {
                "nodeSelectors": [
                    {
                        "matchLabels": {"foo": "bar"},
                        "matchExpressions": [
                            {"key": "bar", "operator": "In", "values": ["quux", "quux"]}
                        ],
                    }
                ]
            },
            "spec.nodeSelectors[0].matchExpressions[0].values[1]",
            "duplicates values[0] (quux)",
            id="metallb: duplicate values node selector match expression",
        ),
        pytest.param(
            {"nodeSelectors": [{"matchExpressions": [EXPR_IN, EXPR_IN_REORDERED]}]},
            "spec.nodeSelectors[0].matchExpressions[1]",
            "duplicates spec.nodeSelectors[0].matchExpressions[0]",
            id="metallb: use duplicate match expression values in node selector",
        ),
        pytest.param(
            {"nodeSelectors": [SEL, SEL]},
            "spec.nodeSelectors[1]",
            "duplicates spec.nodeSelectors[0]",
            id="metallb: use duplicate match labels in node selectors",
        ),
        pytest.param(
            {
                "serviceSelectors": [
                    {"matchLabels": {"app": "nginx"}},
                    {"matchLabels": {"app": "nginx"}},
                ]
            },
            "spec.serviceSelectors[1]",
            "duplicates spec.serviceSelectors[0]",
            id="metallb: duplicate service selectors",
        ),
        pytest.param(
            {"ipAddressPools": ["pool1", "pool1"]},
            "spec.ipAddressPools[1]",
            "duplicates spec.ipAddressPools[0] (pool1)",
            id="metallb: duplicate ip address pools - in L2 adv",
        ),
    ],
)
def test_duplicates_in_an_l2advertisement_are_rejected_with_the_field_path(
    spec: dict[str, Any], path: str, reason: str
) -> None:
    errors = parse_advertisement("adv1", spec)
    assert isinstance(errors, tuple), errors
    assert FieldError(path, reason) in errors, errors


def test_different_selectors_are_not_duplicates() -> None:
    spec = {
        "nodeSelectors": [
            {"matchLabels": {"foo": "bar"}},
            {"matchLabels": {"foo": "baz"}},
            {"matchExpressions": [EXPR_IN]},
            {"matchExpressions": [{**EXPR_IN, "operator": "NotIn"}]},
        ]
    }
    assert not isinstance(parse_advertisement("adv1", spec), tuple)


# --------------------------------------------------------------------------- overlap


def test_a_mistaken_new_pool_cannot_freeze_a_working_one() -> None:
    """issue 10 point 6: only the newcomer is Conflicting; the production pool keeps working."""
    cfg = build_config(
        {
            "production": PoolInput(
                {"addresses": ["198.18.100.0/24"]}, created="2026-01-01T00:00:00Z"
            ),
            "oops": PoolInput({"addresses": ["198.18.100.128/25"]}, created="2026-03-01T00:00:00Z"),
        }
    )
    assert cfg.conflicting == {"oops": frozenset({"production"})}
    a = Allocator()
    a.set_pools(cfg.pools.values(), cfg.conflicting, cfg.invalid.keys())
    got = a.allocate(svc("web"))
    assert isinstance(got, Allocation) and got.pool == "production"
    refused = a.allocate(svc("wants-oops", pool="oops"))
    assert not isinstance(refused, Allocation)
    assert "overlaps 'production'" in refused.message

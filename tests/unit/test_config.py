"""Validation of IPAddressPool / L2Advertisement specs and of requested-address annotations."""

from __future__ import annotations

from typing import Any

import pytest

from lbd.core.config import (
    Config,
    FieldError,
    PoolInput,
    build_config,
    merge_requested,
    parse_address_entry,
    parse_advertisement,
    parse_pool,
    parse_requested_ips,
)
from lbd.core.model import (
    Advertisement,
    Family,
    LabelSelector,
    Pool,
    PoolRange,
    SelectorOperator,
    SelectorRequirement,
)


def v4(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


@pytest.mark.parametrize(
    ("entry", "family", "first", "last"),
    [
        pytest.param(
            "198.18.100.0/24", Family.IPV4, v4("198.18.100.0"), v4("198.18.100.255"), id="v4 cidr"
        ),
        pytest.param(
            "198.18.100.7", Family.IPV4, v4("198.18.100.7"), v4("198.18.100.7"), id="bare v4 = /32"
        ),
        pytest.param(
            "198.18.100.10-198.18.100.20",
            Family.IPV4,
            v4("198.18.100.10"),
            v4("198.18.100.20"),
            id="v4 range",
        ),
        pytest.param(
            " 198.18.100.10 - 198.18.100.20 ",
            Family.IPV4,
            v4("198.18.100.10"),
            v4("198.18.100.20"),
            id="range with spaces",
        ),
        pytest.param(
            "198.18.100.9-198.18.100.9",
            Family.IPV4,
            v4("198.18.100.9"),
            v4("198.18.100.9"),
            id="one-address range",
        ),
        pytest.param(
            "2001:db8::/120", Family.IPV6, 0x20010DB8 << 96, (0x20010DB8 << 96) + 255, id="v6 cidr"
        ),
        pytest.param(
            "2001:db8::/64",
            Family.IPV6,
            0x20010DB8 << 96,
            (0x20010DB8 << 96) + 2**64 - 1,
            id="v6 /64",
        ),
        pytest.param(
            "2001:db8::5-2001:db8::9",
            Family.IPV6,
            (0x20010DB8 << 96) + 5,
            (0x20010DB8 << 96) + 9,
            id="v6 range",
        ),
        pytest.param(
            "2001:db8::7",
            Family.IPV6,
            (0x20010DB8 << 96) + 7,
            (0x20010DB8 << 96) + 7,
            id="bare v6 = /128",
        ),
    ],
)
def test_address_entry_parses(entry: str, family: Family, first: int, last: int) -> None:
    parsed = parse_address_entry(entry)
    assert isinstance(parsed, PoolRange)
    assert (parsed.family, parsed.first, parsed.last) == (family, first, last)


@pytest.mark.parametrize(
    ("entry", "reason_part"),
    [
        pytest.param("198.18.100.0/33", "not a valid CIDR", id="prefix too long"),
        pytest.param("198.18.300.0/24", "not a valid CIDR", id="octet out of range"),
        pytest.param("198.18.100.20-198.18.100.10", "start after end", id="start > end"),
        pytest.param("198.18.100.1-2001:db8::1", "mixes IPv4 and IPv6", id="mixed families"),
        pytest.param("198.18.100.1-", "not a valid range", id="half range"),
        pytest.param("pool-a", "not a valid range", id="garbage with dash"),
        pytest.param("garbage", "not an address, CIDR or range", id="garbage"),
        pytest.param("  ", "empty entry", id="blank"),
    ],
)
def test_address_entry_errors(entry: str, reason_part: str) -> None:
    parsed = parse_address_entry(entry)
    assert isinstance(parsed, str)
    assert reason_part in parsed


def errors_of(spec: Any) -> list[tuple[str, str]]:
    parsed = parse_pool("p", spec)
    assert not isinstance(parsed, Pool), f"expected errors, got {parsed}"
    return [(e.path, e.reason) for e in parsed]


@pytest.mark.parametrize(
    ("spec", "path", "reason_part"),
    [
        pytest.param({}, "spec.addresses", "required", id="addresses missing"),
        pytest.param({"addresses": []}, "spec.addresses", "must not be empty", id="empty list"),
        pytest.param({"addresses": "198.18.100.0/24"}, "spec.addresses", "list", id="not a list"),
        pytest.param(
            {"addresses": ["198.18.100.0/24", 7]},
            "spec.addresses[1]",
            "string",
            id="non-string entry",
        ),
        pytest.param(
            {"addresses": ["198.18.100.0/24", "198.18.101.0/24", "198.18.100.0/33"]},
            "spec.addresses[2]",
            "not a valid CIDR",
            id="bad cidr names its index",
        ),
        pytest.param(
            {"addresses": ["198.18.100.0/24", "198.18.100.0/24"]},
            "spec.addresses[1]",
            "duplicates spec.addresses[0]",
            id="duplicate entry",
        ),
        pytest.param(
            {"addresses": ["198.18.100.0/24", "198.18.100.7"]},
            "spec.addresses[1]",
            "overlaps spec.addresses[0]",
            id="entries overlap",
        ),
        pytest.param(
            {"addresses": ["198.18.100.0/24"], "autoAssign": "yes"},
            "spec.autoAssign",
            "true or false",
            id="autoAssign not bool",
        ),
        pytest.param(
            {"addresses": ["198.18.100.0/24"], "avoidBuggyIPs": 1},
            "spec.avoidBuggyIPs",
            "true or false",
            id="avoidBuggyIPs not bool",
        ),
        pytest.param(
            {"addresses": ["198.18.100.0/24"], "autoassign": False},
            "spec.autoassign",
            "unknown field",
            id="typo field",
        ),
        pytest.param(
            {"addresses": ["198.18.100.0/24"], "serviceAllocation": {"priority": "1"}},
            "spec.serviceAllocation.priority",
            "integer",
            id="priority not int",
        ),
        pytest.param(
            {"addresses": ["198.18.100.0/24"], "serviceAllocation": {"namespaces": ["a", "a"]}},
            "spec.serviceAllocation.namespaces[1]",
            "duplicates",
            id="duplicate namespace",
        ),
        pytest.param(
            {"addresses": ["198.18.100.0/24"], "serviceAllocation": {"namespaces": [""]}},
            "spec.serviceAllocation.namespaces[0]",
            "non-empty",
            id="empty namespace",
        ),
        pytest.param(
            {
                "addresses": ["198.18.100.0/24"],
                "serviceAllocation": {
                    "serviceSelectors": [
                        {
                            "matchExpressions": [
                                {"key": "app", "operator": "Equals", "values": ["x"]}
                            ]
                        }
                    ]
                },
            },
            "spec.serviceAllocation.serviceSelectors[0].matchExpressions[0].operator",
            "unknown operator 'Equals'",
            id="unknown operator",
        ),
        pytest.param(
            {
                "addresses": ["198.18.100.0/24"],
                "serviceAllocation": {
                    "serviceSelectors": [
                        {
                            "matchExpressions": [
                                {"key": "app", "operator": "Exists", "values": ["x"]}
                            ]
                        }
                    ]
                },
            },
            "spec.serviceAllocation.serviceSelectors[0].matchExpressions[0].values",
            "must be empty for Exists",
            id="values with Exists",
        ),
        pytest.param(
            {
                "addresses": ["198.18.100.0/24"],
                "serviceAllocation": {
                    "serviceSelectors": [{"matchExpressions": [{"key": "app", "operator": "In"}]}]
                },
            },
            "spec.serviceAllocation.serviceSelectors[0].matchExpressions[0].values",
            "must not be empty for In",
            id="In without values",
        ),
        pytest.param(
            {
                "addresses": ["198.18.100.0/24"],
                "serviceAllocation": {
                    "namespaceSelectors": [
                        {"matchExpressions": [{"key": "", "operator": "Exists"}]}
                    ]
                },
            },
            "spec.serviceAllocation.namespaceSelectors[0].matchExpressions[0].key",
            "must not be empty",
            id="empty key",
        ),
        pytest.param(
            {
                "addresses": ["198.18.100.0/24"],
                "serviceAllocation": {"namespaceSelectors": [{"matchLabels": {"team": "a b"}}]},
            },
            "spec.serviceAllocation.namespaceSelectors[0].matchLabels[team]",
            "'a b'",
            id="bad label value",
        ),
        pytest.param(
            {
                "addresses": ["198.18.100.0/24"],
                "serviceAllocation": {"namespaceSelectors": [{"matchLabel": {"team": "a"}}]},
            },
            "spec.serviceAllocation.namespaceSelectors[0].matchLabel",
            "unknown field",
            id="selector typo",
        ),
        pytest.param("not a dict", "spec", "object", id="spec not an object"),
    ],
)
def test_pool_errors(spec: Any, path: str, reason_part: str) -> None:
    errs = errors_of(spec)
    assert any(p == path and reason_part in r for p, r in errs), errs


def test_pool_reports_every_error_not_just_the_first() -> None:
    errs = errors_of({"addresses": ["bad", "198.18.100.1/33"], "autoAssign": "no"})
    assert [p for p, _ in errs] == ["spec.addresses[0]", "spec.addresses[1]", "spec.autoAssign"]


def test_valid_pool_has_defaults_and_parsed_selectors() -> None:
    pool = parse_pool(
        "gold",
        {
            "addresses": ["2001:db8::/120", "198.18.100.0/24"],
            "serviceAllocation": {
                "priority": 5,
                "namespaces": ["prod"],
                "serviceSelectors": [
                    {
                        "matchLabels": {"tier": "web"},
                        "matchExpressions": [
                            {"key": "env", "operator": "NotIn", "values": ["dev"]}
                        ],
                    }
                ],
            },
        },
        {"lbd.io/class": "gold"},
    )
    assert isinstance(pool, Pool)
    assert pool.auto_assign is True and pool.avoid_buggy_ips is False
    assert [r.family for r in pool.ranges] == [Family.IPV4, Family.IPV6]  # sorted
    assert pool.labels == {"lbd.io/class": "gold"}
    assert pool.allocation is not None
    assert pool.allocation.priority == 5
    assert pool.allocation.namespaces == frozenset({"prod"})
    assert pool.allocation.service_selectors == (
        LabelSelector(
            (("tier", "web"),),
            (SelectorRequirement("env", SelectorOperator.NOT_IN, frozenset({"dev"})),),
        ),
    )


def test_build_config_only_the_newer_of_overlapping_pools_is_conflicting() -> None:
    """The pool created first keeps working; each newer pool overlapping an older one is
    Conflicting and names the older pools (issue 10 point 6)."""
    cfg = build_config(
        {
            "a": PoolInput({"addresses": ["198.18.100.0/24"]}, created="2026-01-02T00:00:00Z"),
            "b": PoolInput(
                {"addresses": ["198.18.100.128/25"]}, {"x": "y"}, created="2026-01-03T00:00:00Z"
            ),
            # oldest of all: "c" keeps working although it overlaps both
            "c": PoolInput(
                {"addresses": ["198.18.100.200-198.18.101.5", "2001:db8::/120"]},
                created="2026-01-01T00:00:00Z",
            ),
            "d": {"addresses": ["198.18.102.0/24", "2001:db8::100/120"]},
            "e": {"addresses": ["nope"]},
        }
    )
    assert cfg.conflicting == {"a": frozenset({"c"}), "b": frozenset({"a", "c"})}
    assert set(cfg.pools) == {"a", "b", "c", "d"}
    assert cfg.pools["b"].labels == {"x": "y"}
    assert [p.name for p in cfg.usable_pools()] == ["c", "d"]
    assert cfg.invalid == {
        "e": (FieldError("spec.addresses[0]", "'nope' is not an address, CIDR or range"),)
    }


def test_overlapping_pools_created_together_break_the_tie_by_name() -> None:
    same = "2026-01-01T00:00:00Z"
    cfg = build_config(
        {
            "prod": PoolInput({"addresses": ["198.18.100.0/24"]}, created=same),
            "oops": PoolInput({"addresses": ["198.18.100.7"]}, created=same),
        }
    )
    assert cfg.conflicting == {"prod": frozenset({"oops"})}


def test_build_config_adjacent_pools_and_other_families_do_not_conflict() -> None:
    cfg = build_config(
        {
            "a": {"addresses": ["198.18.100.0-198.18.100.9"]},
            "b": {"addresses": ["198.18.100.10-198.18.100.19"]},
            # 0.0.0.0/.. integer-equal to a v6 range must not count as overlap
            "c": {"addresses": ["::c612:6400-::c612:6409"]},
        }
    )
    assert cfg == Config(pools=cfg.pools)
    assert cfg.conflicting == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("198.18.100.7", ("198.18.100.7",), id="one v4"),
        pytest.param(
            "198.18.100.7, 2001:DB8:0::7", ("198.18.100.7", "2001:db8::7"), id="dual, canonicalised"
        ),
        pytest.param("", (), id="empty = nothing requested"),
        pytest.param(
            "198.18.100.7,nope",
            FieldError("lbd.io/loadBalancerIPs", "'nope' is not an IP address"),
            id="garbage",
        ),
        pytest.param(
            "198.18.100.7,",
            FieldError("lbd.io/loadBalancerIPs", "'' is not an IP address"),
            id="trailing comma",
        ),
        pytest.param(
            "198.18.100.7,198.18.100.8",
            FieldError(
                "lbd.io/loadBalancerIPs",
                "two IPv4 addresses (198.18.100.7, 198.18.100.8); one per family",
            ),
            id="two of one family",
        ),
    ],
)
def test_parse_requested_ips(text: str, expected: object) -> None:
    assert parse_requested_ips(text) == expected


@pytest.mark.parametrize(
    ("annotation", "spec_ip", "expected"),
    [
        pytest.param(None, "198.18.100.7", ("198.18.100.7",), id="spec only"),
        pytest.param("198.18.100.7", None, ("198.18.100.7",), id="annotation only"),
        pytest.param("198.18.100.7,2001:db8::7", "198.18.100.7", None, id="different sets = error"),
        pytest.param("198.18.100.7", "198.18.100.7", ("198.18.100.7",), id="same = fine"),
        pytest.param(None, "x", None, id="bad spec ip"),
    ],
)
def test_merge_requested(annotation: str | None, spec_ip: str | None, expected: object) -> None:
    got = merge_requested(annotation, spec_ip)
    if expected is None:
        assert isinstance(got, FieldError)
        assert got.path == "spec.loadBalancerIP"
    else:
        assert got == expected


def test_advertisement_parses_and_selects_pools() -> None:
    adv = parse_advertisement(
        "l2",
        {
            "ipAddressPools": ["gold"],
            "ipAddressPoolSelectors": [{"matchLabels": {"tier": "silver"}}],
            "nodeSelectors": [{"matchExpressions": [{"key": "role", "operator": "DoesNotExist"}]}],
            "interfaces": ["eth0"],
        },
    )
    assert isinstance(adv, Advertisement)
    assert adv.selects_pool("gold", {})
    assert adv.selects_pool("other", {"tier": "silver"})
    assert not adv.selects_pool("other", {"tier": "bronze"})
    assert adv.selects_node({"zone": "a"}) and not adv.selects_node({"role": "x"})
    assert adv.interfaces == ("eth0",)
    everything = parse_advertisement("all", {})
    assert isinstance(everything, Advertisement)
    assert everything.selects_pool("any", {}) and everything.selects_service({"a": "b"})


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        pytest.param({"ipAddressPools": "gold"}, "spec.ipAddressPools", id="pools not a list"),
        pytest.param(
            {"ipAddressPools": ["gold", "gold"]}, "spec.ipAddressPools[1]", id="duplicate pool"
        ),
        pytest.param({"interfaces": ["eth0/1"]}, "spec.interfaces[0]", id="bad interface name"),
        pytest.param(
            {"interfaces": ["averyveryverylongname"]}, "spec.interfaces[0]", id="interface too long"
        ),
        pytest.param(
            {
                "nodeSelectors": [
                    {"matchExpressions": [{"key": "a", "operator": "in", "values": ["b"]}]}
                ]
            },
            "spec.nodeSelectors[0].matchExpressions[0].operator",
            id="lowercase operator",
        ),
        pytest.param({"ipAddressPool": ["x"]}, "spec.ipAddressPool", id="typo field"),
    ],
)
def test_advertisement_errors(spec: dict[str, Any], path: str) -> None:
    errs = parse_advertisement("l2", spec)
    assert isinstance(errs, tuple)
    assert path in [e.path for e in errs], errs


def test_build_config_keeps_bad_advertisements_apart() -> None:
    cfg = build_config({}, {"good": {}, "bad": {"interfaces": [""]}})
    assert set(cfg.advertisements) == {"good"}
    assert [e.path for e in cfg.invalid_advertisements["bad"]] == ["spec.interfaces[0]"]

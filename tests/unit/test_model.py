"""Shared value types: label selector semantics, ranges, counters rendering."""

from __future__ import annotations

import pytest

from lbd.core.model import (
    Family,
    LabelSelector,
    PoolRange,
    SelectorOperator,
    SelectorRequirement,
    ServiceAllocation,
    ServiceRequest,
    render_count,
    service_key,
)

IN, NOT_IN = SelectorOperator.IN, SelectorOperator.NOT_IN
EXISTS, DNE = SelectorOperator.EXISTS, SelectorOperator.DOES_NOT_EXIST


def req(key: str, op: SelectorOperator, *values: str) -> SelectorRequirement:
    return SelectorRequirement(key, op, frozenset(values))


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        pytest.param(LabelSelector(), {}, True, id="empty selector matches no labels"),
        pytest.param(LabelSelector(), {"a": "b"}, True, id="empty selector matches anything"),
        pytest.param(
            LabelSelector((("app", "web"),)),
            {"app": "web", "x": "y"},
            True,
            id="matchLabels subset",
        ),
        pytest.param(
            LabelSelector((("app", "web"),)), {"app": "db"}, False, id="matchLabels other value"
        ),
        pytest.param(LabelSelector((("app", "web"),)), {}, False, id="matchLabels key absent"),
        pytest.param(
            LabelSelector((), (req("env", IN, "a", "b"),)), {"env": "b"}, True, id="In hit"
        ),
        pytest.param(LabelSelector((), (req("env", IN, "a"),)), {}, False, id="In needs the key"),
        pytest.param(
            LabelSelector((), (req("env", NOT_IN, "a"),)), {}, True, id="NotIn matches absent key"
        ),
        pytest.param(
            LabelSelector((), (req("env", NOT_IN, "a"),)), {"env": "a"}, False, id="NotIn miss"
        ),
        pytest.param(
            LabelSelector((), (req("env", EXISTS),)),
            {"env": ""},
            True,
            id="Exists with empty value",
        ),
        pytest.param(
            LabelSelector((), (req("env", DNE),)), {"env": "x"}, False, id="DoesNotExist miss"
        ),
        pytest.param(
            LabelSelector((("app", "web"),), (req("env", DNE),)),
            {"app": "web"},
            True,
            id="all must hold",
        ),
    ],
)
def test_label_selector(selector: LabelSelector, labels: dict[str, str], matches: bool) -> None:
    assert selector.matches(labels) is matches


@pytest.mark.parametrize(
    ("allocation", "namespace", "ns_labels", "labels", "matches"),
    [
        pytest.param(ServiceAllocation(), "a", {}, {}, True, id="no restriction"),
        pytest.param(
            ServiceAllocation(namespaces=frozenset({"a"})),
            "b",
            {},
            {},
            False,
            id="namespace not listed",
        ),
        pytest.param(
            ServiceAllocation(
                namespaces=frozenset({"a"}), namespace_selectors=(LabelSelector((("t", "x"),)),)
            ),
            "b",
            {"t": "x"},
            {},
            True,
            id="namespace list OR namespace selector",
        ),
        pytest.param(
            ServiceAllocation(
                service_selectors=(LabelSelector((("app", "a"),)), LabelSelector((("app", "b"),)))
            ),
            "n",
            {},
            {"app": "b"},
            True,
            id="service selectors ORed",
        ),
        pytest.param(
            ServiceAllocation(
                namespaces=frozenset({"n"}), service_selectors=(LabelSelector((("app", "a"),)),)
            ),
            "n",
            {},
            {"app": "z"},
            False,
            id="namespace AND service selector",
        ),
    ],
)
def test_service_allocation(
    allocation: ServiceAllocation,
    namespace: str,
    ns_labels: dict[str, str],
    labels: dict[str, str],
    matches: bool,
) -> None:
    assert allocation.matches(namespace, ns_labels, labels) is matches


def test_pool_range_rejects_bad_bounds_and_compares_by_family() -> None:
    with pytest.raises(ValueError, match="invalid IPv4 range"):
        PoolRange(Family.IPV4, 10, 5)
    with pytest.raises(ValueError, match="invalid IPv4 range"):
        PoolRange(Family.IPV4, 0, 2**32)
    a = PoolRange(Family.IPV4, 1, 10)
    b = PoolRange(Family.IPV6, 1, 10)
    assert not a.overlaps(b)
    assert not a.contains(Family.IPV6, 5)
    assert PoolRange(Family.IPV6, 0, 2**64 - 1).size == 2**64
    assert str(PoolRange(Family.IPV4, 0xC6126407, 0xC6126408)) == "198.18.100.7-198.18.100.8"


def test_service_request_key_must_match_namespace_and_name() -> None:
    with pytest.raises(ValueError, match="is not"):
        ServiceRequest(key=service_key("a", "b"), namespace="a", name="c")


@pytest.mark.parametrize(
    ("value", "rendered"),
    [(0, 0), (2**53, 2**53), (2**53 + 1, str(2**53 + 1)), (2**64, "18446744073709551616")],
)
def test_render_count_switches_to_string_above_2_to_53(value: int, rendered: int | str) -> None:
    assert render_count(value) == rendered

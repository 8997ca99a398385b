"""What a pool shows: one pure function of the configuration and the allocator (issue 10
points 6 and 7, issue 13: one owner of the pool status)."""

from __future__ import annotations

from typing import Any

import pytest

from lbd.core.config import PoolInput, build_config
from lbd.core.ipam import Allocator
from lbd.core.model import Allocation, Family
from lbd.core.poolstatus import PoolState, ShownCount, pool_shown
from tests.unit.ipam_support import svc


def setup(pools: dict[str, Any]) -> tuple[Any, Allocator]:
    cfg = build_config(pools)
    a = Allocator()
    a.set_pools(cfg.pools.values(), cfg.conflicting, {n: str(e[0]) for n, e in cfg.invalid.items()})
    return cfg, a


def reasons(shown: Any) -> dict[str, tuple[bool, str]]:
    return {c.type: (c.status, c.reason) for c in shown.conditions}


def test_ready_pool_counts_and_conditions() -> None:
    cfg, a = setup({"p": {"addresses": ["198.18.100.0/30", "2001:db8::/64"]}})
    assert isinstance(a.allocate(svc("s")), Allocation)
    shown = pool_shown("p", cfg, a)
    assert shown.state is PoolState.READY
    assert shown.counts[Family.IPV4] == ShownCount(4, 1, 3)
    assert shown.counts[Family.IPV6] == ShownCount(2**64, 0, 2**64)
    assert reasons(shown) == {
        "Ready": (True, "Ready"),
        "Conflicting": (False, "NoOverlap"),
        "Invalid": (False, "Valid"),
    }
    assert shown.waiting == 0


def test_an_exhausted_pool_says_so_and_counts_who_waits() -> None:
    cfg, a = setup({"p": {"addresses": ["198.18.100.0/31"]}})
    for i in range(2):
        assert isinstance(a.allocate(svc(f"s{i}")), Allocation)
    for i in range(3):
        assert not isinstance(a.allocate(svc(f"w{i}")), Allocation)
    shown = pool_shown("p", cfg, a)
    assert shown.state is PoolState.EXHAUSTED
    ready = shown.condition("Ready")
    assert ready is not None and (ready.status, ready.reason) == (False, "Exhausted")
    assert ready.message == "every address is assigned (2 of 2 IPv4); 3 Services wait"
    assert shown.waiting == 3


def test_a_dual_stack_pool_with_one_family_full_is_still_ready() -> None:
    cfg, a = setup({"p": {"addresses": ["198.18.100.0/32", "2001:db8::/126"]}})
    assert isinstance(a.allocate(svc("s")), Allocation)
    shown = pool_shown("p", cfg, a)
    ready = shown.condition("Ready")
    assert shown.state is PoolState.READY and ready is not None
    assert "IPv4 exhausted" in ready.message


@pytest.mark.parametrize(
    ("pools", "name", "state", "ready_reason", "words"),
    [
        pytest.param(
            {
                "old": PoolInput(
                    {"addresses": ["198.18.100.0/24"]}, created="2026-01-01T00:00:00Z"
                ),
                "new": PoolInput({"addresses": ["198.18.100.7"]}, created="2026-02-01T00:00:00Z"),
            },
            "new",
            PoolState.CONFLICTING,
            "Conflicting",
            "overlaps older pool(s) 'old'",
            id="the newer of two overlapping pools",
        ),
        pytest.param(
            {"bad": {"addresses": ["198.18.100.0/33"]}},
            "bad",
            PoolState.INVALID,
            "Invalid",
            "spec.addresses[0]",
            id="invalid",
        ),
    ],
)
def test_a_pool_that_gives_nothing_shows_zero_available(
    pools: dict[str, Any], name: str, state: PoolState, ready_reason: str, words: str
) -> None:
    cfg, a = setup(pools)
    shown = pool_shown(name, cfg, a)
    assert shown.state is state
    ready = shown.condition("Ready")
    assert ready is not None and (ready.status, ready.reason) == (False, ready_reason)
    assert words in ready.message
    assert all(c.available == 0 for c in shown.counts.values())


def test_the_older_of_overlapping_pools_stays_ready() -> None:
    cfg, a = setup(
        {
            "old": PoolInput({"addresses": ["198.18.100.0/24"]}, created="2026-01-01T00:00:00Z"),
            "new": PoolInput({"addresses": ["198.18.100.7"]}, created="2026-02-01T00:00:00Z"),
        }
    )
    shown = pool_shown("old", cfg, a)
    assert shown.state is PoolState.READY
    assert shown.counts[Family.IPV4].available == 256


def test_host_bits_show_as_a_warning() -> None:
    cfg, a = setup({"p": {"addresses": ["10.0.0.1/24"]}})
    shown = pool_shown("p", cfg, a)
    assert shown.state is PoolState.READY
    assert shown.warnings == (
        "spec.addresses[0]: 10.0.0.1/24 has host bits set; read as "
        "10.0.0.0/24 (as MetalLB reads it)",
    )

"""Dual-stack choices MetalLB users rely on (issue 10 point 5) and "keep what fits" (point 6).

Cases that come from MetalLB name its test (``metallb: <wording>``, ``controller_test.go`` and
``allocator_test.go``); where lbd deliberately differs, the id says so and why."""

from __future__ import annotations

import pytest

from lbd.core.ipam import Allocator, Wait, WaitKind
from lbd.core.model import Allocation, FamilyPolicy, Pool, Reason, Refusal, ServiceRequest
from tests.unit.ipam_support import PREFER, REQUIRE, V4, V6, allocator, pool, svc

# Pools as in MetalLB's TestControllerMutation: a v4-only pool that sorts first by name, a
# v6-only one, a dual-stack one, and a namespace-pinned v4 pool.
POOL1 = pool("pool1", "198.18.100.0/31")  # "1.2.3.0/31"
POOL3 = pool("pool3", "2001:db8:1000::/127")  # "1000::/127"
POOL5 = pool("pool5", "198.18.105.0/31", "2001:db8:5::/127")  # "1.2.3.0/31", "1000::/127"
POOL6 = pool("pool6", "198.18.106.0/31", allocation={"namespaces": ["test-ns1"], "priority": 10})


def got(result: Allocation | Refusal) -> tuple[str, tuple[str, ...]]:
    assert isinstance(result, Allocation), result
    return result.pool, result.addresses


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param(
            svc("s", families=(V4, V6), policy=PREFER),
            ("pool5", ("198.18.105.0", "2001:db8:5::")),
            id="metallb: simple dual-stack LoadBalancer with PreferDualStack policy "
            "(the pool that gives both, not pool1 that sorts first)",
        ),
        pytest.param(
            svc("s", ns="test-ns1", families=(V4,), policy=PREFER),
            ("pool6", ("198.18.106.0",)),
            id="metallb: single-stack LoadBalancer with PreferDualStack policy",
        ),
        pytest.param(
            svc("s", families=(V4, V6), policy=PREFER, pool="pool5"),
            ("pool5", ("198.18.105.0", "2001:db8:5::")),
            id="metallb: request IPs from dualstack pool with PreferDualStack policy",
        ),
        pytest.param(
            svc("s", families=(V4, V6), policy=PREFER, pool="pool1"),
            ("pool1", ("198.18.100.0",)),
            id="metallb: request IP from single-stack ipv4 pool with PreferDualStack policy",
        ),
        pytest.param(
            svc("s", families=(V6,), policy=PREFER, pool="pool3"),
            ("pool3", ("2001:db8:1000::",)),
            id="metallb: request IP from single-stack ipv6 pool with PreferDualStack policy",
        ),
        pytest.param(
            svc("s", families=(V4,), policy=PREFER, pool="pool5"),
            ("pool5", ("198.18.105.0",)),
            id="metallb: request IPs from dualstack pool with PreferDualStack policy but single "
            "stack clusterip",
        ),
        pytest.param(
            svc("s", families=(V4, V6), policy=REQUIRE, pool="pool5"),
            ("pool5", ("198.18.105.0", "2001:db8:5::")),
            id="metallb: request IPs from specific pool",
        ),
        pytest.param(
            svc("s", families=(V4, V6), policy=PREFER, ips=["198.18.100.1"]),
            ("pool1", ("198.18.100.1",)),
            id="PreferDualStack requesting one address gets exactly it (MetalLB refuses: "
            "request specific loadbalancer IPv4 address via custom annotation for dual-stack "
            "config; lbd honours what was asked, docs/IPAM.md)",
        ),
    ],
)
def test_prefer_dual_stack_pool_choice(
    request_: ServiceRequest, expected: tuple[str, tuple[str, ...]]
) -> None:
    a = allocator(POOL1, POOL3, POOL5, POOL6)
    assert got(a.allocate(request_)) == expected


def test_prefer_dual_stack_falls_back_to_the_primary_family_when_no_pool_gives_both() -> None:
    a = allocator(POOL1, POOL3, POOL5)
    for i in range(2):  # pool5's IPv6 is used up
        got(a.allocate(svc(f"six{i}", families=(V6,), pool="pool5")))
    # pool5 can give only IPv4 now: the first pool giving the primary family wins (pool1).
    assert got(a.allocate(svc("s", families=(V4, V6), policy=PREFER))) == (
        "pool1",
        ("198.18.100.0",),
    )


def test_prefer_dual_stack_ipv6_first_takes_the_secondary_family_if_nothing_else() -> None:
    a = allocator(POOL1)
    assert got(a.allocate(svc("s", families=(V6, V4), policy=PREFER))) == (
        "pool1",
        ("198.18.100.0",),
    )


def test_require_dual_stack_requesting_one_address_is_an_invalid_request() -> None:
    a = allocator(POOL5)
    r = a.allocate(svc("s", families=(V4, V6), policy=REQUIRE, ips=["198.18.105.0"]))
    assert isinstance(r, Refusal) and r.reason is Reason.INVALID_REQUEST


# --------------------------------------------------------------------------- keep what fits

DUAL = pool("ds", "198.18.100.0/30", "2001:db8::/126")
V4_ONLY = pool("ds", "198.18.100.0/30")


def dual_service() -> ServiceRequest:
    return svc("web", families=(V4, V6), policy=PREFER)


def test_a_pool_losing_ipv6_keeps_the_ipv4_address_and_gains_ipv6_back() -> None:
    """MetalLB drops both addresses ("can't shrink further ipv6, removing the service
    allocation"); lbd keeps the IPv4 address, still valid and in DNS, and gains IPv6 again
    when the pool has it again."""
    a = allocator(DUAL)
    web = dual_service()
    assert got(a.allocate(web)) == ("ds", ("198.18.100.0", "2001:db8::"))
    assert a.set_pools([V4_ONLY]) == (web.key,)  # it lost something: decided again
    assert got(a.allocate(web)) == ("ds", ("198.18.100.0",))  # .0 kept, not .0 -> .1
    assert a.leaving(web.key) == ("2001:db8::",)  # shown until the status is rewritten
    a.settle(web.key)
    assert a.waits(web.key) == (Wait(WaitKind.CONFIG, pool="ds"),)
    a.set_pools([DUAL])
    assert a.wake() == (web.key,)
    assert got(a.allocate(web)) == ("ds", ("198.18.100.0", "2001:db8::"))


def test_a_pool_change_releases_only_what_no_longer_fits() -> None:
    a = allocator(pool("p", "198.18.100.0/29"))
    keys = [got(a.allocate(svc(f"s{i}")))[1][0] for i in range(6)]
    assert keys[-1] == "198.18.100.5"
    lost = a.set_pools([pool("p", "198.18.100.0/30", "198.18.100.5")])
    assert [str(k) for k in lost] == ["default/s4"]
    for i in (0, 1, 2, 3, 5):
        assert a.holding(svc(f"s{i}").key) is not None


def test_a_require_dual_stack_service_losing_a_family_is_refused_and_cleared() -> None:
    a = allocator(DUAL)
    web = svc("web", families=(V4, V6), policy=REQUIRE)
    got(a.allocate(web))
    a.set_pools([V4_ONLY])
    r = a.allocate(web)
    assert isinstance(r, Refusal) and r.reason is Reason.NO_MATCHING_POOL


def test_family_policy_values_are_the_kubernetes_spelling() -> None:
    assert [p.value for p in FamilyPolicy] == ["SingleStack", "PreferDualStack", "RequireDualStack"]


def test_an_unchanged_pool_definition_changes_nothing() -> None:
    a = Allocator()
    p: Pool = DUAL
    a.set_pools([p])
    got(a.allocate(dual_service()))
    snap = a.snapshot()
    assert a.set_pools([p]) == ()
    assert a.snapshot() == snap

"""Allocator rules from docs/IPAM.md, one table per section, plus story tests.

Every refusal case also checks that the refused call left the allocator exactly as it was.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbd.core.ipam import _V6, Allocator, PoolStatus, _text, sharing_problem
from lbd.core.model import (
    Allocation,
    FamilyCounters,
    Pool,
    Reason,
    Refusal,
    ServiceRequest,
    service_key,
)
from tests.unit.ipam_support import (
    PREFER,
    REQUIRE,
    V4,
    V6,
    Got,
    Refused,
    allocator,
    check,
    must,
    pool,
    svc,
)

NMP = Reason.NO_MATCHING_POOL
EXH = Reason.POOL_EXHAUSTED
UNAV = Reason.REQUESTED_IP_UNAVAILABLE
NIP = Reason.REQUESTED_IP_NOT_IN_POOL
SHARE = Reason.SHARING_CONFLICT
INVALID = Reason.INVALID_REQUEST
CONFL = Reason.POOL_CONFLICTING


def run_case(
    pools: list[Pool],
    before: list[ServiceRequest],
    subject: ServiceRequest,
    expected: Got | Refused,
    conflicting: tuple[str, ...] = (),
) -> Allocator:
    a = allocator(*pools, conflicting=conflicting)
    for s in before:
        must(a.allocate(s))
    snap = a.snapshot()
    result = a.allocate(subject)
    check(a, result, expected)
    if isinstance(expected, Refused):
        assert a.snapshot() == snap, "a refused allocate changed the allocator"
        assert a.holding(subject.key) is None
    return a


A = pool("a", "198.18.100.0/30")
B = pool("b", "198.18.101.0/30")
MANUAL = pool("manual", "198.18.102.0/30", auto=False)
DUAL = pool("dual", "198.18.103.0/30", "2001:db8::/126")
ONLY6 = pool("only6", "2001:db8:1::/126")
TEAM = pool("team", "198.18.104.0/30", allocation={"namespaces": ["team"]})
LABELED_NS = pool(
    "labeled",
    "198.18.105.0/30",
    allocation={"namespaceSelectors": [{"matchLabels": {"env": "prod"}}]},
)
WEB = pool(
    "web", "198.18.106.0/30", allocation={"serviceSelectors": [{"matchLabels": {"app": "web"}}]}
)


def P(name: str, priority: int | None, first: str) -> Pool:
    alloc = {"namespaces": ["default"]} | ({} if priority is None else {"priority": priority})
    return pool(name, first, allocation=alloc)


POOL_CHOICE = [
    pytest.param(
        [A, MANUAL],
        [],
        svc("s", pool="manual"),
        Got("manual", "198.18.102.0"),
        id="annotation picks a pool even with autoAssign false",
    ),
    pytest.param(
        [A],
        [],
        svc("s", pool="nope"),
        Refused(NMP, "'nope'"),
        id="annotation names an unknown pool",
    ),
    pytest.param(
        [A, TEAM],
        [],
        svc("s", pool="team"),
        Refused(NMP, "serviceAllocation"),
        id="annotation pool must still serve the Service",
    ),
    pytest.param(
        [A, MANUAL],
        [],
        svc("s", ips=["198.18.102.2"]),
        Got("manual", "198.18.102.2"),
        id="requested IP may come from a non-autoAssign pool",
    ),
    pytest.param(
        [A],
        [],
        svc("s", ips=["198.18.200.1"]),
        Refused(NIP, "198.18.200.1"),
        id="requested IP in no pool",
    ),
    pytest.param(
        [A, TEAM],
        [],
        svc("s", ips=["198.18.104.1"]),
        Refused(NIP, "198.18.104.1"),
        id="requested IP in a pool the Service may not use",
    ),
    pytest.param(
        [A, B],
        [],
        svc("s", pool="b", ips=["198.18.100.1"]),
        Refused(NIP, "not in pool 'b'"),
        id="requested IP outside the annotated pool",
    ),
    pytest.param(
        [A],
        [svc("s1", ips=["198.18.100.1"])],
        svc("s2", ips=["198.18.100.1"]),
        Refused(UNAV, "default/s1"),
        id="s2 cannot take s1's address",
    ),
    pytest.param(
        [A, TEAM],
        [],
        svc("s", "team"),
        Got("team", "198.18.104.0"),
        id="serviceAllocation pool before plain pools",
    ),
    pytest.param(
        [P("z", 1, "198.18.110.0/30"), P("y", 5, "198.18.111.0/30")],
        [],
        svc("s"),
        Got("z", "198.18.110.0"),
        id="lower priority number first",
    ),
    pytest.param(
        [P("z", 3, "198.18.110.0/30"), P("y", 3, "198.18.111.0/30")],
        [],
        svc("s"),
        Got("y", "198.18.111.0"),
        id="equal priority by name",
    ),
    pytest.param(
        [P("a0", None, "198.18.110.0/30"), P("z9", 7, "198.18.111.0/30")],
        [],
        svc("s"),
        Got("z9", "198.18.111.0"),
        id="pools without priority after pools with",
    ),
    pytest.param([B, A], [], svc("s"), Got("a", "198.18.100.0"), id="plain pools by name"),
    pytest.param(
        [MANUAL],
        [],
        svc("s"),
        Refused(NMP, "autoAssign"),
        id="autoAssign false is never picked on its own",
    ),
    pytest.param(
        [A, TEAM],
        [],
        svc("s", "other"),
        Got("a", "198.18.100.0"),
        id="namespace not listed falls through to plain pool",
    ),
    pytest.param(
        [TEAM],
        [],
        svc("s", "other"),
        Refused(NMP, "other/s"),
        id="only a pool for another namespace",
    ),
    pytest.param(
        [A, LABELED_NS],
        [],
        svc("s", "x", ns_labels={"env": "prod"}),
        Got("labeled", "198.18.105.0"),
        id="namespace selector matches namespace labels",
    ),
    pytest.param(
        [A, WEB],
        [],
        svc("s", labels={"app": "web"}),
        Got("web", "198.18.106.0"),
        id="service selector matches service labels",
    ),
    pytest.param(
        [A, WEB],
        [],
        svc("s", labels={"app": "db"}),
        Got("a", "198.18.100.0"),
        id="service selector miss falls through",
    ),
    pytest.param(
        [pool("a", "198.18.100.0/31"), B],
        [svc("s1"), svc("s2")],
        svc("s3"),
        Got("b", "198.18.101.0"),
        id="full pool -> next pool",
    ),
    pytest.param(
        [pool("a", "198.18.100.0/31")],
        [svc("s1"), svc("s2")],
        svc("s3"),
        Refused(EXH, "'a'"),
        id="every pool full",
    ),
    pytest.param(
        [A, pool("a2", "198.18.100.2")],
        [],
        svc("s"),
        Refused(CONFL, "overlaps 'a2'"),
        ("a", "a2"),
        id="only conflicting pools",
    ),
    pytest.param(
        [A, pool("a2", "198.18.100.2"), B],
        [],
        svc("s"),
        Got("b", "198.18.101.0"),
        ("a", "a2"),
        id="conflicting pools are skipped",
    ),
    pytest.param(
        [A, pool("a2", "198.18.100.2")],
        [],
        svc("s", ips=["198.18.100.1"]),
        Refused(CONFL, "'a'"),
        ("a", "a2"),
        id="requested IP in a conflicting pool",
    ),
    pytest.param(
        [A, pool("a2", "198.18.100.2")],
        [],
        svc("s", pool="a2"),
        Refused(CONFL, "a2"),
        ("a", "a2"),
        id="annotated pool is conflicting",
    ),
]


@pytest.mark.parametrize(
    ("pools", "before", "subject", "expected", "conflicting"),
    [pytest.param(*p.values, (), id=p.id) if len(p.values) == 4 else p for p in POOL_CHOICE],
)
def test_which_pool(pools, before, subject, expected, conflicting) -> None:
    run_case(pools, before, subject, expected, conflicting)


FAMILIES = [
    pytest.param(
        [DUAL],
        [],
        svc("s", families=(V6,)),
        Got("dual", "2001:db8::"),
        id="SingleStack IPv6 on a dual pool",
    ),
    pytest.param(
        [A],
        [],
        svc("s", families=(V6,)),
        Refused(NMP, "IPv6"),
        id="SingleStack IPv6 and only IPv4 pools",
    ),
    pytest.param(
        [DUAL],
        [],
        svc("s", policy=REQUIRE),
        Got("dual", "198.18.103.0", "2001:db8::"),
        id="RequireDualStack gets both, primary first",
    ),
    pytest.param(
        [DUAL],
        [],
        svc("s", policy=REQUIRE, families=(V6, V4)),
        Got("dual", "2001:db8::", "198.18.103.0"),
        id="RequireDualStack IPv6 primary",
    ),
    pytest.param(
        [A, DUAL],
        [],
        svc("s", policy=REQUIRE),
        Got("dual", "198.18.103.0", "2001:db8::"),
        id="RequireDualStack skips single-family pools",
    ),
    pytest.param(
        [A, ONLY6],
        [],
        svc("s", policy=REQUIRE),
        Refused(NMP, "IPv4+IPv6"),
        id="RequireDualStack without a dual pool",
    ),
    pytest.param(
        [A],
        [],
        svc("s", policy=PREFER, families=(V4, V6)),
        Got("a", "198.18.100.0"),
        id="PreferDualStack on a v4 pool gets v4",
    ),
    pytest.param(
        [DUAL],
        [],
        svc("s", policy=PREFER, families=(V6, V4)),
        Got("dual", "2001:db8::", "198.18.103.0"),
        id="PreferDualStack on a dual pool gets both",
    ),
    pytest.param(
        [DUAL],
        [],
        svc("s", policy=PREFER, families=(V4,)),
        Got("dual", "198.18.103.0"),
        id="PreferDualStack on a single-stack cluster",
    ),
    pytest.param(
        [pool("d", "198.18.103.0/30", "2001:db8::/127")],
        [svc("x", families=(V6,)), svc("y", families=(V6,))],
        svc("s", policy=REQUIRE),
        Refused(EXH, "'d'"),
        id="RequireDualStack with v6 full takes no v4 either",
    ),
    pytest.param(
        [DUAL],
        [],
        svc("s", ips=["2001:db8::2"]),
        Refused(INVALID, "IPv6"),
        id="requested v6 on a SingleStack IPv4 Service",
    ),
    pytest.param(
        [DUAL],
        [],
        svc("s", ips=["198.18.103.1", "198.18.103.2"]),
        Refused(INVALID, "one address per family"),
        id="two requested of one family",
    ),
    pytest.param(
        [DUAL],
        [],
        svc("s", ips=["198.18.103.1", "2001:db8::1"], policy=PREFER, families=(V4,)),
        Refused(INVALID, "IPv6"),
        id="requested family the Service does not have",
    ),
    pytest.param(
        [DUAL], [], svc("s", ips=["nope"]), Refused(INVALID, "'nope'"), id="requested garbage"
    ),
    pytest.param(
        [DUAL],
        [],
        svc("s", ips=["198.18.103.1"], policy=REQUIRE),
        Refused(INVALID, "RequireDualStack"),
        id="RequireDualStack with one requested address",
    ),
    pytest.param(
        [DUAL],
        [],
        svc("s", ips=["2001:db8::3", "198.18.103.2"], policy=REQUIRE),
        Got("dual", "198.18.103.2", "2001:db8::3"),
        id="requested pair in one pool, primary first",
    ),
    pytest.param(
        [A, ONLY6],
        [],
        svc("s", ips=["198.18.100.1", "2001:db8:1::1"], policy=REQUIRE),
        Refused(NIP, "not in one pool"),
        id="requested pair across two pools",
    ),
]


@pytest.mark.parametrize(("pools", "before", "subject", "expected"), FAMILIES)
def test_families(pools, before, subject, expected) -> None:
    run_case(pools, before, subject, expected)


SHARE_IP = "198.18.100.1"


def sharer(name: str, ns: str = "default", **kw) -> ServiceRequest:
    return svc(name, ns, ips=[SHARE_IP], **kw)


SHARING = [
    pytest.param(
        sharer("s1", key="k", tcp=[80]),
        sharer("s2", key="k", tcp=[443]),
        None,
        id="same key, other ports: shared",
    ),
    pytest.param(
        sharer("s1", key="k", tcp=[53]),
        sharer("s2", key="k", udp=[53]),
        None,
        id="TCP/53 and UDP/53 share",
    ),
    pytest.param(
        sharer("s1", key="k", tcp=[80]),
        sharer("s2", key="k", tcp=[80]),
        Refused(SHARE, "TCP/80"),
        id="same port: conflict",
    ),
    pytest.param(
        sharer("s1", key="k"),
        sharer("s2", key="other"),
        Refused(UNAV, "sharing keys differ"),
        id="different keys",
    ),
    pytest.param(
        sharer("s1"),
        sharer("s2", key="k"),
        Refused(UNAV, "no allow-shared-ip"),
        id="holder has no key",
    ),
    pytest.param(
        sharer("s1", key="k"),
        sharer("s2"),
        Refused(UNAV, "no allow-shared-ip"),
        id="newcomer has no key",
    ),
    pytest.param(
        sharer("s1", "a", key="k"),
        sharer("s2", "b", key="k"),
        Refused(SHARE, "namespace"),
        id="other namespace without annotation",
    ),
    pytest.param(
        sharer("s1", "a", key="k", share_ns=["b"]),
        sharer("s2", "b", key="k"),
        Refused(SHARE, "b/s2 does not allow"),
        id="only one side names the other",
    ),
    pytest.param(
        sharer("s1", "a", key="k", share_ns=["b"]),
        sharer("s2", "b", key="k", share_ns=["a"]),
        None,
        id="both name each other",
    ),
    pytest.param(
        sharer("s1", "a", key="k", share_ns=["*"]),
        sharer("s2", "b", key="k", share_ns=["*"]),
        None,
        id="wildcard both sides",
    ),
    pytest.param(
        sharer("s1", key="k", etp="Local"),
        sharer("s2", key="k"),
        Refused(SHARE, "externalTrafficPolicy"),
        id="traffic policy differs",
    ),
    pytest.param(
        sharer("s1", key="k", etp="Local", selector={"app": "a"}),
        sharer("s2", key="k", etp="Local", selector={"app": "b"}),
        Refused(SHARE, "selector"),
        id="Local with other selectors",
    ),
    pytest.param(
        sharer("s1", key="k", etp="Local", selector={"app": "a"}),
        sharer("s2", key="k", etp="Local", selector={"app": "a"}),
        None,
        id="Local with same selector",
    ),
    pytest.param(
        sharer("s1", key="k", etp="Cluster", selector={"app": "a"}),
        sharer("s2", key="k", selector={"app": "b"}),
        None,
        id="Cluster ignores selectors",
    ),
]


@pytest.mark.parametrize(("first", "second", "refused"), SHARING)
def test_sharing_rules(
    first: ServiceRequest, second: ServiceRequest, refused: Refused | None
) -> None:
    expected = Got("a", SHARE_IP) if refused is None else refused
    a = run_case([A], [first], second, expected)
    if refused is None:
        assert set(a.holders(SHARE_IP)) == {first.key, second.key}
        assert a.counters("a").ipv4.assigned == 1  # a shared address counts once
    # the rule is symmetric
    assert (sharing_problem(first, second) is None) == (sharing_problem(second, first) is None)


def test_auto_allocation_with_a_key_joins_the_sharer() -> None:
    a = allocator(pool("a", "198.18.100.0/29"))
    must(a.allocate(svc("plain")))
    first = must(a.allocate(svc("web-tcp", key="web", tcp=[80])))
    second = must(a.allocate(svc("web-udp", key="web", udp=[80])))
    clash = must(a.allocate(svc("web-tcp2", key="web", tcp=[80])))
    assert first.addresses == second.addresses == ("198.18.100.1",)
    assert clash.addresses == ("198.18.100.2",)


ORDER = [
    # (pool, steps, address of the final allocate). "+name" allocates, "-name" releases.
    pytest.param(
        pool("a", "198.18.100.0/29"),
        ["+s1", "+s2", "+s3"],
        "198.18.100.3",
        id="lowest never-used first",
    ),
    pytest.param(
        pool("a", "198.18.100.0/29"),
        ["+s1", "+s2", "-s1"],
        "198.18.100.2",
        id="just-released not reused while never-used remain",
    ),
    pytest.param(
        pool("a", "198.18.100.0/30"),
        ["+s1", "+s2", "+s3", "+s4", "-s3", "-s1"],
        "198.18.100.2",
        id="oldest release first",
    ),
    pytest.param(
        pool("a", "198.18.100.0/30"),
        ["+s1", "+s2", "+s3", "+s4", "-s2", "-s3", "+s5", "+s6", "-s6", "-s5"],
        "198.18.100.2",
        id="re-released goes to the back",
    ),
    pytest.param(
        pool("a", "198.18.100.255-198.18.101.1", buggy=True),
        [],
        "198.18.101.1",
        id="avoidBuggyIPs skips .255 and .0",
    ),
    pytest.param(
        pool("a", "198.18.100.255-198.18.101.1"),
        [],
        "198.18.100.255",
        id="without avoidBuggyIPs .255 is fine",
    ),
    pytest.param(
        pool("a", "198.18.100.0/30", "198.18.100.8/30"),
        ["+s1", "+s2", "+s3", "+s4"],
        "198.18.100.8",
        id="next range when the first is used up",
    ),
]


@pytest.mark.parametrize(("the_pool", "steps", "expected"), ORDER)
def test_which_address(the_pool: Pool, steps: list[str], expected: str) -> None:
    a = allocator(the_pool)
    for step in steps:
        if step[0] == "+":
            must(a.allocate(svc(step[1:])))
        else:
            assert a.release(service_key("default", step[1:]))
    assert must(a.allocate(svc("final"))).addresses == (expected,)


def test_requested_buggy_address_is_not_in_an_avoiding_pool() -> None:
    a = allocator(pool("a", "198.18.100.0/24", buggy=True))
    check(a, a.allocate(svc("s", ips=["198.18.100.255"])), Refused(NIP, "198.18.100.255"))


def test_ipv6_slash_64_pool_behaves_like_a_small_one() -> None:
    a = allocator(pool("v6", "2001:db8::/64"))
    got = [must(a.allocate(svc(f"s{i}", families=(V6,)))).addresses[0] for i in range(3)]
    assert got == ["2001:db8::", "2001:db8::1", "2001:db8::2"]
    must(a.allocate(svc("r", families=(V6,), ips=["2001:db8::ffff:ffff:ffff:fffe"])))
    c = a.counters("v6").ipv6
    assert (c.total, c.assigned, c.available) == (2**64, 4, 2**64 - 4)


@pytest.mark.parametrize(
    ("the_pool", "v4", "v6"),
    [
        pytest.param(
            pool("p", "198.18.100.0/23", buggy=True),
            FamilyCounters(508, 0),
            FamilyCounters(),
            id="buggy excluded, two /24s",
        ),
        pytest.param(
            pool("p", "198.18.100.250-198.18.101.5", buggy=True),
            FamilyCounters(10, 0),
            FamilyCounters(),
            id="buggy across a boundary",
        ),
        pytest.param(
            pool("p", "198.18.100.0/24", "2001:db8::/120"),
            FamilyCounters(256, 0),
            FamilyCounters(256, 0),
            id="both families",
        ),
        pytest.param(
            pool("p", "2001:db8::/32"),
            FamilyCounters(),
            FamilyCounters(2**96, 0),
            id="huge v6 exact",
        ),
    ],
)
def test_counters_totals(the_pool: Pool, v4: FamilyCounters, v6: FamilyCounters) -> None:
    c = allocator(the_pool).counters("p")
    assert (c.ipv4, c.ipv6) == (v4, v6)


def test_counters_track_assign_and_release_and_unknown_pool_raises() -> None:
    a = allocator(DUAL)
    must(a.allocate(svc("s1", policy=REQUIRE)))
    must(a.allocate(svc("s2")))
    c = a.counters("dual")
    assert (c.ipv4.assigned, c.ipv4.available, c.ipv6.assigned, c.ipv6.available) == (2, 2, 1, 3)
    a.release(service_key("default", "s1"))
    assert a.counters("dual").of(V6).assigned == 0
    with pytest.raises(KeyError):
        a.counters("nope")


# ---------------------------------------------------------------------------- restore


def test_restore_is_idempotent_and_blocks_the_address() -> None:
    a = allocator(pool("a", "198.18.100.0/29"))
    s = svc("s")
    first = a.restore(s, ["198.18.100.1"])
    snap = a.snapshot()
    assert a.restore(s, ["198.18.100.1"]) == first == Allocation(s.key, "a", ("198.18.100.1",))
    assert a.snapshot() == snap
    # the cursor skips the restored address
    got = [must(a.allocate(svc(f"n{i}"))).addresses[0] for i in range(3)]
    assert got == ["198.18.100.0", "198.18.100.2", "198.18.100.3"]


OLD, NEW = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"


@pytest.mark.parametrize(
    "reverse", [False, True], ids=["older listed first", "younger listed first"]
)
def test_restore_all_older_keeps_a_disputed_address(reverse: bool) -> None:
    a = allocator(A)
    older, younger = svc("zz-old", created=OLD), svc("aa-new", created=NEW)
    items = [(older, ["198.18.100.1"], "a"), (younger, ["198.18.100.1"], "a")]
    result = a.restore_all(reversed(items) if reverse else items)
    assert isinstance(result[older.key], Allocation)
    check(a, result[younger.key], Refused(UNAV, "held by default/zz-old"))


def test_restore_all_same_timestamp_breaks_tie_by_key() -> None:
    a = allocator(A)
    result = a.restore_all([(svc("b"), ["198.18.100.1"], None), (svc("a"), ["198.18.100.1"], None)])
    assert isinstance(result[service_key("default", "a")], Allocation)  # "default/a" is older
    check(a, result[service_key("default", "b")], Refused(UNAV, "held by default/a"))
    assert a.holders("198.18.100.1") == (service_key("default", "a"),)


def test_a_later_restore_never_takes_an_address_from_its_holder() -> None:
    """Issue 10 point 3: a claim that arrives after the session started (a stale status) is
    refused, even from an older Service; the holder keeps its address."""
    a = allocator(A)
    younger = svc("young", created=NEW)
    must(a.allocate(younger))
    snap = a.snapshot()
    check(a, a.restore(svc("old", created=OLD), ["198.18.100.0"]), Refused(UNAV, "young"))
    assert a.snapshot() == snap


def test_restore_compatible_sharers_both_keep() -> None:
    a = allocator(A)
    must(a.restore(svc("x", key="k", tcp=[80], created=NEW), ["198.18.100.1"]))
    must(a.restore(svc("y", key="k", tcp=[81], created=OLD), ["198.18.100.1"]))
    assert len(a.holders("198.18.100.1")) == 2


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        pytest.param(["198.18.200.1"], Refused(NIP, "198.18.200.1"), id="outside every pool"),
        pytest.param(["junk"], Refused(INVALID, "'junk'"), id="not an address"),
        pytest.param([], Refused(INVALID, "want one or two"), id="nothing"),
        pytest.param(
            ["198.18.100.1", "198.18.101.1"], Refused(INVALID, "different families"), id="two v4"
        ),
    ],
)
def test_restore_refusals_change_no_holding(addresses: list[str], expected: Refused) -> None:
    a = allocator(A, B, pool("v6", "2001:db8::/120"))
    must(a.allocate(svc("other")))
    snap = a.snapshot()
    check(a, a.restore(svc("s"), addresses), expected)
    assert a.snapshot().holdings == snap.holdings
    if expected.reason is INVALID:
        assert a.snapshot() == snap


def test_restore_outside_every_pool_keeps_the_shown_address_taken_until_settled() -> None:
    """A Service still shows an address no pool has any more: nobody else may get it before
    the Service's status stops showing it (issue 10: no address on two Services)."""
    a = allocator(A)
    s = svc("s", ips=["198.18.100.1"])
    check(a, a.restore(s, ["198.18.100.1", "2001:db8::9"]), Got("a", "198.18.100.1"))
    assert a.leaving(s.key) == ("2001:db8::9",)  # across pools: what fits is kept
    late = svc("late", ips=["198.18.250.1"])
    check(a, a.restore(late, ["198.18.250.1"]), Refused(NIP, "198.18.250.1"))
    assert a.holders("198.18.250.1") == (late.key,)
    assert a.settle(late.key) == ("198.18.250.1",)
    assert a.holders("198.18.250.1") == ()


def test_restore_into_conflicting_and_unknown_invalid_pool_keeps_addresses() -> None:
    a = allocator(A, pool("a2", "198.18.100.2"), conflicting=("a", "a2"), invalid=("broken",))
    assert must(a.restore(svc("s"), ["198.18.100.3"])).pool == "a"
    kept = must(a.restore(svc("t"), ["198.18.250.1"], pool="broken"))
    assert kept.pool == "broken"
    assert a.set_pools([A, pool("a2", "198.18.100.2")], ("a", "a2"), ("broken",)) == ()


# ---------------------------------------------------------------------------- pool changes


def test_set_pools_releases_only_services_outside_their_pools() -> None:
    a = allocator(pool("a", "198.18.100.0/29"), pool("b", "198.18.101.0/30"))
    for i in range(4):
        must(a.allocate(svc(f"s{i}")))  # .0 .. .3 of a
    must(a.allocate(svc("t", pool="b")))
    released = a.set_pools([pool("a", "198.18.100.0/31"), pool("b", "198.18.101.0/30")])
    assert released == (service_key("default", "s2"), service_key("default", "s3"))
    assert a.holding(service_key("default", "s0")) is not None
    assert a.holding(service_key("default", "t")) is not None
    assert a.counters("a").ipv4 == FamilyCounters(2, 2)


def test_deleted_pool_moves_holder_to_a_covering_pool() -> None:
    a = allocator(pool("old", "198.18.100.0/30"))
    must(a.allocate(svc("s")))
    assert a.set_pools([pool("new", "198.18.100.0/24")]) == ()
    assert a.holding(service_key("default", "s")) == Allocation(
        service_key("default", "s"), "new", ("198.18.100.0",)
    )
    assert a.counters("new").ipv4.assigned == 1


def test_service_allocation_change_releases_services_no_longer_served() -> None:
    a = allocator(pool("p", "198.18.100.0/30"))
    must(a.allocate(svc("s", "team")))
    must(a.allocate(svc("s", "other")))
    released = a.set_pools([pool("p", "198.18.100.0/30", allocation={"namespaces": ["team"]})])
    assert released == (service_key("other", "s"),)


def test_avoid_buggy_turned_on_releases_the_dot_zero_holder() -> None:
    a = allocator(pool("p", "198.18.100.0/30"))
    must(a.allocate(svc("s0")))
    must(a.allocate(svc("s1")))
    assert a.set_pools([pool("p", "198.18.100.0/30", buggy=True)]) == (
        service_key("default", "s0"),
    )


def test_conflicting_and_invalid_pools_keep_assignments_but_give_nothing_new() -> None:
    p = pool("p", "198.18.100.0/30")
    a = allocator(p)
    must(a.allocate(svc("s0")))
    assert a.set_pools([p, pool("q", "198.18.100.3")], conflicting={"p": ["q"], "q": []}) == ()
    assert dict(a.snapshot().statuses)["p"] == PoolStatus.CONFLICTING
    check(a, a.allocate(svc("s1", pool="p")), Refused(CONFL, "overlaps 'q'"))
    assert must(a.allocate(svc("s0"))).addresses == ("198.18.100.0",)  # still satisfied
    # p becomes invalid (a typo): the last valid definition is kept, nothing new is handed out
    assert a.set_pools([], invalid={"p": "spec.addresses[0]: junk"}) == ()
    assert dict(a.snapshot().statuses)["p"] == PoolStatus.INVALID
    assert a.counters("p").ipv4 == FamilyCounters(4, 1)
    check(a, a.allocate(svc("s1")), Refused(NMP, "pool 'p' is Invalid (spec.addresses[0]: junk)"))
    check(a, a.allocate(svc("s1", pool="p")), Refused(NMP, "is Invalid"))
    # fixed: usable again
    assert a.set_pools([p]) == ()
    assert must(a.allocate(svc("s1"))).addresses == ("198.18.100.1",)


# ---------------------------------------------------------------------------- re-evaluation


def test_changed_request_is_reevaluated() -> None:
    a = allocator(pool("a", "198.18.100.0/29"), DUAL)
    s = svc("s", ips=["198.18.100.5"])
    must(a.allocate(s))
    # same request again: idempotent
    snap = a.snapshot()
    assert must(a.allocate(s)).addresses == ("198.18.100.5",)
    assert a.snapshot() == snap
    # requested IP dropped: the current address still satisfies
    assert must(a.allocate(svc("s"))).addresses == ("198.18.100.5",)
    # new requested IP: moves; the old one stays taken until the status stops showing it
    assert must(a.allocate(svc("s", ips=["198.18.100.6"]))).addresses == ("198.18.100.6",)
    assert a.leaving(s.key) == ("198.18.100.5",)
    assert a.holders("198.18.100.5") == (s.key,)
    assert a.settle(s.key) == ("198.18.100.5",)
    assert a.holders("198.18.100.5") == ()
    # unavailable new request: refused, keeps what it had
    must(a.allocate(svc("blocker", ips=["198.18.100.7"])))
    check(a, a.allocate(svc("s", ips=["198.18.100.7"])), Refused(UNAV, "default/blocker"))
    assert must(a.holding(service_key("default", "s")) or Refusal(NMP, "")).addresses == (
        "198.18.100.6",
    )
    # pool annotation changed: moves to that pool
    assert must(a.allocate(svc("s", pool="dual"))).pool == "dual"
    # becomes dual-stack: keeps its IPv4 address, adds IPv6
    got = must(a.allocate(svc("s", pool="dual", policy=REQUIRE)))
    assert got.addresses == ("198.18.103.0", "2001:db8::")


def test_sharer_that_drops_its_key_moves_to_its_own_address() -> None:
    a = allocator(A)
    must(a.allocate(svc("x", key="k", tcp=[80])))
    must(a.allocate(svc("y", key="k", tcp=[81])))
    assert must(a.allocate(svc("y", tcp=[81]))).addresses == ("198.18.100.1",)
    a.settle(service_key("default", "y"))
    assert a.holders("198.18.100.0") == (service_key("default", "x"),)


def test_port_change_that_collides_with_a_sharer_moves_away() -> None:
    a = allocator(A)
    must(a.allocate(svc("x", key="k", tcp=[80])))
    must(a.allocate(svc("y", key="k", tcp=[81])))
    assert must(a.allocate(svc("y", key="k", tcp=[80]))).addresses == ("198.18.100.1",)


# ---------------------------------------------------------------------------- story


def test_story_a_cluster_day() -> None:
    """One allocator through a day of changes (MetalLB allocator_test.go style)."""
    a = allocator(pool("web", "198.18.100.0/30"), pool("spare", "198.18.101.0/31", auto=False))
    s = {n: svc(n, tcp=[80]) for n in ("a", "b", "c", "d", "e")}

    # morning: four Services fill "web"; the fifth finds it full ("spare" is manual)
    for n in "abcd":
        must(a.allocate(s[n]))
    check(a, a.allocate(s["e"]), Refused(EXH, "'web'"))
    assert a.counters("web").ipv4 == FamilyCounters(4, 4)

    # "e" asks for the spare pool explicitly
    check(a, a.allocate(svc("e", pool="spare")), Got("spare", "198.18.101.0"))

    # "b" and "c" go away; "f" gets b's address (released first), not c's
    a.release(s["b"].key)
    a.release(s["c"].key)
    check(a, a.allocate(svc("f")), Got("web", "198.18.100.1"))

    # "g" shares f's address via a key; f must opt in too, so first it is refused
    g = svc("g", key="dns", udp=[53], ips=["198.18.100.1"])
    check(a, a.allocate(g), Refused(UNAV, "default/f"))
    must(a.allocate(svc("f", key="dns", tcp=[53])))
    check(a, a.allocate(g), Got("web", "198.18.100.1"))

    # f leaves: the shared address stays with g; g leaves: it is free again
    a.release(svc("f").key)
    assert a.holders("198.18.100.1") == (g.key,)
    assert a.counters("web").ipv4.assigned == 3
    a.release(g.key)
    assert a.counters("web").ipv4.assigned == 2

    # the controller restarts: a new allocator restores from status, then allocates
    b = allocator(pool("web", "198.18.100.0/30"), pool("spare", "198.18.101.0/31", auto=False))
    for n, ip, hint in (
        ("a", "198.18.100.0", "web"),
        ("d", "198.18.100.3", "web"),
        ("e", "198.18.101.0", "spare"),
    ):
        must(b.restore(svc(n, tcp=[80]), [ip], hint))
    assert b.counters("web").ipv4 == FamilyCounters(4, 2)
    # never-used addresses first from the new allocator's point of view
    check(b, b.allocate(svc("h")), Got("web", "198.18.100.1"))

    # the admin shrinks "web": d is outside now and is released for reallocation
    assert b.set_pools(
        [pool("web", "198.18.100.0/31"), pool("spare", "198.18.101.0/31", auto=False)]
    ) == (s["d"].key,)
    check(b, b.allocate(s["d"]), Refused(EXH, "'web'"))


# ---------------------------------------------------------------------------- address text


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**128 - 1), st.sampled_from([0, 1, 2, 3]))
def test_address_text_matches_ipaddress(v4: int, v6: int, zeros: int) -> None:
    # Zero out some words so that runs of zeros (the "::" rule) are actually exercised.
    for i in range(zeros):
        v6 &= ~(0xFFFF << (16 * ((v6 >> (i * 7)) % 8)))
    assert _text(v4) == str(ipaddress.IPv4Address(v4))
    assert _text(v6 | _V6) == str(ipaddress.IPv6Address(v6))


@pytest.mark.parametrize(
    "address",
    [
        "::",
        "::1",
        "1::",
        "2001:db8::1:0:0:1",
        "2001:0:0:1::1",
        "1:0:0:2:0:0:0:3",
        "1:2:3:4:5:6:7:8",
    ],
)
def test_address_text_rfc5952_cases(address: str) -> None:
    assert _text(int(ipaddress.IPv6Address(address)) | _V6) == str(ipaddress.IPv6Address(address))


def test_pools_for_lists_usable_pools_in_choice_order() -> None:
    a = allocator(
        pool("plain-b", "198.18.100.0/30"),
        pool("plain-a", "198.18.101.0/30"),
        pool("manual", "198.18.102.0/30", auto=False),
        P("prio-9", 9, "198.18.103.0/30"),
        P("prio-1", 1, "198.18.104.0/30"),
        pool("other-ns", "198.18.105.0/30", allocation={"namespaces": ["x"]}),
        pool("clash", "198.18.100.3"),
        conflicting=("plain-b", "clash"),
    )
    assert a.pools_for(svc("s")) == ("prio-1", "prio-9", "plain-a")
    assert a.pools_for(svc("s", pool="manual")) == ("manual",)
    assert a.pools_for(svc("s", pool="clash")) == ()
    assert a.pools_for(svc("s", pool="other-ns")) == ()


def test_queries_on_unknown_things_are_empty() -> None:
    a = allocator(A)
    assert a.release(service_key("default", "nobody")) == ()
    assert a.holding(service_key("default", "nobody")) is None
    assert a.holders("not-an-ip") == ()
    assert a.settle(service_key("default", "nobody")) == ()
    assert a.retire(service_key("default", "nobody")) == ()
    assert a.waits(service_key("default", "nobody")) == ()
    assert a.waiting_on("nope") == 0
    assert a.wake() == ()

"""Liveness and fairness of the allocator (docs/IPAM.md "Liveness", issue 10 point 1): a refused
Service is woken exactly when what it waits for changes, the oldest first, and a younger Service
never takes an address an older waiting one is owed."""

from __future__ import annotations

from lbd.core.ipam import Allocator, Wait, WaitKind
from lbd.core.model import Allocation, Reason, Refusal, ServiceKey
from tests.unit.ipam_support import PREFER, V4, V6, allocator, pool, svc

SMALL = pool("small", "198.18.100.0/30")


def must(r: Allocation | Refusal) -> Allocation:
    assert isinstance(r, Allocation), r
    return r


def refused(r: Allocation | Refusal, reason: Reason) -> Refusal:
    assert isinstance(r, Refusal) and r.reason is reason, r
    return r


def at(day: int) -> str:
    return f"2026-01-{day:02d}T00:00:00Z"


def full(a: Allocator, n: int = 4) -> list[ServiceKey]:
    return [must(a.allocate(svc(f"h{i}", created=at(1)))).key for i in range(n)]


def test_a_refusal_records_what_would_unblock_it_and_the_message_says_it() -> None:
    a = allocator(SMALL)
    full(a)
    r = refused(a.allocate(svc("w", created=at(2))), Reason.POOL_EXHAUSTED)
    assert "no IPv4 address of pool 'small' is free" in r.message
    assert a.waits(ServiceKey("default/w")) == (Wait(WaitKind.POOL_ADDRESS, "small", V4),)
    assert a.waiting_on("small") == 1
    assert a.wake() == ()  # nothing changed yet


def test_one_freed_address_wakes_only_the_oldest_of_many_waiters() -> None:
    a = allocator(SMALL)
    holders = full(a)
    for i in range(1000):  # 1 000 waiting, created one day after another; names reversed
        refused(
            a.allocate(
                svc(f"w{999 - i:03d}", created=f"2026-02-01T00:{i // 60:02d}:{i % 60:02d}Z")
            ),
            Reason.POOL_EXHAUSTED,
        )
    assert a.waiting_on("small") == 1000
    a.release(holders[0])
    woken = a.wake()
    assert woken == (ServiceKey("default/w999"),), "only the oldest waiter is decided again"
    assert a.wake() == ()  # not twice
    # A younger one asking now is refused: the address is kept for the oldest.
    r = refused(a.allocate(svc("w000", created="2026-02-01T00:16:39Z")), Reason.POOL_EXHAUSTED)
    assert "kept for an older waiting Service" in r.message
    # The oldest takes it.
    got = must(a.allocate(svc("w999", created="2026-02-01T00:00:00Z")))
    assert got.addresses == ("198.18.100.0",)
    assert a.waiting_on("small") == 999


def test_a_woken_waiter_that_no_longer_wants_the_pool_passes_the_turn_on() -> None:
    a = allocator(SMALL, pool("other", "198.18.101.0/30", auto=False))
    holders = full(a)
    refused(a.allocate(svc("old", created=at(2))), Reason.POOL_EXHAUSTED)
    refused(a.allocate(svc("young", created=at(3))), Reason.POOL_EXHAUSTED)
    a.release(holders[0])
    assert a.wake() == (ServiceKey("default/old"),)
    # "old" changed its mind (asks for another pool): the freed address goes to the next.
    must(a.allocate(svc("old", created=at(2), pool="other")))
    assert a.wake() == (ServiceKey("default/young"),)
    assert must(a.allocate(svc("young", created=at(3)))).addresses == ("198.18.100.0",)


def test_same_creation_time_breaks_the_tie_by_namespace_and_name() -> None:
    a = allocator(SMALL)
    holders = full(a)
    for name in ("b", "a", "c"):
        refused(a.allocate(svc(name, created=at(5))), Reason.POOL_EXHAUSTED)
    a.release(holders[1])
    assert a.wake() == (ServiceKey("default/a"),)


def test_a_grown_pool_wakes_every_waiter_and_each_that_fits_gets_one() -> None:
    a = allocator(SMALL)
    full(a)
    for i in range(5):
        refused(a.allocate(svc(f"w{i}", created=at(2 + i))), Reason.POOL_EXHAUSTED)
    a.set_pools([pool("small", "198.18.100.0/29")])
    woken = a.wake()
    assert woken == tuple(ServiceKey(f"default/w{i}") for i in range(5))
    got = [a.allocate(svc(f"w{i}", created=at(2 + i))) for i in range(5)]
    assert [isinstance(g, Allocation) for g in got] == [True] * 4 + [False]


def test_a_requested_address_wakes_its_waiters_when_its_holder_leaves() -> None:
    a = allocator(pool("lab", "198.18.100.0/28"))
    holder = must(a.allocate(svc("holder", ips=["198.18.100.5"], created=at(1))))
    refused(
        a.allocate(svc("wants", ips=["198.18.100.5"], created=at(2))),
        Reason.REQUESTED_IP_UNAVAILABLE,
    )
    assert a.waits(ServiceKey("default/wants"))[0].address == "198.18.100.5"
    must(a.allocate(svc("unrelated", created=at(3))))
    assert a.wake() == ()
    a.release(holder.key)
    assert a.wake() == (ServiceKey("default/wants"),)
    # A younger Service that asks for the freed address meanwhile does not jump the queue.
    r = refused(
        a.allocate(svc("late", ips=["198.18.100.5"], created=at(9))),
        Reason.REQUESTED_IP_UNAVAILABLE,
    )
    assert "kept for default/wants" in r.message
    assert must(a.allocate(svc("wants", ips=["198.18.100.5"], created=at(2)))).addresses == (
        "198.18.100.5",
    )


def test_a_sharing_partner_that_changes_its_ports_wakes_the_waiter() -> None:
    a = allocator(pool("lab", "198.18.100.0/28"))
    ann = {"ips": ["198.18.100.5"], "key": "k"}
    must(a.allocate(svc("tcp", tcp=[53], created=at(1), **ann)))  # type: ignore[arg-type]
    refused(a.allocate(svc("also-tcp", tcp=[53], created=at(2), **ann)), Reason.SHARING_CONFLICT)  # type: ignore[arg-type]
    must(a.allocate(svc("tcp", tcp=[54], created=at(1), **ann)))  # type: ignore[arg-type]
    assert a.wake() == (ServiceKey("default/also-tcp"),)
    assert must(a.allocate(svc("also-tcp", tcp=[53], created=at(2), **ann))).addresses == (  # type: ignore[arg-type]
        "198.18.100.5",
    )


def test_no_matching_pool_waits_for_a_pool_change_only() -> None:
    a = allocator(SMALL)
    holders = full(a)
    refused(a.allocate(svc("w", pool="later")), Reason.NO_MATCHING_POOL)
    assert a.waits(ServiceKey("default/w")) == (Wait(WaitKind.CONFIG, pool="later"),)
    a.release(holders[0])
    assert a.wake() == ()  # a freed address of another pool does not help it
    a.set_pools([SMALL, pool("later", "198.18.101.0/30")])
    assert a.wake() == (ServiceKey("default/w"),)
    assert must(a.allocate(svc("w", pool="later"))).pool == "later"
    assert a.waits(ServiceKey("default/w")) == ()


def test_an_unchanged_configuration_wakes_nobody() -> None:
    a = allocator(SMALL)
    full(a)
    refused(a.allocate(svc("w")), Reason.POOL_EXHAUSTED)
    a.set_pools([SMALL])
    assert a.wake() == ()


def test_release_and_invalid_requests_stop_waiting() -> None:
    a = allocator(SMALL)
    full(a)
    refused(a.allocate(svc("w")), Reason.POOL_EXHAUSTED)
    refused(a.allocate(svc("v")), Reason.POOL_EXHAUSTED)
    a.release(ServiceKey("default/w"))
    assert a.waiting_on("small") == 1
    refused(a.allocate(svc("v", ips=["junk"])), Reason.INVALID_REQUEST)
    assert a.waiting_on("small") == 0


def test_a_retired_address_is_taken_until_settled_and_then_wakes_the_waiter() -> None:
    """A refused Service's address stays on the wire until its status is cleared; only then
    does it go to the waiting Service (never to two Services at once)."""
    a = allocator(SMALL)
    holders = full(a)
    refused(a.allocate(svc("w", created=at(2))), Reason.POOL_EXHAUSTED)
    a.retire(holders[3])
    assert a.wake() == ()
    refused(a.allocate(svc("w", created=at(2))), Reason.POOL_EXHAUSTED)
    assert a.settle(holders[3]) == ("198.18.100.3",)
    assert a.wake() == (ServiceKey("default/w"),)
    assert must(a.allocate(svc("w", created=at(2)))).addresses == ("198.18.100.3",)


def test_a_prefer_dual_stack_holder_of_one_family_waits_for_the_other() -> None:
    a = allocator(pool("ds", "198.18.100.0/30", "2001:db8::/127"))
    for i in range(2):
        must(a.allocate(svc(f"six{i}", families=(V6,), created=at(1))))
    got = must(a.allocate(svc("both", families=(V4, V6), policy=PREFER, created=at(2))))
    assert got.addresses == ("198.18.100.0",)
    assert a.waits(ServiceKey("default/both")) == (Wait(WaitKind.POOL_ADDRESS, "ds", V6),)
    a.release(ServiceKey("default/six0"))
    assert a.wake() == (ServiceKey("default/both"),)
    got = must(a.allocate(svc("both", families=(V4, V6), policy=PREFER, created=at(2))))
    assert got.addresses == ("198.18.100.0", "2001:db8::")  # kept its IPv4, gained IPv6


# An automatic Service with an allow-shared-ip key refused PoolExhausted can also be served by
# sharing an address a compatible partner holds. Found by the chaos test (issue 10, seeds
# 1264404593 and 312797231: "team-b/s768 has no address but could get ('198.18.101.108',) from
# beta", held by a team-b Service with the same key on other ports; the waiter was never decided
# again, because it waited only for a free address).


def full_of_unkeyed(a: Allocator) -> None:
    for i in range(4):
        must(a.allocate(svc(f"h{i}", tcp=[80], created=at(1))))


def test_a_holder_that_takes_the_waiters_key_wakes_it() -> None:
    a = allocator(SMALL)
    full_of_unkeyed(a)
    refused(a.allocate(svc("w", key="k2", tcp=[80], created=at(2))), Reason.POOL_EXHAUSTED)
    assert a.wake() == ()
    # h3 keeps its address and now allows sharing it under k2, on another port.
    got = must(a.allocate(svc("h3", key="k2", udp=[443], created=at(1))))
    assert a.wake() == (ServiceKey("default/w"),)
    assert must(a.allocate(svc("w", key="k2", tcp=[80], created=at(2)))).addresses == (
        got.addresses
    )


def test_a_conflicting_partner_that_leaves_wakes_the_waiter() -> None:
    a = allocator(SMALL)
    full_of_unkeyed(a)
    a.release(ServiceKey("default/h3"))
    # Two partners share the freed address under k; the waiter clashes with one of them (TCP/80).
    shared = must(a.allocate(svc("p-udp", key="k", udp=[53], created=at(1)))).addresses
    assert must(a.allocate(svc("p-tcp", key="k", tcp=[80], created=at(1)))).addresses == shared
    refused(a.allocate(svc("w", key="k", tcp=[80], created=at(2))), Reason.POOL_EXHAUSTED)
    assert a.wake() == ()
    a.release(ServiceKey("default/p-tcp"))  # the address stays held (by p-udp): not freed
    assert a.wake() == (ServiceKey("default/w"),)
    assert must(a.allocate(svc("w", key="k", tcp=[80], created=at(2)))).addresses == shared


def test_an_unchanged_keyed_holder_wakes_nobody() -> None:
    """Deciding a keyed holder again (a resync) changes nothing: no storm of waiters."""
    a = allocator(SMALL)
    full_of_unkeyed(a)
    a.release(ServiceKey("default/h3"))
    must(a.allocate(svc("p", key="k", tcp=[80], created=at(1))))
    refused(a.allocate(svc("w", key="k", tcp=[80], created=at(2))), Reason.POOL_EXHAUSTED)
    assert a.wake() == ()
    must(a.allocate(svc("p", key="k", tcp=[80], created=at(1))))
    assert a.wake() == ()


def test_a_waiting_services_message_stays_the_same_while_the_pool_changes_around_it() -> None:
    """The refusal becomes the Service's condition, and a changed condition is a status write
    and an Event: a release, an address kept for an older waiter, or a grown pool must not
    rewrite every waiting Service (a CI chaos run wrote 2 672 such updates while counts were in
    the message)."""
    a = allocator(SMALL)
    holders = full(a)
    refused(a.allocate(svc("old", created=at(2))), Reason.POOL_EXHAUSTED)
    first = refused(a.allocate(svc("young", created=at(3))), Reason.POOL_EXHAUSTED).message
    a.release(holders[0])  # one free address, kept for "old"
    assert refused(a.allocate(svc("young", created=at(3))), Reason.POOL_EXHAUSTED).message == first
    must(a.allocate(svc("old", created=at(2))))  # "old" takes it: the pool is full again
    assert refused(a.allocate(svc("young", created=at(3))), Reason.POOL_EXHAUSTED).message == first
    grown = pool("small", "198.18.100.0/29")
    a.set_pools([grown], conflicting=frozenset(), invalid=frozenset())
    for i in range(4):  # four older Services take the four new addresses
        must(a.allocate(svc(f"g{i}", created=at(1))))
    assert refused(a.allocate(svc("young", created=at(3))), Reason.POOL_EXHAUSTED).message == first


def test_the_message_names_every_full_pool_once_per_family() -> None:
    a = allocator(SMALL, pool("spare", "198.18.101.0/31"), pool("six", "2001:db8:18::/127"))
    for i in range(6):
        must(a.allocate(svc(f"h{i}", created=at(1))))
    for i in range(2):
        must(a.allocate(svc(f"v6h{i}", created=at(1), families=(V6,))))
    r = refused(
        a.allocate(svc("w", created=at(2), families=(V4, V6), policy=PREFER)),
        Reason.POOL_EXHAUSTED,
    )
    assert r.message.startswith(
        "waiting for a free address: no IPv4 address of pool 'small' or 'spare' is free; "
        "no IPv6 address of pool 'six' is free (each is assigned"
    ), r.message

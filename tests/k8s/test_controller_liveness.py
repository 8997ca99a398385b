"""Issue 10 against the API server through the official client: a waiting Service gets a freed
address at once (the oldest first), a grown pool serves every waiter, an API stall past the
renew deadline drops no key, and what a user sees while waiting."""

from __future__ import annotations

import threading
import time
from typing import Any

from lbd.k8s.client import IPADDRESSPOOLS, SERVICES
from lbd.k8s.elector import ElectionConfig, LeaderElector
from tests.k8s.controller_support import (
    CONTROLLER_TOKEN,
    ApiServer,
    Env,
    addresses,
    condition,
    event_reasons,
    flush,
    get_service,
    kube_for,
    pool,
    service,
    wait_addresses,
    wait_condition,
    wait_for,
)


def pool_status(env: Env, name: str) -> dict[str, Any]:
    return env.admin.get(IPADDRESSPOOLS.path(name=name)).get("status") or {}


def taken_in(env: Env, name: str) -> None:
    """Every controller's allocator has the pool (not just its view: a Service decided in
    between would be refused NoMatchingPool, then served in another order)."""

    def known(ctl: Any) -> bool:
        state = ctl.describe()["allocator"]
        return state is not None and name in state["pools"]

    wait_for(lambda: all(known(c) for c in env.controllers), 10, f"pool {name} taken in")


def full_pool_with_holders(env: Env, n: int = 4) -> list[str]:
    pool(env.admin, "small", ["198.18.100.0/30"])
    taken_in(env, "small")
    names = [f"holder{i}" for i in range(n)]
    for name in names:
        service(env.admin, name)
    for name in names:
        wait_addresses(env.admin, name)
    return names


def seconds_until_address(env: Env, name: str, timeout: float = 10.0) -> tuple[float, list[str]]:
    start = time.monotonic()
    got = wait_for(lambda: addresses(get_service(env.admin, name)), timeout, f"{name} served", 0.01)
    return time.monotonic() - start, got


def test_a_freed_address_goes_to_the_waiting_service_at_once(env: Env) -> None:
    full_pool_with_holders(env)
    service(env.admin, "waiter")
    cond = wait_condition(env.admin, "waiter", "PoolExhausted")
    # It says what it waits for: which pool and family, and who gets the next address.
    assert "no IPv4 address of pool 'small' is free" in cond["message"], cond["message"]
    assert "the oldest waiting Service gets the next one released" in cond["message"]
    wait_for(lambda: pool_status(env, "small").get("waitingServices") == 1, 5, "waiting count")
    freed = addresses(get_service(env.admin, "holder2"))
    env.admin.delete(SERVICES.path(namespace="default", name="holder2"))
    took, got = seconds_until_address(env, "waiter")
    assert got == freed
    assert took < 1.0, f"the waiting Service got the freed address after {took:.2f}s"
    wait_for(lambda: pool_status(env, "small").get("waitingServices") == 0, 5, "nobody waits")


def test_a_grown_pool_serves_every_waiter_that_now_fits(env: Env) -> None:
    full_pool_with_holders(env)
    waiters = [f"w{i}" for i in range(5)]
    for name in waiters:
        service(env.admin, name)
    shown = {name: wait_condition(env.admin, name, "PoolExhausted") for name in waiters}
    wait_for(lambda: pool_status(env, "small").get("waitingServices") == 5, 5, "5 waiting")
    ready = {c["type"]: c for c in pool_status(env, "small")["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Exhausted")
    assert "5 Services wait" in ready["message"]
    # 4 more: four of the five fit. A merge patch, because the controller writes this pool's
    # status concurrently and a get-and-replace can meet a 409.
    env.admin.patch(IPADDRESSPOOLS.path(name="small"), {"spec": {"addresses": ["198.18.100.0/29"]}})
    start = time.monotonic()

    def served() -> list[str] | None:
        done = [n for n in waiters if addresses(get_service(env.admin, n))]
        return done if len(done) == 4 else None

    done = wait_for(served, 10, "four waiters served", 0.01)
    took = time.monotonic() - start
    assert took < 1.0, f"the grown pool served its waiters after {took:.2f}s"
    (left,) = set(waiters) - set(done)
    wait_for(lambda: pool_status(env, "small").get("waitingServices") == 1, 5, "1 waiting")
    # The one still waiting was decided again, and its condition was not rewritten: the pool's
    # new size and counts are in the pool's status, not in every waiting Service (a rewrite is
    # a status write and a new Event per waiter on every pool change).
    flush(env)
    assert condition(get_service(env.admin, left)) == shown[left]
    assert event_reasons(env.admin, left) == ["AllocationFailed"]


def test_three_wait_one_frees_the_oldest_gets_it(env: Env) -> None:
    full_pool_with_holders(env)
    # Created a second apart (creationTimestamp has one-second precision), in the opposite of
    # name order, so that the oldest is not simply the first name.
    order = ["zz-first", "mm-second", "aa-third"]
    for i, name in enumerate(order):
        if i:
            time.sleep(1.05)
        service(env.admin, name)
        wait_condition(env.admin, name, "PoolExhausted")
    env.admin.delete(SERVICES.path(namespace="default", name="holder0"))
    took, got = seconds_until_address(env, "zz-first")
    assert got == ["198.18.100.0"] and took < 1.0
    time.sleep(0.5)  # the younger ones still wait (and never got it in between)
    for name in order[1:]:
        svc = get_service(env.admin, name)
        assert addresses(svc) == []
        assert (condition(svc) or {}).get("reason") == "PoolExhausted"
    # The next one freed goes to the next oldest.
    env.admin.delete(SERVICES.path(namespace="default", name="holder1"))
    _, got = seconds_until_address(env, "mm-second")
    assert addresses(get_service(env.admin, "aa-third")) == []


def test_a_deleted_sharing_partner_unblocks_the_waiter(env: Env) -> None:
    pool(env.admin, "lab", ["198.18.100.0/28"])
    taken_in(env, "lab")
    service(env.admin, "holder", annotations={"lbd.io/loadBalancerIPs": "198.18.100.5"})
    wait_addresses(env.admin, "holder")
    service(env.admin, "wants", annotations={"lbd.io/loadBalancerIPs": "198.18.100.5"})
    wait_condition(env.admin, "wants", "RequestedIPUnavailable")
    env.admin.delete(SERVICES.path(namespace="default", name="holder"))
    took, got = seconds_until_address(env, "wants")
    assert got == ["198.18.100.5"] and took < 1.0


def test_an_api_stall_past_the_renew_deadline_drops_no_key(lab: ApiServer) -> None:
    """Issue 10 point 2: stop the API for longer than the renew deadline, create a Service as
    soon as it answers again: its address comes within 2 s (no 600 s resync needed)."""
    from lbd.controller.controller import Controller, ControllerSettings

    admin = kube_for(lab)
    pool(admin, "lab", ["198.18.100.0/28"])
    kube = kube_for(lab, CONTROLLER_TOKEN)
    holder: list[Controller] = []
    elector = LeaderElector(
        kube,
        ElectionConfig("lbd-system", "lbd-controller", "stall", 3.0, 2.0, 0.5),
        on_started_leading=lambda: threading.Thread(target=holder[0].start_leading).start(),
        on_stopped_leading=lambda: holder[0].stop_leading(),  # noqa: PLW0108 (late binding)
    )
    ctl = Controller(
        kube,
        ControllerSettings(workers=2, identity="stall", pool_status_interval=0.2),
        may_write=elector.is_leader,
    )
    holder.append(ctl)
    ctl.start()
    stop = threading.Event()
    threading.Thread(target=elector.run, args=(stop,), daemon=True).start()
    try:
        assert ctl.wait_for_sync(10)
        service(admin, "before")
        wait_addresses(admin, "before")
        lab.outage(3.0, mode="hang")  # longer than renew_deadline (2 s)
        time.sleep(3.0)
        answered = time.monotonic()
        service(admin, "after")
        wait_addresses(admin, "after", timeout=10)
        took = time.monotonic() - answered
        assert took < 2.0, f"address {took:.2f}s after the API answered again"
        assert addresses(get_service(admin, "before")) == ["198.18.100.0"]
    finally:
        stop.set()
        ctl.stop()

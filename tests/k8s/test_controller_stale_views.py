"""The controller decides from what the API says now, not from a watch that lags behind it.

Scripted, one reconcile at a time (no worker threads): the controller's own informer is held
back and fed the events a lagging watch would deliver, late, while the API has moved on.
Found by the chaos test (issue 10: "default/s309: ('198.18.100.60',) -> () with an unchanged
request (RequestedIPNotInPool ...)", seed 1843369182 under load): after an API outage the pool
watch came back seconds after the Service watch, then delivered a pool's shrink and its re-growth
one after the other, and a configuration pass that ran between the two took addresses from
Services whose pool had never stopped holding them.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from lbd.controller.controller import CONFIG, Controller, ControllerSettings, ServiceWork
from lbd.core.model import ServiceKey
from lbd.k8s.client import IPADDRESSPOOLS, Kube
from lbd.k8s.informer import EventType
from tests.k8s.controller_support import (
    CONTROLLER_TOKEN,
    ApiServer,
    addresses,
    condition,
    get_service,
    kube_for,
    pool,
    service,
    wait_for,
)


@pytest.fixture
def scripted(lab: ApiServer) -> Iterator[Controller]:
    """A leading controller without workers: the test runs each reconcile itself."""
    ctl = Controller(
        kube_for(lab, CONTROLLER_TOKEN), ControllerSettings(workers=0, identity="scripted")
    )
    ctl.start()
    try:
        assert ctl.wait_for_sync(10)
        ctl.start_leading()
        yield ctl
    finally:
        ctl.stop()


def alpha_ranges(ctl: Controller) -> Any:
    state: Any = ctl.describe()["allocator"]
    return state["pools"]["alpha"]["ranges"]


def web_holds_60(ctl: Controller, admin: Kube) -> ServiceKey:
    """Pool alpha (198.18.100.0/26), and Service web holding the 198.18.100.60 it requests."""
    pool(admin, "alpha", ["198.18.100.0/26"])
    wait_for(lambda: ctl.pools.get("alpha"), 10, "the pool in the controller's view")
    ctl.sync_once(CONFIG)
    service(admin, "web", annotations={"lbd.io/loadBalancerIPs": "198.18.100.60"})
    web = ServiceKey("default/web")
    wait_for(lambda: ctl.services.get(web), 10, "the Service in the controller's view")
    ctl.sync_once(ServiceWork(web))
    assert addresses(get_service(admin, "web")) == ["198.18.100.60"]
    return web


def test_a_superseded_pool_shrink_takes_no_address(lab: ApiServer, scripted: Controller) -> None:
    ctl, admin = scripted, kube_for(lab)
    web = web_holds_60(ctl, admin)

    # The pool watch stalls; meanwhile a user shrinks the pool and grows it back.
    ctl.informers[1].stop()
    path = IPADDRESSPOOLS.path(name="alpha")
    shrunk = admin.patch(path, {"spec": {"addresses": ["198.18.100.0/27"]}})
    admin.patch(path, {"spec": {"addresses": ["198.18.100.0/26"]}})
    # The watch comes back and delivers the shrink first; a configuration pass runs before the
    # re-growth arrives.
    ctl.pools.on_event(EventType.MODIFIED, None, shrunk)
    ctl.sync_once(CONFIG)
    ctl.sync_once(ServiceWork(web))

    # The pool never stopped holding 198.18.100.60 (it holds it now): the Service keeps it.
    assert alpha_ranges(ctl) == ["198.18.100.0/26"]
    svc = get_service(admin, "web")
    assert addresses(svc) == ["198.18.100.60"]
    cond = condition(svc)
    assert cond is not None and cond["status"] == "True", cond


def test_a_current_pool_shrink_still_releases(lab: ApiServer, scripted: Controller) -> None:
    """The other side: a shrink that is the API's current state is applied at once."""
    ctl, admin = scripted, kube_for(lab)
    web = web_holds_60(ctl, admin)

    ctl.informers[1].stop()
    shrunk = admin.patch(
        IPADDRESSPOOLS.path(name="alpha"), {"spec": {"addresses": ["198.18.100.0/27"]}}
    )
    ctl.pools.on_event(EventType.MODIFIED, None, shrunk)
    ctl.sync_once(CONFIG)
    ctl.sync_once(ServiceWork(web))

    assert alpha_ranges(ctl) == ["198.18.100.0/27"]
    svc = get_service(admin, "web")
    assert addresses(svc) == []
    cond = condition(svc)
    assert cond is not None and cond["reason"] == "RequestedIPNotInPool", cond


def drain(ctl: Controller) -> None:
    """Run every queued reconcile (and those they queue) until the queue is empty."""
    while (key := ctl.queue.get(timeout=0.3)) is not None:
        try:
            ctl.sync_once(key)
        finally:
            ctl.queue.done(key)


def test_the_pool_status_counts_each_service_that_starts_waiting(lab: ApiServer) -> None:
    """A refusal changes what the pool's status says (waitingServices), so it is written
    again: the count is not left at whatever it was when an address last changed."""
    ctl = Controller(
        kube_for(lab, CONTROLLER_TOKEN),
        ControllerSettings(workers=0, identity="scripted", pool_status_interval=0.0),
    )
    ctl.start()
    try:
        assert ctl.wait_for_sync(10)
        ctl.start_leading()
        admin = kube_for(lab)
        pool(admin, "small", ["198.18.100.0/31"])
        wait_for(lambda: ctl.pools.get("small"), 10, "the pool in the controller's view")
        for name in ("a", "b"):
            service(admin, name)
        wait_for(lambda: len(ctl.services) >= 2, 10, "the holders in the controller's view")
        drain(ctl)
        assert all(addresses(get_service(admin, n)) for n in ("a", "b"))
        for i, name in enumerate(("w1", "w2")):
            service(admin, name)
            wait_for(partial(ctl.services.get, f"default/{name}"), 10, name)
            drain(ctl)
            status = admin.get(IPADDRESSPOOLS.path(name="small")).get("status") or {}
            assert status.get("waitingServices") == i + 1, status
    finally:
        ctl.stop()


def test_a_failed_pool_list_is_retried_soon(lab: ApiServer, scripted: Controller) -> None:
    """The consistent read of a pool change can fail (the API is away): the change is tried
    again within a fraction of a second, not after the rate limiter's backlog."""
    ctl, admin = scripted, kube_for(lab)
    pool(admin, "alpha", ["198.18.100.0/26"])
    wait_for(lambda: ctl.pools.get("alpha"), 10, "the pool in the controller's view")
    ctl.sync_once(CONFIG)
    ctl.informers[1].stop()
    shrunk = admin.patch(
        IPADDRESSPOOLS.path(name="alpha"), {"spec": {"addresses": ["198.18.100.0/27"]}}
    )
    ctl.pools.on_event(EventType.MODIFIED, None, shrunk)
    lab.fail_next(1, 500, verb="list")
    ctl.sync_once(CONFIG)
    assert alpha_ranges(ctl) == ["198.18.100.0/26"]  # not applied without the read
    drain(ctl)  # takes about CONFIG_RETRY
    assert alpha_ranges(ctl) == ["198.18.100.0/27"]

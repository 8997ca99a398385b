"""The Lease elector against the lab API server, with a fake clock for the timing."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from lbd.k8s.client import LEASES, Kube
from lbd.k8s.elector import ElectionConfig, LeaderElector
from lbd.lab.apiserver import LabApiServer
from lbd.runtime.clock import FakeClock
from tests.k8s.controller_support import CONTROLLER_TOKEN, kube_for


def elector(lab: LabApiServer, ident: str, clock: FakeClock) -> LeaderElector:
    # As the controller's service account: the Role in deploy/base/rbac.yaml must allow this.
    kube: Kube = kube_for(lab, CONTROLLER_TOKEN)
    cfg = ElectionConfig("lbd-system", "lbd-controller", ident, 15.0, 10.0, 2.0)
    return LeaderElector(kube, cfg, clock=clock)


def holder(lab: LabApiServer) -> str:
    lease = kube_for(lab).get(LEASES.path(namespace="lbd-system", name="lbd-controller"))
    return str(lease["spec"]["holderIdentity"])


def test_one_leader_and_the_other_takes_over_only_after_the_lease_expires(lab):
    clock = FakeClock()
    a, b = elector(lab, "a", clock), elector(lab, "b", clock)
    assert a.try_acquire_or_renew()
    assert a.is_leader()
    assert not b.try_acquire_or_renew()
    assert not b.is_leader()
    assert holder(lab) == "a"
    # a keeps renewing: b never gets it, however long it waits.
    for _ in range(20):
        clock.advance(2.0)
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    # a stops renewing (hung or partitioned). After renew_deadline it no longer counts itself
    # leader, while b still cannot take the lease: there is no moment with two writers.
    clock.advance(10.0)
    assert not a.is_leader()
    assert not b.try_acquire_or_renew()
    clock.advance(5.1)  # lease_duration since b last saw the record change
    assert b.try_acquire_or_renew()
    assert b.is_leader()
    assert holder(lab) == "b"
    assert not a.try_acquire_or_renew(), "a must not win the lease back from a live holder"


def test_lease_age_is_measured_from_observation_not_from_remote_timestamps(lab):
    kube_for(lab).create(
        LEASES.path(namespace="lbd-system"),
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "lbd-controller", "namespace": "lbd-system"},
            "spec": {
                "holderIdentity": "skewed",
                "leaseDurationSeconds": 15,
                # Written by a machine whose clock is years behind: still a live lease for us.
                "renewTime": "2001-01-01T00:00:00.000000Z",
            },
        },
    )
    clock = FakeClock()
    a = elector(lab, "a", clock)
    assert not a.try_acquire_or_renew()
    clock.advance(14.0)
    assert not a.try_acquire_or_renew()
    clock.advance(1.1)
    assert a.try_acquire_or_renew()
    lease = kube_for(lab).get(LEASES.path(namespace="lbd-system", name="lbd-controller"))
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseTransitions"] == 1


def test_racing_candidates_cannot_both_win(lab):
    clock = FakeClock()
    electors = [elector(lab, f"c{i}", clock) for i in range(4)]
    barrier = threading.Barrier(len(electors))
    results: list[bool] = []

    def campaign(e: LeaderElector) -> None:
        barrier.wait()
        results.append(e.try_acquire_or_renew())

    threads = [threading.Thread(target=campaign, args=(e,)) for e in electors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # Create (409 AlreadyExists) and update (409 Conflict on resourceVersion) decide the race.
    assert results.count(True) == 1
    assert sum(e.is_leader() for e in electors) == 1


@pytest.mark.parametrize(
    ("durations", "field"),
    [
        ((10.0, 10.0, 2.0), "lease_duration"),
        ((15.0, 2.0, 2.0), "renew_deadline"),
        ((15.0, 10.0, 0.0), "retry_period"),
    ],
)
def test_timing_is_validated(durations, field):
    with pytest.raises(ValueError, match=field):
        ElectionConfig("ns", "name", "me", *durations)


def test_a_renewal_after_a_stall_counts_from_its_write(lab):
    """Issue 10 point 2: the read stalled longer than renew_deadline, then the renewal went
    through. It counts from when it was sent, so the replica is leader again at once (it used to
    count from before the stalled read, leaving is_leader() False until the next renewal while
    the controller stayed active and dropped the keys it could not write)."""
    clock = FakeClock()
    a = elector(lab, "a", clock)
    assert a.try_acquire_or_renew() and a.is_leader()
    real_get = a.kube.get

    def stalled_get(path: str, *, query: Any = None, decode: Any = None) -> Any:
        clock.advance(12.0)  # the API server did not answer for longer than renew_deadline
        return real_get(path, query=query, decode=decode)

    a.kube.get = stalled_get  # type: ignore[method-assign]
    assert a.try_acquire_or_renew()
    assert a.is_leader(), "a renewal that went through must count from when it was sent"

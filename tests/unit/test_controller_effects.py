"""Events, logs and metrics as a pure function of before/after (issue 13 point 2): one Event
per change a user sees, none from a resync or a restart."""

from __future__ import annotations

import logging

import pytest

from lbd.controller.effects import (
    Count,
    Decision,
    Effect,
    Emit,
    Gauge,
    Log,
    Metric,
    Shown,
    Verdict,
    pool_effects,
    service_effects,
    services_waiting,
)
from lbd.core.model import Family
from lbd.core.poolstatus import PoolCondition, PoolShown, PoolState, ShownCount
from lbd.k8s.conditions import ObservedCondition
from lbd.k8s.service import observe_service

KEY = "ns/web"
ASSIGNED = Decision(
    Verdict.ASSIGNED, ("198.18.100.7",), "lab", "Assigned", "198.18.100.7 from pool lab"
)
EXHAUSTED = Decision(Verdict.REFUSED, reason="PoolExhausted", message="waiting for ...")


def cond(status: str, reason: str, message: str) -> ObservedCondition:
    return ObservedCondition("lbd.io/AddressAssigned", status, reason, message)


def emits(effects: tuple[Effect, ...]) -> list[tuple[bool, str]]:
    return [(e.warning, e.reason) for e in effects if isinstance(e, Emit)]


@pytest.mark.parametrize(
    ("before", "decision", "wrote", "expected"),
    [
        pytest.param(Shown(), ASSIGNED, True, [(False, "IPAllocated")], id="first address"),
        pytest.param(
            Shown(("198.18.100.7",), cond("True", "Assigned", "x")),
            ASSIGNED,
            True,
            [],
            id="same address (annotation or condition write): silent",
        ),
        pytest.param(Shown(), ASSIGNED, False, [], id="nothing written: silent"),
        pytest.param(
            Shown(("198.18.100.9",)),
            ASSIGNED,
            True,
            [(True, "ClearAssignment"), (False, "IPAllocated")],
            id="moved",
        ),
        pytest.param(Shown(), EXHAUSTED, True, [(True, "AllocationFailed")], id="refused"),
        pytest.param(
            Shown((), cond("False", "PoolExhausted", "waiting for ...")),
            EXHAUSTED,
            True,
            [],
            id="the same refusal again (a resync): silent",
        ),
        pytest.param(
            Shown(("198.18.100.7",), cond("True", "Assigned", "x")),
            EXHAUSTED,
            True,
            [(True, "ClearAssignment"), (True, "AllocationFailed")],
            id="refused after holding",
        ),
        pytest.param(
            Shown(),
            Decision(Verdict.INVALID, reason="InvalidRequest", message="bad"),
            True,
            [(True, "InvalidRequest")],
            id="invalid request",
        ),
        pytest.param(
            Shown(("198.18.100.7",)),
            Decision(Verdict.RELEASED, released=("198.18.100.7",)),
            True,
            [(False, "IPReleased")],
            id="no longer a LoadBalancer",
        ),
        pytest.param(
            Shown(),
            Decision(Verdict.DELETED, released=("198.18.100.7",)),
            False,
            [],
            id="deleted: a log line, no Event on a gone object",
        ),
    ],
)
def test_service_events(
    before: Shown, decision: Decision, wrote: bool, expected: list[tuple[bool, str]]
) -> None:
    assert emits(service_effects(KEY, before, decision, wrote)) == expected


def test_gaining_a_family_says_what_was_kept() -> None:
    decision = Decision(Verdict.ASSIGNED, ("198.18.100.7", "2001:db8::7"), "ds", "Assigned", "m")
    effects = service_effects(KEY, Shown(("198.18.100.7",)), decision, True)
    (event,) = [e for e in effects if isinstance(e, Emit)]
    assert event.message == "assigned 2001:db8::7 from pool ds (kept 198.18.100.7)"
    assert Count(Metric.ALLOCATIONS, ("assigned", "Assigned")) in effects


def test_refusal_counts_and_logs() -> None:
    effects = service_effects(KEY, Shown(), EXHAUSTED, True)
    # one counter, one model: a refusal is result="refused" with its reason, counted once
    assert [e for e in effects if isinstance(e, Count)] == [
        Count(Metric.ALLOCATIONS, ("refused", "PoolExhausted"))
    ]
    (log,) = [e for e in effects if isinstance(e, Log)]
    assert log.level == logging.WARNING and ("service", KEY) in log.fields


def shown(reason: str, warnings: tuple[str, ...] = ()) -> PoolShown:
    return PoolShown(
        name="p",
        state=PoolState(reason),
        counts={Family.IPV4: ShownCount(4, 4, 0), Family.IPV6: ShownCount()},
        waiting=2,
        conditions=(PoolCondition("Ready", reason == "Ready", reason, f"{reason} message"),),
        warnings=warnings,
    )


def ready(reason: str) -> ObservedCondition:
    return ObservedCondition("Ready", "False", reason, "")


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(
            ready("Ready"), "Exhausted", [(True, "PoolExhausted")], id="becomes exhausted"
        ),
        pytest.param(ready("Exhausted"), "Exhausted", [], id="stays exhausted: silent"),
        pytest.param(None, "Conflicting", [(True, "PoolConflicting")], id="new and conflicting"),
        pytest.param(ready("Ready"), "Invalid", [(True, "PoolInvalid")], id="becomes invalid"),
        pytest.param(ready("Exhausted"), "Ready", [], id="recovers: silent"),
    ],
)
def test_pool_events(
    before: ObservedCondition | None, after: str, expected: list[tuple[bool, str]]
) -> None:
    assert emits(pool_effects("p", before, shown(after), ())) == expected


def test_pool_gauges_and_host_bit_warnings_once() -> None:
    note = "spec.addresses[0]: 10.0.0.1/24 has host bits set; read as 10.0.0.0/24"
    effects = pool_effects("p", ready("Ready"), shown("Ready", (note,)), ())
    assert Gauge(Metric.POOL_TOTAL, ("p", "ipv4"), 4) in effects
    assert Gauge(Metric.POOL_ASSIGNED, ("p", "ipv4"), 4) in effects
    assert Gauge(Metric.POOL_TOTAL, ("p", "ipv6"), 0) in effects  # no range: 0, not absent
    assert emits(effects) == [(True, "AddressesNormalized")]
    assert emits(pool_effects("p", ready("Ready"), shown("Ready", (note,)), (note,))) == []


def test_a_deleted_pool_removes_its_series() -> None:
    effects = pool_effects("p", None, None, ())
    assert effects and all(isinstance(e, Gauge) and e.value is None for e in effects)


@pytest.mark.parametrize("state", list(PoolState))
def test_pool_state_gauge_is_one_for_its_state_and_zero_for_the_others(state: PoolState) -> None:
    effects = pool_effects("p", None, shown(state.value), ())
    states = {
        e.labels[1]: e.value
        for e in effects
        if isinstance(e, Gauge) and e.metric is Metric.POOL_STATE
    }
    assert states == {s.value: float(s is state) for s in PoolState}


def test_a_deleted_pool_removes_every_series() -> None:
    effects = pool_effects("p", ready("Ready"), None, ())
    gauges = [e for e in effects if isinstance(e, Gauge)]
    assert len(gauges) == 4 + len(PoolState) and all(g.value is None for g in gauges)


def _svc(name: str, **extra: object) -> dict[str, object]:
    obj: dict[str, object] = {
        "metadata": {"namespace": "ns", "name": name, "uid": name, "annotations": {}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        "status": {},
    }
    for key, value in extra.items():
        section, _, field = key.partition("__")
        obj[section][field] = value  # type: ignore[index]
    return obj


def _refused(reason: str) -> dict[str, object]:
    cond = {"type": "lbd.io/AddressAssigned", "status": "False", "reason": reason, "message": ""}
    return {"conditions": [cond]}


def test_services_waiting_counts_services_without_an_address_by_reason_and_pool() -> None:
    views = [
        observe_service(_svc("new")),  # not decided yet
        observe_service(_svc("full", status__conditions=_refused("PoolExhausted")["conditions"])),
        observe_service(
            _svc(
                "blue",
                metadata__annotations={"lbd.io/address-pool": "blue"},
                status__conditions=_refused("PoolExhausted")["conditions"],
            )
        ),
        observe_service(
            _svc(
                "has",
                status__loadBalancer={"ingress": [{"ip": "198.18.100.1", "ipMode": "VIP"}]},
            )
        ),
        observe_service(_svc("other", spec__loadBalancerClass="example.com/other")),
        observe_service(_svc("clusterip", spec__type="ClusterIP")),
    ]
    assert services_waiting(views, None) == {
        ("Pending", ""): 1.0,
        ("PoolExhausted", ""): 1.0,
        ("PoolExhausted", "blue"): 1.0,
    }

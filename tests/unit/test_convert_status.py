"""service_patches / merge_conditions: only the difference is written; times move only on flips.

The writer diffs against the Service's view (read once), never the raw object."""

from __future__ import annotations

from typing import Any

from lbd.k8s.conditions import Condition, merge_conditions
from lbd.k8s.service import CONDITION_TYPE, observe_service
from lbd.k8s.service_writer import ServiceStatus, service_patches


def service_diff(obj: dict[str, Any], desired: ServiceStatus, *, stamp: str | None = None):
    return service_patches(observe_service(obj), desired, stamp=stamp)


ASSIGNED = ServiceStatus(("198.18.100.7",), "lab", Condition(True, "Assigned", "198.18.100.7"))


def svc(status: dict[str, Any] | None = None, annotations: dict[str, str] | None = None):
    return {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "resourceVersion": "42",
            "annotations": annotations or {},
        },
        "status": status or {},
    }


def test_fresh_service_gets_status_and_annotation_with_resource_version():
    meta, status = service_diff(svc(), ASSIGNED, stamp="T1")
    assert meta == {
        "metadata": {
            "resourceVersion": "42",
            "annotations": {"lbd.io/ip-allocated-from-pool": "lab"},
        }
    }
    assert status is not None
    assert status["metadata"] == {"resourceVersion": "42"}
    assert status["status"]["loadBalancer"] == {
        "ingress": [{"ip": "198.18.100.7", "ipMode": "VIP"}]
    }
    (cond,) = status["status"]["conditions"]
    assert cond == {
        "type": CONDITION_TYPE,
        "status": "True",
        "reason": "Assigned",
        "message": "198.18.100.7",
        "lastTransitionTime": "T1",
    }


def test_nothing_to_write_when_the_service_already_shows_it():
    _meta, status = service_diff(svc(), ASSIGNED, stamp="T1")
    assert status is not None
    done = svc(status["status"], {"lbd.io/ip-allocated-from-pool": "lab"})
    assert service_diff(done, ASSIGNED, stamp="T2") == (None, None)


def test_missing_ip_mode_is_fixed():
    current = svc(
        {
            "loadBalancer": {"ingress": [{"ip": "198.18.100.7"}]},
            "conditions": [
                {
                    "type": CONDITION_TYPE,
                    "status": "True",
                    "reason": "Assigned",
                    "message": "198.18.100.7",
                    "lastTransitionTime": "T0",
                }
            ],
        },
        {"lbd.io/ip-allocated-from-pool": "lab"},
    )
    meta, status = service_diff(current, ASSIGNED)
    assert meta is None
    assert status is not None
    assert "conditions" not in status["status"]
    assert status["status"]["loadBalancer"]["ingress"][0]["ipMode"] == "VIP"


def test_other_conditions_are_kept_and_transition_time_moves_only_on_a_flip():
    others = {"type": "example.com/Other", "status": "True", "reason": "X", "message": "m"}
    start = (others,)
    conds = merge_conditions(start, CONDITION_TYPE, Condition(False, "PoolExhausted", "a"), "T1")
    assert conds is not None and conds[0] == others
    # Same status, new message: time kept.
    again = merge_conditions(
        tuple(conds), CONDITION_TYPE, Condition(False, "PoolExhausted", "b"), "T2"
    )
    assert again is not None and again[1]["lastTransitionTime"] == "T1"
    # Flip to True: time moves.
    flipped = merge_conditions(tuple(again), CONDITION_TYPE, Condition(True, "Assigned", "c"), "T3")
    assert flipped is not None and flipped[1]["lastTransitionTime"] == "T3"
    # Identical: nothing to write. Removal keeps the others.
    final = tuple(flipped)
    assert merge_conditions(final, CONDITION_TYPE, Condition(True, "Assigned", "c"), "T4") is None
    assert merge_conditions(final, CONDITION_TYPE, None, "T5") == [others]


def test_release_clears_ingress_condition_and_annotation():
    shown = svc(
        {
            "loadBalancer": {"ingress": [{"ip": "198.18.100.7", "ipMode": "VIP"}]},
            "conditions": [
                {"type": CONDITION_TYPE, "status": "True", "reason": "Assigned", "message": "x"}
            ],
        },
        {"lbd.io/ip-allocated-from-pool": "lab"},
    )
    meta, status = service_diff(shown, ServiceStatus((), None, None))
    assert meta == {
        "metadata": {
            "resourceVersion": "42",
            "annotations": {"lbd.io/ip-allocated-from-pool": None},
        }
    }
    assert status is not None
    assert status["status"] == {"loadBalancer": {"ingress": []}, "conditions": []}

"""The Event recorder: core/v1 Events with involvedObject, aggregation of repeats into count."""

from __future__ import annotations

from lbd.k8s.client import EVENTS
from lbd.k8s.events import EventKind, EventRecorder
from tests.k8s.controller_support import CONTROLLER_TOKEN, kube_for, service


def test_events_are_written_and_repeats_bump_count(lab):
    admin = kube_for(lab)
    svc = service(admin, "web")
    rec = EventRecorder(kube_for(lab, CONTROLLER_TOKEN), component="lbd-controller", host="h1")
    try:
        for _ in range(3):
            rec.event(svc, EventKind.NORMAL, "IPAllocated", "assigned 198.18.100.7")
        rec.event(svc, EventKind.WARNING, "AllocationFailed", "PoolExhausted: no room")
        assert rec.flush(10)
    finally:
        rec.stop()
    items = admin.get(EVENTS.path(namespace="default"))["items"]
    by_reason = {e["reason"]: e for e in items}
    assert len(items) == 2
    ev = by_reason["IPAllocated"]
    assert ev["count"] == 3
    assert ev["type"] == "Normal"
    assert ev["message"] == "assigned 198.18.100.7"
    assert ev["involvedObject"]["kind"] == "Service"
    assert ev["involvedObject"]["name"] == "web"
    assert ev["involvedObject"]["uid"] == svc["metadata"]["uid"]
    assert ev["source"] == {"component": "lbd-controller", "host": "h1"}
    assert by_reason["AllocationFailed"]["type"] == "Warning"


def test_a_deleted_event_is_recreated_and_api_errors_are_retried(lab):
    admin = kube_for(lab)
    svc = service(admin, "web")
    rec = EventRecorder(kube_for(lab, CONTROLLER_TOKEN), component="c")
    try:
        rec.event(svc, EventKind.NORMAL, "IPAllocated", "m")
        assert rec.flush(10)
        (ev,) = admin.get(EVENTS.path(namespace="default"))["items"]
        admin.delete(EVENTS.path(namespace="default", name=ev["metadata"]["name"]))
        lab.fail_next(2, 500, path="/events")
        rec.event(svc, EventKind.NORMAL, "IPAllocated", "m")
        assert rec.flush(10)
    finally:
        rec.stop()
    (ev,) = admin.get(EVENTS.path(namespace="default"))["items"]
    assert ev["count"] == 1


def test_cluster_scoped_objects_get_events_in_default(lab):
    admin = kube_for(lab)
    rec = EventRecorder(kube_for(lab, CONTROLLER_TOKEN), component="c")
    pool = {
        "apiVersion": "lbd.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p", "uid": "u1"},
    }
    try:
        rec.event(pool, EventKind.WARNING, "Invalid", "spec.addresses[0]: bad")
        assert rec.flush(10)
    finally:
        rec.stop()
    (ev,) = admin.get(EVENTS.path(namespace="default"))["items"]
    assert ev["involvedObject"]["kind"] == "IPAddressPool"
    assert "namespace" not in ev["involvedObject"]

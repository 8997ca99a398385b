"""ServiceL2Status + NodeAssigned writer against a small in-memory API with real semantics.

The fake keeps resourceVersions, the status subresource (a main write ignores status, a status
write ignores metadata), delete preconditions and 404/409 answers: the handover races the writer
is designed for are played out step by step.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from collections.abc import Mapping
from typing import Any

import pytest

from lbd.k8s.client import ApiError, ApiUnavailableError, JsonDict, PatchType
from lbd.k8s.events import EventKind
from lbd.k8s.speaker_status import (
    NODE_LABEL,
    Ownership,
    Report,
    StatusWriter,
    node_assigned_message,
)
from lbd.runtime.clock import FakeClock

BASE = "/apis/lbd.io/v1beta1/namespaces/ns/servicel2statuses"


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[str, JsonDict] = {}
        self.events = FakeEvents()
        self.rv = itertools.count(1)
        self.down = False
        self.calls: list[str] = []
        self.before_write: Any = None  # hook to inject a concurrent change

    def _check(self, verb: str, path: str) -> None:
        self.calls.append(f"{verb} {path}")
        if self.down:
            raise ApiUnavailableError("connection refused")

    def get(self, path: str, *, query: Mapping[str, Any] | None = None) -> JsonDict:
        self._check("GET", path)
        if path == "/apis/lbd.io/v1beta1/servicel2statuses":
            sel = dict([str((query or {})["labelSelector"]).split("=")])
            items = [
                o
                for o in self.objects.values()
                if all(o["metadata"]["labels"].get(k) == v for k, v in sel.items())
            ]
            return {"items": copy.deepcopy(items)}
        if path not in self.objects:
            raise ApiError(404, "NotFound", path)
        return copy.deepcopy(self.objects[path])

    def create(self, path: str, body: JsonDict) -> JsonDict:
        self._check("POST", path)
        obj = copy.deepcopy(body)
        full = f"{path}/{obj['metadata']['name']}"
        if full in self.objects:
            raise ApiError(409, "AlreadyExists", full)
        obj.pop("status", None)
        obj["metadata"]["uid"] = f"uid-{next(self.rv)}"
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        self.objects[full] = obj
        return copy.deepcopy(obj)

    def replace(self, path: str, body: JsonDict) -> JsonDict:
        self._check("PUT", path)
        if self.before_write:
            hook, self.before_write = self.before_write, None
            hook()
        status = path.endswith("/status")
        key = path.removesuffix("/status")
        cur = self.objects.get(key)
        if cur is None:
            raise ApiError(404, "NotFound", key)
        if body["metadata"].get("resourceVersion") != cur["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", key)
        new = copy.deepcopy(cur)
        if status:
            new["status"] = copy.deepcopy(body["status"])
        else:
            new["metadata"]["labels"] = body["metadata"]["labels"]
            new["metadata"]["ownerReferences"] = body["metadata"]["ownerReferences"]
        new["metadata"]["resourceVersion"] = str(next(self.rv))
        self.objects[key] = new
        return copy.deepcopy(new)

    def patch(self, path: str, body: Any, *, patch: PatchType = PatchType.MERGE) -> JsonDict:
        raise AssertionError("not used")

    def delete(self, path: str, *, body: JsonDict | None = None) -> JsonDict:
        self._check("DELETE", path)
        if self.before_write:
            hook, self.before_write = self.before_write, None
            hook()
        cur = self.objects.get(path)
        if cur is None:
            raise ApiError(404, "NotFound", path)
        pre = (body or {}).get("preconditions") or {}
        if pre.get("resourceVersion") not in (None, cur["metadata"]["resourceVersion"]):
            raise ApiError(409, "Conflict", path)
        del self.objects[path]
        return {}

    def writes(self) -> list[str]:
        return [c for c in self.calls if not c.startswith("GET")]


WEB = Ownership("ns", "web", "svc-uid", ("198.18.100.7",), ("eth0",))
T0 = dt.datetime(2026, 11, 24, 0, 0, 0, tzinfo=dt.UTC)
DRAINED = Report("ns", "web", "svc-uid", ("198.18.100.7",), "NoEligibleNode", "no (n2: Drained)")


class FakeEvents:
    """Stands in for the EventRecorder: what was recorded, about which object."""

    def __init__(self) -> None:
        self.recorded: list[dict[str, Any]] = []

    def event(self, involved: JsonDict, kind: EventKind, reason: str, message: str) -> None:
        self.recorded.append(
            {"involved": involved, "type": kind.value, "reason": reason, "message": message}
        )


def writer(
    api: FakeApi,
    node: str,
    clock: FakeClock | None = None,
    events: FakeEvents | None = None,
    now: list[dt.datetime] | None = None,
) -> StatusWriter:
    """``now``: a one-element list the test moves on (the wall clock of ``since``)."""
    return StatusWriter(
        api,
        node_name=node,
        events=events if events is not None else api.events,
        clock=clock or FakeClock(),
        now=(lambda: now[0]) if now is not None else (lambda: T0),
    )


def drain(w: StatusWriter) -> None:
    """Run the keys that are due synchronously (what the writer thread does)."""
    while (key := w.queue.get(timeout=0)) is not None:
        try:
            w.process(key)
        finally:
            w.queue.done(key)


def test_owner_creates_status_with_labels_owner_reference_and_event() -> None:
    api = FakeApi()
    w = writer(api, "n2")
    w.set_desired("ns/web", WEB)
    drain(w)
    obj = api.objects[f"{BASE}/web"]
    assert obj["metadata"]["labels"] == {
        "lbd.io/node": "n2",
        "lbd.io/service-name": "web",
        "lbd.io/service-namespace": "ns",
    }
    assert obj["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"
    assert obj["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert obj["status"] == {
        "node": "n2",
        "serviceName": "web",
        "serviceNamespace": "ns",
        "announced": True,
        "reason": "Announced",
        "message": "announced from n2 on eth0",
        "interfaces": [{"name": "eth0"}],
        "vips": ["198.18.100.7"],
        "since": "2026-11-24T00:00:00Z",
    }
    [event] = api.events.recorded
    assert event["reason"] == "NodeAssigned" and event["type"] == "Normal"
    assert event["message"] == "announcing 198.18.100.7 from n2 on eth0"
    assert event["involved"]["kind"] == "Service"
    assert event["involved"]["metadata"] == {"namespace": "ns", "name": "web", "uid": "svc-uid"}


def test_steady_state_and_restart_write_nothing() -> None:
    api = FakeApi()
    w = writer(api, "n2")
    w.set_desired("ns/web", WEB)
    drain(w)
    before = len(api.writes())
    w.set_desired("ns/web", WEB)  # same wish again: no work at all
    drain(w)
    restarted = writer(api, "n2")  # a new process that still owns the Service
    restarted.set_desired("ns/web", WEB)
    drain(restarted)
    assert len(api.writes()) == before
    assert len(api.events.recorded) == 1


@pytest.mark.parametrize("first", ["owner", "reporter"])
def test_handover_new_owner_rewrites_old_owner_leaves_it(first: str) -> None:
    """n1 owned the Service (or reported it unannounced); n2 becomes its owner."""
    api = FakeApi()
    old, new = writer(api, "n1"), writer(api, "n2")
    old.set_desired("ns/web", WEB if first == "owner" else DRAINED)
    drain(old)
    new.set_desired("ns/web", WEB)
    drain(new)
    old.set_desired("ns/web", None)
    drain(old)
    obj = api.objects[f"{BASE}/web"]
    assert obj["status"]["node"] == "n2" and obj["status"]["announced"] is True
    assert obj["metadata"]["labels"][NODE_LABEL] == "n2"
    assert [e["message"] for e in api.events.recorded] == [
        *(["announcing 198.18.100.7 from n1 on eth0"] if first == "owner" else []),
        "announcing 198.18.100.7 from n2 on eth0",
    ]


def test_old_owner_delete_loses_race_against_new_owner_write() -> None:
    api = FakeApi()
    old, new = writer(api, "n1"), writer(api, "n2")
    old.set_desired("ns/web", WEB)
    drain(old)

    def new_owner_writes_now() -> None:
        new.set_desired("ns/web", WEB)
        drain(new)

    api.before_write = new_owner_writes_now  # between old's GET and its DELETE
    old.set_desired("ns/web", None)
    # 409 on the delete precondition; re-read at once: n2 owns it now, leave it
    assert old.process("ns/web")
    assert api.objects[f"{BASE}/web"]["status"]["node"] == "n2"
    assert old.queue.num_requeues("ns/web") == 0


def test_new_owner_write_racing_the_old_owner_delete_is_retried_at_once() -> None:
    api = FakeApi()
    old, new = writer(api, "n1"), writer(api, "n2")
    old.set_desired("ns/web", WEB)
    drain(old)

    def old_owner_deletes_now() -> None:
        old.set_desired("ns/web", None)
        drain(old)

    api.before_write = old_owner_deletes_now  # between new's GET and its update: 404
    new.set_desired("ns/web", WEB)
    assert new.process("ns/web")
    assert api.objects[f"{BASE}/web"]["status"]["node"] == "n2"
    assert new.queue.num_requeues("ns/web") == 0


def test_owner_that_loses_the_service_deletes_its_object() -> None:
    api = FakeApi()
    w = writer(api, "n1")
    w.set_desired("ns/web", WEB)
    drain(w)
    w.set_desired("ns/web", None)
    drain(w)
    assert f"{BASE}/web" not in api.objects


def test_vip_change_updates_status_but_keeps_since_and_sends_no_event() -> None:
    api = FakeApi()
    times = iter([T0, T0 + dt.timedelta(minutes=5)])
    w = StatusWriter(
        api, node_name="n1", events=api.events, clock=FakeClock(), now=lambda: next(times)
    )
    w.set_desired("ns/web", WEB)
    drain(w)
    w.set_desired("ns/web", Ownership("ns", "web", "svc-uid", (*WEB.vips, "2001:db8::7"), ()))
    drain(w)
    status = api.objects[f"{BASE}/web"]["status"]
    assert status["vips"] == ["198.18.100.7", "2001:db8::7"]
    assert status["since"] == "2026-11-24T00:00:00Z"
    assert len(api.events.recorded) == 1


def test_api_outage_retries_with_backoff_then_converges() -> None:
    api = FakeApi()
    clock = FakeClock()
    w = writer(api, "n1", clock)
    api.down = True
    w.set_desired("ns/web", WEB)
    drain(w)  # fails: rescheduled in 0.2 s
    assert w.pending() == 1 and w.queue.get(timeout=0) is None
    clock.advance(0.2)
    drain(w)  # fails again: rescheduled in 0.4 s (exponential)
    assert w.queue.num_requeues("ns/web") == 2
    clock.advance(0.3)
    assert w.queue.get(timeout=0) is None
    api.down = False
    clock.advance(0.1)
    drain(w)
    assert api.objects[f"{BASE}/web"]["status"]["node"] == "n1"
    assert w.pending() == 0 and w.queue.num_requeues("ns/web") == 0


def test_cleanup_removes_objects_left_by_a_previous_run() -> None:
    api = FakeApi()
    w = writer(api, "n1")
    w.set_desired("ns/web", WEB)
    w.set_desired("ns/db", Ownership("ns", "db", "u2", ("198.18.100.8",), ()))
    drain(w)
    restarted = writer(api, "n1")
    restarted.set_desired("ns/web", WEB)
    restarted.cleanup_stale({"ns/web": WEB})
    drain(restarted)
    assert sorted(api.objects) == [f"{BASE}/web"]


def test_message_without_interfaces() -> None:
    own = Ownership("ns", "web", "u", ("198.18.100.7", "2001:db8::7"), ())
    assert node_assigned_message(own, "n3") == "announcing 198.18.100.7, 2001:db8::7 from n3"


def test_reporter_writes_not_announced_once_and_a_restart_writes_nothing() -> None:
    api = FakeApi()
    w = writer(api, "n1")
    w.set_desired("ns/web", DRAINED)
    drain(w)
    status = api.objects[f"{BASE}/web"]["status"]
    assert status["announced"] is False
    assert (status["node"], status["reason"], status["message"]) == (
        "n1",
        "NoEligibleNode",
        "no (n2: Drained)",
    )
    assert "interfaces" not in status
    assert api.events.recorded == []  # the controller tells users (condition + Event)
    writes = len(api.writes())
    restarted = writer(api, "n1")
    restarted.set_desired("ns/web", DRAINED)
    drain(restarted)
    assert len(api.writes()) == writes  # level-triggered: found as wanted, nothing written


def test_reporter_becoming_owner_announces_with_event_and_new_since() -> None:
    api = FakeApi()
    now = [T0]
    w = writer(api, "n1", now=now)
    w.set_desired("ns/web", DRAINED)
    drain(w)
    now[0] = T0 + dt.timedelta(seconds=5)
    w.set_desired("ns/web", Ownership("ns", "web", "svc-uid", ("198.18.100.7",), ("eth0",)))
    drain(w)
    status = api.objects[f"{BASE}/web"]["status"]
    assert status["announced"] is True and status["node"] == "n1"
    assert status["since"] == "2026-11-24T00:00:05Z"
    [event] = api.events.recorded
    assert event["reason"] == "NodeAssigned"


def test_report_reason_change_rewrites_status_and_since() -> None:
    api = FakeApi()
    now = [T0]
    w = writer(api, "n1", now=now)
    w.set_desired("ns/web", DRAINED)
    drain(w)
    now[0] = T0 + dt.timedelta(seconds=7)
    w.set_desired(
        "ns/web", Report("ns", "web", "svc-uid", ("198.18.100.7",), "NoReadyEndpoints", "none")
    )
    drain(w)
    status = api.objects[f"{BASE}/web"]["status"]
    assert status["reason"] == "NoReadyEndpoints"
    assert status["since"] == "2026-11-24T00:00:07Z"

"""A rewound API (etcd restored from a snapshot, kube-apiserver restarted) on both servers.

What the real server does, measured here on every run: a watch from a resourceVersion it has not
reached is silent (no event, no error, no bookmark) and a list from one times out with
``504 Timeout`` "Too large resource version" (cause ``ResourceVersionTooLarge``); the stand-in
does the same. So a client that resumes its watch after a restore hears nothing of the changes
the restore undid, and nothing at all until the server's history passes its version again.

On the real control plane the rewind is a real one: etcd's data is copied aside
(``ControlPlane.etcd_snapshot``), changes are made, and etcd is put back with kube-apiserver and
kube-controller-manager stopped and started again, as the Kubernetes documentation restores a
cluster (``ControlPlane.etcd_restore``). On the stand-in, ``LabApiServer.snapshot/restore``.
Between the snapshot and the restore the tests make :data:`GAP` further writes, so that the
server's version stays behind the clients' for the whole test (as after any restore of a
snapshot taken some time ago).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lbd.k8s.client import SERVICES, ApiError, Kube
from lbd.k8s.informer import EventType, Informer
from lbd.k8s.speaker_status import Ownership
from tests.k8s.controller_support import (
    ApiServer,
    Env,
    addresses,
    get_service,
    iter_services,
    kube_for,
    pool,
    service,
    wait_addresses,
    wait_for,
)
from tests.k8s.test_informer import CONFIGMAPS, LABEL, cm
from tests.k8s.test_speaker_k8s import Speaker, announced_service, l2status, node

GAP = 60
"""Writes between snapshot and restore, to an object the clients under test watch: the restored
server's version then stays behind what they have seen for longer than a test runs
(kube-apiserver and kube-controller-manager add writes of their own after a restart). A real
restore has a far larger gap: a snapshot is minutes or hours old, and every client sees some of
the writes made since (Nodes, Services, Leases)."""


def widen_gap(kube: Kube, path: str) -> None:
    """:data:`GAP` writes to the object at ``path`` (an annotation, counted up)."""
    for i in range(GAP):
        kube.patch(path, {"metadata": {"annotations": {"lbd-test/gap": str(i)}}})


def gap_seen(obj: dict[str, Any] | None) -> bool:
    """Whether ``obj`` (from a client's cache) shows the last of :func:`widen_gap`'s writes."""
    annotations = (obj or {}).get("metadata", {}).get("annotations") or {}
    return bool(annotations.get("lbd-test/gap") == str(GAP - 1))


def current_version(kube: Kube) -> int:
    return int(
        kube.get(CONFIGMAPS.path(namespace="default"), query={"limit": 1})["metadata"][
            "resourceVersion"
        ]
    )


# -- what the servers do ------------------------------------------------------------------------


def test_a_watch_from_the_future_is_silent_and_a_list_from_it_times_out(lab: ApiServer) -> None:
    kube = kube_for(lab)
    future = current_version(kube) + 1000
    got: list[Any] = []
    started = time.monotonic()
    query = {"resourceVersion": str(future), "timeoutSeconds": 3, "allowWatchBookmarks": "true"}
    for event in kube.watch(CONFIGMAPS.path(namespace="default"), query=query, read_timeout=20):
        got.append(event)
    assert got == []  # no ERROR event, no bookmark: the stream just ends at its timeout
    assert time.monotonic() - started >= 2.5

    started = time.monotonic()
    with pytest.raises(ApiError) as err:
        kube.get(CONFIGMAPS.path(namespace="default"), query={"resourceVersion": str(future)})
    waited = time.monotonic() - started
    assert err.value.status == 504 and err.value.reason == "Timeout"
    assert "Too large resource version" in err.value.message
    causes = err.value.body["details"]["causes"]
    assert [c["reason"] for c in causes] == ["ResourceVersionTooLarge"]
    assert 2.5 <= waited < 10


def test_a_watch_resumed_after_a_restore_misses_what_the_restore_undid(lab: ApiServer) -> None:
    """Why the informer must look for itself: the plain watch sees none of it."""
    kube = kube_for(lab)
    kube.create(CONFIGMAPS.path(namespace="default"), cm("kept"))
    snapshot = lab.snapshot()
    kube.create(CONFIGMAPS.path(namespace="default"), cm("undone"))
    widen_gap(kube, CONFIGMAPS.path(namespace="default", name="undone"))
    seen = current_version(kube)
    lab.restore(snapshot)
    kube = kube_for(lab)
    restored = current_version(kube)
    assert restored < seen
    assert [o["metadata"]["name"] for o in list_cms(kube)] == ["kept"]
    events: list[Any] = []
    query = {"resourceVersion": str(seen), "timeoutSeconds": 2, "allowWatchBookmarks": "true"}
    for event in kube.watch(CONFIGMAPS.path(namespace="default"), query=query, read_timeout=20):
        events.append(event)
    assert events == []  # "undone" vanished, and the watch says nothing


def list_cms(kube: Kube) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.get(
        CONFIGMAPS.path(namespace="default"), query={"labelSelector": LABEL}
    )["items"]
    return items


# -- the informer ----------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[EventType, str]] = []
        self.rewinds = 0
        self.lock = threading.Lock()

    def __call__(self, t: EventType, old: Any, new: Any) -> None:
        with self.lock:
            self.events.append((t, (new or old)["metadata"]["name"]))

    def rewound(self) -> None:
        with self.lock:
            self.rewinds += 1

    def since(self, mark: int) -> list[tuple[EventType, str]]:
        with self.lock:
            return sorted(self.events[mark:], key=lambda e: (e[1], e[0].value))


@pytest.fixture
def informer(lab: ApiServer) -> Iterator[tuple[Informer, Recorder]]:
    inf = Informer(
        kube_for(lab), CONFIGMAPS, namespace="default", label_selector=LABEL, backoff_max=0.5
    )
    rec = Recorder()
    inf.add_handler(rec)
    inf.on_rewind(rec.rewound)
    inf.start()
    assert inf.wait_for_sync(10)
    try:
        yield inf, rec
    finally:
        inf.stop()


def test_the_informer_relists_after_a_restore_and_reports_what_it_undid(
    lab: ApiServer, informer: tuple[Informer, Recorder]
) -> None:
    inf, rec = informer
    kube = kube_for(lab)
    path = CONFIGMAPS.path(namespace="default")
    kube.create(path, cm("kept", "1"))
    kube.create(path, cm("deleted-after"))
    wait_for(lambda: len(inf.store) == 2, 10, "the informer to see both")
    snapshot = lab.snapshot()
    kube.create(path, cm("created-after"))
    kube.delete(CONFIGMAPS.path(namespace="default", name="deleted-after"))
    kube.patch(CONFIGMAPS.path(namespace="default", name="kept"), {"data": {"v": "2"}})
    wait_for(lambda: inf.store.get("default/created-after") is not None, 10, "created-after")
    wait_for(lambda: inf.store.get("default/deleted-after") is None, 10, "deleted-after gone")
    widen_gap(kube, CONFIGMAPS.path(namespace="default", name="created-after"))
    wait_for(lambda: gap_seen(inf.store.get("default/created-after")), 10, "the last gap write")
    mark = len(rec.events)

    lab.restore(snapshot)

    wait_for(lambda: inf.rewinds == 1, 30, "the informer to notice the rewind")
    wait_for(lambda: rec.rewinds == 1, 5, "the rewind handler")
    assert sorted(inf.store.list_keys()) == ["default/deleted-after", "default/kept"]
    kept = inf.store.get("default/kept")
    assert kept is not None and kept["data"] == {"v": "1"}
    assert rec.since(mark) == [
        (EventType.DELETED, "created-after"),  # vanished: delivered as a deletion
        (EventType.ADDED, "deleted-after"),  # back from the snapshot
        (EventType.MODIFIED, "kept"),  # its older state
    ]
    # and it follows the restored server from there
    kube = kube_for(lab)
    kube.create(path, cm("new"))
    wait_for(lambda: inf.store.get("default/new") is not None, 10, "a write after the restore")
    assert inf.rewinds == 1


# -- the controller -----------------------------------------------------------------------------


def test_the_controller_neither_loses_nor_doubles_an_address_after_a_restore(
    lab: ApiServer,
) -> None:
    """Two addresses. Before the snapshot A holds one; afterwards C takes the other and A is
    deleted; the restore brings A back and removes C. The controller must see both: a new
    Service D then gets C's address (freed by C's vanishing), never A's (held again)."""
    env = Env(lab)
    try:
        pool(env.admin, "rewind", ["198.18.100.10-198.18.100.11"])
        service(env.admin, "a")
        (a_ip,) = wait_addresses(env.admin, "a", timeout=20)
        snapshot = lab.snapshot()
        service(env.admin, "c")
        (c_ip,) = wait_addresses(env.admin, "c", timeout=20)
        env.admin.delete(SERVICES.path(namespace="default", name="a"))
        informer = next(i for i in env.ctl.informers if i.resource is SERVICES)
        wait_for(lambda: informer.store.get("default/a") is None, 10, "a gone")
        widen_gap(env.admin, SERVICES.path(namespace="default", name="c"))
        wait_for(lambda: gap_seen(informer.store.get("default/c")), 10, "the gap")

        lab.restore(snapshot)

        wait_for(lambda: informer.rewinds >= 1, 30, "the controller's informer")
        admin = kube_for(lab)
        assert addresses(get_service(admin, "a")) == [a_ip]
        service(admin, "d")
        assert wait_addresses(admin, "d", timeout=20) == [c_ip]
        time.sleep(1)  # a wrong second decision would land now
        held = sorted(ip for svc in iter_services(admin) for ip in addresses(svc))
        assert held == sorted([a_ip, c_ip])
        assert addresses(get_service(admin, "a")) == [a_ip]
    finally:
        env.close()


# -- the speaker --------------------------------------------------------------------------------


def test_the_speaker_rewrites_its_status_after_a_restore(lab: ApiServer) -> None:
    """n1 announces web at the snapshot, n2 afterwards; the restore brings back n1's status. The
    speakers' caches relist and n2, still the owner, writes its status again."""
    admin = kube_for(lab)
    node(admin, "n1", "198.18.0.11")
    node(admin, "n2", "198.18.0.12")
    svc = announced_service(admin)
    own = Ownership("default", "web", svc["metadata"]["uid"], ("198.18.100.7",), ("eth0",))
    speakers: dict[str, Speaker] = {}
    try:
        for name in ("n1", "n2"):
            speakers[name] = Speaker(lab, name).start()
        speakers["n1"].writer.set_desired("default/web", own)
        wait_for(lambda: node_of(admin) == "n1", 10, "n1's status")
        snapshot = lab.snapshot()
        service(admin, "gone")
        wait_for(
            lambda: speakers["n2"].cache.services.store.get("default/gone") is not None,
            10,
            "the speakers to see the Service created after the snapshot",
        )
        speakers["n1"].writer.set_desired("default/web", None)
        speakers["n2"].writer.set_desired("default/web", own)
        wait_for(lambda: node_of(admin) == "n2", 10, "n2's status after the handover")
        widen_gap(admin, SERVICES.path(namespace="default", name="gone"))
        for s in speakers.values():
            wait_for(
                lambda s=s: gap_seen(s.cache.services.store.get("default/gone")),  # type: ignore[misc]
                10,
                "the gap",
            )

        writes = speakers["n2"].writer.writes

        lab.restore(snapshot)

        # The restore brought back n1's status; n2, still the owner, must write its own again
        # (nothing else would make it look: its wish for web did not change).
        admin = kube_for(lab)
        wait_for(
            lambda: speakers["n2"].writer.writes > writes and node_of(admin) == "n2",
            30,
            "n2 to write its status again",
        )
        for s in speakers.values():
            wait_for(
                lambda s=s: s.cache.services.store.get("default/gone") is None,  # type: ignore[misc]
                10,
                "the vanished Service gone from the speaker's view",
            )
    finally:
        for s in speakers.values():
            s.stop()


def node_of(kube: Kube) -> str | None:
    status = l2status(kube)
    return None if status is None else (status.get("status") or {}).get("node")

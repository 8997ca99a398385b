"""The informer against both API servers: list+watch, handlers, dropped streams, 410, outages.

The objects are ConfigMaps labelled ``lbd-test=informer`` and the informers select that label: a
real cluster has ConfigMaps of its own in ``default`` (``kube-root-ca.crt``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lbd.k8s.client import Kube, Resource
from lbd.k8s.informer import EventType, Informer
from lbd.lab.apiserver import LabApiServer
from lbd.lab.control_plane import RealApiServer
from tests.k8s.conftest import REAL
from tests.k8s.controller_support import ApiServer, kube_for, wait_for

CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap", True)
LABEL = "lbd-test=informer"


@pytest.fixture
def lab(control_plane: str, request: pytest.FixtureRequest) -> Iterator[ApiServer]:
    if control_plane == REAL:
        yield request.getfixturevalue("real_api")
        return
    server = LabApiServer(history_size=20, bookmark_interval=0.2)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def cm(name: str, value: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": {"lbd-test": "informer"}},
        "data": {"v": value},
    }


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[EventType, str]] = []
        self.lock = threading.Lock()

    def __call__(self, t: EventType, old: Any, new: Any) -> None:
        obj = new or old
        with self.lock:
            self.events.append((t, obj["metadata"]["name"]))

    def seen(self, t: EventType, name: str) -> bool:
        with self.lock:
            return (t, name) in self.events


def start(kube: Kube, **kw: Any) -> tuple[Informer, Recorder]:
    kw.setdefault("label_selector", LABEL)
    inf = Informer(kube, CONFIGMAPS, namespace="default", backoff_max=0.5, **kw)
    rec = Recorder()
    inf.add_handler(rec)
    inf.start()
    assert inf.wait_for_sync(5)
    return inf, rec


def test_list_then_watch_with_handlers(lab):
    kube = kube_for(lab)
    kube.create(CONFIGMAPS.path(namespace="default"), cm("before"))
    inf, rec = start(kube)
    try:
        assert rec.seen(EventType.ADDED, "before")
        assert inf.store.get("default/before") is not None
        kube.create(CONFIGMAPS.path(namespace="default"), cm("after"))
        kube.patch(CONFIGMAPS.path(namespace="default", name="before"), {"data": {"v": "2"}})
        kube.delete(CONFIGMAPS.path(namespace="default", name="after"))
        wait_for(lambda: rec.seen(EventType.DELETED, "after"), 5, "the delete")
        assert rec.seen(EventType.ADDED, "after")
        assert rec.seen(EventType.MODIFIED, "before")
        obj = inf.store.get("default/before")
        assert obj is not None and obj["data"] == {"v": "2"}
        assert inf.store.get("default/after") is None
    finally:
        inf.stop()


def test_a_closed_stream_resumes_without_relisting_or_losing_events(lab):
    kube = kube_for(lab)
    inf, _rec = start(kube)
    try:
        for i in range(5):
            lab.close_watches()
            kube.create(CONFIGMAPS.path(namespace="default"), cm(f"c{i}"))
        wait_for(lambda: len(inf.store) == 5, 5, "all five objects")
        assert inf.relists == 0
    finally:
        inf.stop()


def test_gone_relists_and_reports_deletions_missed_meanwhile(lab):
    kube = kube_for(lab)
    kube.create(CONFIGMAPS.path(namespace="default"), cm("doomed"))
    inf, rec = start(kube)
    try:
        lab.outage(60)
        # Meanwhile (behind the informer's back: the API is down for it) far more changes than
        # the server's history keeps, so that the informer's resourceVersion is too old (410).
        if isinstance(lab, RealApiServer):
            lab.direct.delete(CONFIGMAPS.path(namespace="default", name="doomed"))
            for i in range(40):
                lab.apply_object(cm(f"n{i}"))
            # kube-apiserver keeps minutes of history in its watch cache; a restart starts it
            # afresh from etcd, older versions then get 410 Gone (as after a long partition).
            lab.plane.restart()
        else:
            lab.api.delete(lab.registry.by_kind("v1", "ConfigMap"), "default", "doomed")
            for i in range(40):
                lab.apply_object(cm(f"n{i}"))
        assert inf.store.get("default/doomed") is not None, "keeps its last view meanwhile"
        lab.reset_faults()  # the API is back
        wait_for(lambda: len(inf.store) == 40, 10, "the relisted view")
        assert inf.store.get("default/doomed") is None
        assert rec.seen(EventType.DELETED, "doomed")
        assert inf.relists >= 1
    finally:
        inf.stop()


def test_resync_replays_the_store(lab):
    kube = kube_for(lab)
    kube.create(CONFIGMAPS.path(namespace="default"), cm("x"))
    inf, rec = start(kube, resync_period=0.1)
    try:
        wait_for(lambda: rec.seen(EventType.MODIFIED, "x"), 5, "a resync")
    finally:
        inf.stop()


def test_label_selector_and_indexer(lab):
    kube = kube_for(lab)
    a = cm("a")
    a["metadata"]["labels"] = {"team": "red"}
    b = cm("b")
    b["metadata"]["labels"] = {"team": "blue"}
    kube.create(CONFIGMAPS.path(namespace="default"), a)
    kube.create(CONFIGMAPS.path(namespace="default"), b)
    inf = Informer(
        kube,
        CONFIGMAPS,
        label_selector="team in (red,blue)",
        indexers={"team": lambda o: [o["metadata"]["labels"]["team"]]},
    )
    inf.start()
    try:
        assert inf.wait_for_sync(5)
        assert [o["metadata"]["name"] for o in inf.store.by_index("team", "red")] == ["a"]
        assert len(inf.store) == 2
    finally:
        inf.stop()


def test_relist_gives_a_store_with_every_write_made_before_the_call(lab):
    kube = kube_for(lab)
    # A slow backoff: after the outage the watch would come back only seconds later.
    inf = Informer(
        kube,
        CONFIGMAPS,
        namespace="default",
        label_selector=LABEL,
        backoff_initial=2.0,
        backoff_max=5.0,
    )
    rec = Recorder()
    inf.add_handler(rec)
    inf.start()
    try:
        assert inf.wait_for_sync(5)
        lab.outage(60)
        lab.apply_object(cm("behind"))  # behind the informer's back: its API is down
        assert inf.store.get("default/behind") is None
        lab.reset_faults()
        assert inf.relist(timeout=10)
        assert inf.store.get("default/behind") is not None
        assert rec.seen(EventType.ADDED, "behind")
    finally:
        inf.stop()

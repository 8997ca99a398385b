"""Every sign of a rewound API makes the informer relist (lbd/k8s/informer.py, docs/SECURITY.md).

A scripted fake API server: each list answers the next scripted list, each watch streams the next
scripted events (or raises), then blocks until the informer stops. The real-server behaviour
(a silent watch from the future, noticed by the probe) is tested in tests/k8s/test_rewind.py on
both servers; the signs here are the ones kube-apiserver does not produce today but a server
may (an ERROR event or a 504 saying "too large resource version", events from another history),
and the checks that nothing else triggers a relist.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from lbd.k8s.client import ApiError, JsonDict, Resource
from lbd.k8s.informer import EventType, Informer

CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap", True)
TOO_LARGE = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": "Timeout: Too large resource version: 100, current: 50",
    "reason": "Timeout",
    "details": {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    },
    "code": 504,
}


def cm(name: str, rv: str) -> JsonDict:
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": rv}}


def listing(rv: str, *items: JsonDict) -> JsonDict:
    return {"metadata": {"resourceVersion": rv}, "items": list(items)}


class FakeKube:
    """Lists answer ``lists`` in order (the last one repeats); watches play ``watches`` in order,
    each a list of events or an exception, and then block until released."""

    def __init__(self, lists: list[JsonDict], watches: list[list[JsonDict] | Exception]) -> None:
        self.lists = list(lists)
        self.watches = list(watches)
        self.list_queries: list[Mapping[str, Any]] = []
        self.watch_versions: list[str] = []
        self.released = threading.Event()
        self.lock = threading.Lock()

    def get(
        self, path: str, *, query: Mapping[str, Any] | None = None, decode: Any = None
    ) -> JsonDict:
        with self.lock:
            self.list_queries.append(dict(query or {}))
            return self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]

    def watch(
        self,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        read_timeout: float = 0,
        on_open: Callable[[Any], None] | None = None,
    ) -> Iterator[JsonDict]:
        with self.lock:
            self.watch_versions.append(str((query or {}).get("resourceVersion")))
            script = self.watches.pop(0) if self.watches else None
        if isinstance(script, Exception):
            raise script
        if script is not None:
            yield from script
            return  # the stream ends (as at its timeout): the informer watches again
        self.released.wait(5)


def run(kube: FakeKube) -> tuple[Informer, list[tuple[EventType, str]], list[int]]:
    inf = Informer(kube, CONFIGMAPS, namespace="default", backoff_initial=0.01)  # type: ignore[arg-type]
    seen: list[tuple[EventType, str]] = []
    rewound: list[int] = []
    inf.add_handler(lambda t, o, n: seen.append((t, (n or o or {})["metadata"]["name"])))
    inf.on_rewind(lambda: rewound.append(len(seen)))
    inf.start()
    assert inf.wait_for_sync(5)
    return inf, seen, rewound


def wait(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def stop(inf: Informer, kube: FakeKube) -> None:
    kube.released.set()
    inf.stop()


def test_an_error_event_saying_too_large_relists_and_reports_the_vanished() -> None:
    kube = FakeKube(
        [listing("100", cm("a", "90"), cm("kept", "80")), listing("50", cm("kept", "40"))],
        [[{"type": "ERROR", "object": TOO_LARGE}]],
    )
    inf, seen, rewound = run(kube)
    try:
        wait(lambda: bool(rewound), "a relist after the ERROR event")
        assert sorted(inf.store.list_keys()) == ["default/kept"]
        assert seen[2:] == [(EventType.MODIFIED, "kept"), (EventType.DELETED, "a")]
        assert rewound == [4]  # after the relist's events
        assert inf.resource_version == "50"
    finally:
        stop(inf, kube)


def test_a_504_answer_saying_too_large_relists() -> None:
    kube = FakeKube(
        [listing("100", cm("a", "90")), listing("50")],
        [ApiError(504, "Timeout", str(TOO_LARGE["message"]), TOO_LARGE)],
    )
    inf, seen, rewound = run(kube)
    try:
        wait(lambda: rewound == [2], "a relist after the 504")
        assert seen == [(EventType.ADDED, "a"), (EventType.DELETED, "a")]
    finally:
        stop(inf, kube)


def test_an_event_older_than_the_watch_start_relists() -> None:
    kube = FakeKube(
        [listing("100"), listing("45", cm("b", "41"))],
        [[{"type": "ADDED", "object": cm("b", "41")}]],
    )
    inf, seen, rewound = run(kube)
    try:
        wait(lambda: rewound == [1], "a relist after an event from another history")
        assert seen == [(EventType.ADDED, "b")]  # from the relist, not from the odd event
    finally:
        stop(inf, kube)


def test_a_server_behind_us_before_a_rewatch_relists() -> None:
    # the first watch ends (a timeout); the probe before the next finds the server at 60 < 100
    kube = FakeKube(
        [listing("100", cm("a", "99")), listing("60"), listing("61")],
        [[{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "100"}}}]],
    )
    inf, seen, rewound = run(kube)
    try:
        wait(lambda: bool(rewound), "a relist after the probe")
        assert kube.list_queries[1] == {"limit": 1}  # the probe: one object, consistent
        assert seen == [(EventType.ADDED, "a"), (EventType.DELETED, "a")]
        assert rewound == [2]
        wait(lambda: kube.watch_versions[-1] == "61", "a watch from the relist's version")
    finally:
        stop(inf, kube)


def test_a_server_ahead_and_opaque_versions_cause_no_relist() -> None:
    kube = FakeKube(
        [listing("100", cm("a", "99")), listing("150")],
        [
            [{"type": "MODIFIED", "object": cm("a", "120")}],
            [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "opaque-7"}}}],
        ],
    )
    inf, _, _ = run(kube)
    try:
        wait(lambda: len(kube.watch_versions) >= 3, "three watches")
        assert inf.rewinds == 0 and inf.relists == 0
        assert kube.watch_versions[:3] == ["100", "120", "opaque-7"]
    finally:
        stop(inf, kube)

"""The object store: one global resourceVersion counter, bounded watch history, watcher queues.

Like etcd behind a real API server, every write takes the next value of one global counter as
its ``resourceVersion``; list responses carry the counter's current value, and a watch started
from version N replays the retained history after N. History is a bounded deque; once an event
newer than N has been evicted, a watch from N gets ``410 Gone`` (the server's "too old resource
version"), which is what forces clients to relist. A watch from a version the counter has not
reached yet waits silently for events after it, as kube-apiserver's watch cache does (measured on
v1.36.3); :meth:`Store.save` and :meth:`Store.restore` rewind the whole store to a saved state,
as restoring etcd from a snapshot (and restarting kube-apiserver) does.

Stored objects are plain dicts that are never mutated after they are stored, paired with their
JSON serialization. Readers (get, list, watch) reuse the bytes, so the hot paths never copy or
re-encode an object; writers build a new dict (``json.loads`` of the bytes, cheaper than
``copy.deepcopy``) and replace the entry. Each watcher owns a queue that writers append to
while holding the store lock, so a watcher registered under that lock sees every event after
its starting point, exactly once, in order.
"""

from __future__ import annotations

import json
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lbd.lab.apiserver.resources import GroupResource

ObjectKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Stored:
    """An immutable stored object and its JSON bytes."""

    obj: dict[str, Any]
    raw: bytes

    @staticmethod
    def of(obj: dict[str, Any]) -> Stored:
        return Stored(obj, encode(obj))

    def copy(self) -> dict[str, Any]:
        """A private, mutable deep copy."""
        out: dict[str, Any] = json.loads(self.raw)
        return out

    @property
    def rv(self) -> int:
        return int(self.obj["metadata"]["resourceVersion"])


@dataclass(frozen=True, slots=True)
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    gr: GroupResource
    namespace: str
    new: Stored
    old: Stored | None


#: Sentinel put on a watcher queue to end its stream (fault injection, server stop).
CLOSE = object()


@dataclass(eq=False)
class Watcher:
    gr: GroupResource
    namespace: str | None  # None: all namespaces
    queue: queue.SimpleQueue[object] = field(default_factory=queue.SimpleQueue)

    def close(self) -> None:
        self.queue.put(CLOSE)


@dataclass(frozen=True)
class SavedState:
    """What :meth:`Store.save` keeps: the objects (immutable, shared) and the counter."""

    objects: dict[GroupResource, dict[ObjectKey, Stored]]
    resource_version: int


class Store:
    def __init__(self, history_size: int = 20000) -> None:
        # RLock: request handlers hold it across read-modify-write sequences that call
        # back into the store.
        self.lock = threading.RLock()
        self._rv = 1
        self._objects: dict[GroupResource, dict[ObjectKey, Stored]] = {}
        self._history: deque[WatchEvent] = deque(maxlen=max(1, history_size))
        self._compacted = 0  # highest rv evicted from history
        self._watchers: dict[GroupResource, set[Watcher]] = {}
        # for the garbage collector: live uids, and owner uid -> dependents
        self._uids: dict[str, tuple[GroupResource, ObjectKey]] = {}
        self._dependents: dict[str, set[tuple[GroupResource, ObjectKey]]] = {}

    # -- reads -----------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, gr: GroupResource, key: ObjectKey) -> Stored | None:
        table = self._objects.get(gr)
        return table.get(key) if table else None

    def snapshot(self, gr: GroupResource, namespace: str | None) -> tuple[list[Stored], int]:
        """Objects sorted by (namespace, name) like etcd keys, and the collection version."""
        with self.lock:
            table = self._objects.get(gr, {})
            if namespace is None:
                keys = sorted(table)
            else:
                keys = sorted(k for k in table if k[0] == namespace)
            return [table[k] for k in keys], self._rv

    def namespaces_in_use(self, namespace: str) -> list[tuple[GroupResource, ObjectKey]]:
        with self.lock:
            return [
                (gr, key)
                for gr, table in self._objects.items()
                for key in table
                if key[0] == namespace
            ]

    def save(self) -> SavedState:
        """The current objects and resourceVersion, for :meth:`restore` (an etcd snapshot)."""
        with self.lock:
            return SavedState({gr: dict(t) for gr, t in self._objects.items()}, self._rv)

    def restore(self, saved: SavedState) -> None:
        """Rewind to ``saved``, as an etcd restore and a kube-apiserver restart do: the objects
        and the counter go back, no watch event says so, every open watch is cut, and the
        history starts afresh at the restored version (a watch from an older one gets 410)."""
        with self.lock:
            self._objects = {gr: dict(t) for gr, t in saved.objects.items()}
            self._rv = saved.resource_version
            self._history.clear()
            self._compacted = saved.resource_version
            self._uids.clear()
            self._dependents.clear()
            for gr, table in self._objects.items():
                for key, stored in table.items():
                    self._index(gr, key, None, stored)
            self.close_watchers()

    def count(self) -> int:
        with self.lock:
            return sum(len(t) for t in self._objects.values())

    # -- writes (caller fills everything but resourceVersion) ------------------------------

    def next_rv(self) -> int:
        """Reserve the next resourceVersion; call with the lock held, then :meth:`put`."""
        self._rv += 1
        return self._rv

    def put(self, gr: GroupResource, key: ObjectKey, obj: dict[str, Any], event: str) -> Stored:
        """Store ``obj`` (whose metadata.resourceVersion the caller set from :meth:`next_rv`)."""
        with self.lock:
            stored = Stored.of(obj)
            table = self._objects.setdefault(gr, {})
            old = table.get(key)
            table[key] = stored
            self._index(gr, key, old, stored)
            self._emit(WatchEvent(stored.rv, event, gr, key[0], stored, old))
            return stored

    def remove(self, gr: GroupResource, key: ObjectKey, final: dict[str, Any]) -> Stored:
        """Delete the object; ``final`` is its last state with a fresh resourceVersion."""
        with self.lock:
            table = self._objects.get(gr, {})
            old = table.pop(key, None)
            self._index(gr, key, old, None)
            stored = Stored.of(final)
            self._emit(WatchEvent(stored.rv, "DELETED", gr, key[0], stored, old))
            return stored

    def drop_resource(self, gr: GroupResource) -> list[Stored]:
        """Forget every object of a resource (its CRD was deleted), emitting DELETED events."""
        with self.lock:
            table = self._objects.get(gr, {})
            out = []
            for key in list(table):
                obj = table[key].copy()
                obj["metadata"]["resourceVersion"] = str(self.next_rv())
                out.append(self.remove(gr, key, obj))
            self._objects.pop(gr, None)
            return out

    def _index(
        self, gr: GroupResource, key: ObjectKey, old: Stored | None, new: Stored | None
    ) -> None:
        ref = (gr, key)
        if old is not None:
            self._uids.pop(old.obj["metadata"].get("uid", ""), None)
            for owner in _owner_uids(old.obj):
                deps = self._dependents.get(owner)
                if deps is not None:
                    deps.discard(ref)
                    if not deps:
                        del self._dependents[owner]
        if new is not None:
            uid = new.obj["metadata"].get("uid")
            if uid:
                self._uids[uid] = ref
            for owner in _owner_uids(new.obj):
                self._dependents.setdefault(owner, set()).add(ref)

    def is_live(self, uid: str) -> bool:
        return uid in self._uids

    def dependents(self, uid: str) -> list[tuple[GroupResource, ObjectKey]]:
        """Objects that name ``uid`` among their ownerReferences."""
        with self.lock:
            return sorted(self._dependents.get(uid, ()))

    def _emit(self, ev: WatchEvent) -> None:
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        self._history.append(ev)
        for w in self._watchers.get(ev.gr, ()):
            if w.namespace is None or w.namespace == ev.namespace:
                w.queue.put(ev)

    # -- watch -----------------------------------------------------------------------------

    def watch(
        self, gr: GroupResource, namespace: str | None, since: int | None
    ) -> tuple[Watcher, list[WatchEvent] | list[Stored], int]:
        """Register a watcher.

        ``since=None``: returns the current objects (to send as synthetic ADDED events).
        ``since=N``: returns the retained events after N; raises :class:`TooOldError` when history
        after N has been evicted. The third value is the store's version at registration.
        """
        with self.lock:
            w = Watcher(gr, namespace)
            if since is None:
                items, _ = self.snapshot(gr, namespace)
                replay: list[WatchEvent] | list[Stored] = items
            else:
                if since < self._compacted:
                    raise TooOldError(since, self._compacted + 1)
                replay = [
                    ev
                    for ev in self._history
                    if ev.rv > since
                    and ev.gr == gr
                    and (namespace is None or ev.namespace == namespace)
                ]
            self._watchers.setdefault(gr, set()).add(w)
            return w, replay, self._rv

    def unwatch(self, w: Watcher) -> None:
        with self.lock:
            self._watchers.get(w.gr, set()).discard(w)

    def close_watchers(self) -> int:
        with self.lock:
            n = 0
            for ws in self._watchers.values():
                for w in ws:
                    w.close()
                    n += 1
            return n

    def watcher_count(self) -> int:
        with self.lock:
            return sum(len(ws) for ws in self._watchers.values())


def _owner_uids(obj: dict[str, Any]) -> list[str]:
    refs = obj["metadata"].get("ownerReferences") or []
    return [r["uid"] for r in refs if isinstance(r, dict) and isinstance(r.get("uid"), str)]


class TooOldError(Exception):
    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest

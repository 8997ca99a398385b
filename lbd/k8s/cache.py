"""The controller's views of one resource kind: newest first, never older than what it saw.

API::

    cache = ViewCache(SERVICES, observe_service, on_change=fn(old_view, new_view), index=fn)
    informer.add_handler(cache.on_event)  # watch events feed it
    cache.put(obj)                        # an object we wrote (its watch echo is then ignored)
    cache.refresh(kube)                   # a consistent LIST: after a takeover
    cache.reset(kube)                     # the LIST is the truth: after a rewound API
    cache.get(key); cache.values(); cache.keys(); cache.by_index(value)

Each object is read once, into a frozen view (:func:`lbd.k8s.service.observe_service` ...), when
it arrives; deciders read views, never the raw objects.

Why a cache of its own and not just the informer's store: a standby replica's informer can be
seconds behind (its watch was cut, or backing off after an outage), and a new leader that
decides from such a view undoes the previous leader's last decisions (issue 10: "restored 55
Services (32 refused)", then Services losing their addresses 0.5 s later). So at takeover the
controller lists everything afresh (a consistent read after the old leader stopped writing), and
from then on a view is replaced only by a newer resourceVersion of the same object
(:func:`lbd.k8s.meta.newer`): the informer's late events, and the echoes of our own writes, are
ignored. A deleted object's uid is remembered (bounded), so a late event cannot bring it back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from lbd.k8s.client import JsonDict, Kube, Resource
from lbd.k8s.informer import EventType
from lbd.k8s.listing import list_pages
from lbd.k8s.meta import ObjectRef, meta_field, newer, object_key

GONE_MEMORY = 10_000
"""Deleted objects remembered (uid per key) so that late events cannot resurrect them."""


class HasRef(Protocol):
    @property
    def ref(self) -> ObjectRef: ...


V = TypeVar("V", bound=HasRef)
Change = Callable[[V | None, V | None], None]


class ViewCache(Generic[V]):
    """Frozen views of every object of one kind, keyed ``ns/name`` (or ``name``)."""

    def __init__(
        self,
        resource: Resource,
        observe: Callable[[Mapping[str, Any]], V],
        *,
        on_change: Change[V] | None = None,
        index: Callable[[V], str] | None = None,
    ) -> None:
        self.resource = resource
        self._observe = observe
        self._on_change = on_change
        self._index_of = index
        self._lock = threading.Lock()
        self._views: dict[str, V] = {}
        self._index: dict[str, set[str]] = {}
        self._gone: OrderedDict[str, str] = OrderedDict()

    # -- reading --------------------------------------------------------------------------
    def get(self, key: str) -> V | None:
        with self._lock:
            return self._views.get(key)

    def values(self) -> list[V]:
        with self._lock:
            return list(self._views.values())

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._views)

    def by_index(self, value: str) -> list[V]:
        with self._lock:
            return [self._views[k] for k in self._index.get(value, ())]

    def __len__(self) -> int:
        with self._lock:
            return len(self._views)

    # -- feeding --------------------------------------------------------------------------
    def on_event(self, t: EventType, old: JsonDict | None, new: JsonDict | None) -> None:
        """An informer handler."""
        if t is EventType.DELETED or new is None:
            if old is not None:
                self._notify(self._delete(self._observe(old)))
            return
        if old is new or not self._maybe_newer(new):
            return  # a resync, or an echo of what we hold (our own write): nothing to read
        self._notify(self._upsert(self._observe(new)))

    def _maybe_newer(self, obj: JsonDict) -> bool:
        """Cheap pre-check (no reading into a view): is ``obj`` newer than what we hold?"""
        with self._lock:
            cur = self._views.get(object_key(obj))
        return cur is None or newer(meta_field(obj, "resourceVersion"), cur.ref.resource_version)

    def put(self, obj: JsonDict, *, notify: bool = True) -> V:
        """An object the API returned to us (a write): kept if it is the newest we know.
        ``notify=False``: the change is our own decision, nobody needs to hear of it."""
        view = self._observe(obj)
        change = self._upsert(view)
        if notify:
            self._notify(change)
        return view

    def refresh(self, kube: Kube) -> None:
        """List everything (paged, a consistent read) and make the views at least that new."""
        items, list_rv = list_pages(kube, self.resource)
        changes: list[tuple[V | None, V | None]] = []
        seen: set[str] = set()
        for obj in items:
            seen.add(object_key(obj))
            if not self._maybe_newer(obj):
                continue  # what we hold is as new: the common case
            changes.append(self._upsert(self._observe(obj)))
        for key in self.keys():
            if key in seen:
                continue
            held = self.get(key)
            # Absent from the list: deleted before it, unless we hold a newer version.
            if held is not None and not newer(held.ref.resource_version, list_rv or "0"):
                changes.append(self._delete(held))
        for change in changes:
            self._notify(change)

    def reset(self, kube: Kube) -> None:
        """After a rewound API (an etcd restore, ``Informer.on_rewind``): the list is the
        truth, whatever its resourceVersions. Objects come back with older versions than the
        views hold (and with uids we saw deleted), so :meth:`refresh`'s newest-first rule would
        keep the undone state; here every view is replaced and every difference notified."""
        items, _list_rv = list_pages(kube, self.resource)
        fresh = {object_key(obj): self._observe(obj) for obj in items}
        with self._lock:
            held = self._views
            self._views = {}
            self._index.clear()
            self._gone.clear()
            for key, view in fresh.items():
                self._views[key] = view
                self._reindex(key, None, view)
        changes: list[tuple[V | None, V | None]] = [
            (held.get(k), v) for k, v in fresh.items() if held.get(k) != v
        ]
        changes += [(v, None) for k, v in held.items() if k not in fresh]
        for change in changes:
            self._notify(change)

    # -- internals ------------------------------------------------------------------------
    def _upsert(self, view: V) -> tuple[V | None, V | None]:
        ref = view.ref
        key = ref.key
        with self._lock:
            cur = self._views.get(key)
            if cur is None:
                if ref.uid and self._gone.get(key) == ref.uid:
                    return (None, None)  # a late event of a deleted object
            elif not newer(ref.resource_version, cur.ref.resource_version):
                return (None, None)  # not newer than what we hold (any incarnation)
            self._gone.pop(key, None)
            self._views[key] = view
            self._reindex(key, cur, view)
            return (cur, view)

    def _delete(self, view: V) -> tuple[V | None, V | None]:
        ref = view.ref
        key = ref.key
        with self._lock:
            cur = self._views.get(key)
            if ref.uid:
                self._gone[key] = ref.uid
                self._gone.move_to_end(key)
                while len(self._gone) > GONE_MEMORY:
                    self._gone.popitem(last=False)
            if cur is None or (ref.uid and cur.ref.uid != ref.uid):
                return (None, None)  # unknown, or an older incarnation's deletion
            del self._views[key]
            self._reindex(key, cur, None)
            return (cur, None)

    def _reindex(self, key: str, old: V | None, new: V | None) -> None:
        if self._index_of is None:
            return
        if old is not None:
            bucket = self._index.get(self._index_of(old))
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del self._index[self._index_of(old)]
        if new is not None:
            self._index.setdefault(self._index_of(new), set()).add(key)

    def _notify(self, change: tuple[V | None, V | None]) -> None:
        old, new = change
        if (old is not None or new is not None) and self._on_change is not None:
            self._on_change(old, new)

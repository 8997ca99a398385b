"""A thread-safe store of raw API objects, keyed ``namespace/name`` (or ``name``).

API::

    store = Store(indexers={"pool": lambda obj: [obj["metadata"]["annotations"]["p"]]})
    store.get("ns/web") -> dict | None
    store.list() -> list[dict]            store.list_keys() -> list[str]        len(store)
    store.by_index("pool", "default") -> list[dict]

Objects are the decoded JSON dicts the API returned. They are shared, not copied: callers must
treat them as read-only (the informer replaces an object, it never mutates one), which is what
keeps ten thousand Services cheap to hold and to hand out.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable
from typing import Any

from lbd.k8s.client import JsonDict, object_key

Indexer = Callable[[JsonDict], Iterable[str]]


class Store:
    """Objects by key, with optional secondary indexes."""

    def __init__(self, indexers: dict[str, Indexer] | None = None) -> None:
        self._lock = threading.RLock()
        self._items: dict[str, JsonDict] = {}
        self._indexers = dict(indexers or {})
        # index name -> value -> keys
        self._indices: dict[str, dict[str, set[str]]] = {n: {} for n in self._indexers}

    def get(self, key: str) -> JsonDict | None:
        with self._lock:
            return self._items.get(key)

    def list(self) -> builtins.list[JsonDict]:
        with self._lock:
            return list(self._items.values())

    def list_keys(self) -> builtins.list[str]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def by_index(self, index: str, value: str) -> builtins.list[JsonDict]:
        with self._lock:
            keys = self._indices[index].get(value, ())
            return [self._items[k] for k in keys]

    def put(self, obj: JsonDict) -> tuple[str, JsonDict | None]:
        """Insert or replace ``obj``; returns its key and the object it replaced."""
        key = object_key(obj)
        with self._lock:
            old = self._items.get(key)
            if old is not None:
                self._unindex(key, old)
            self._items[key] = obj
            self._index(key, obj)
            return key, old

    def remove(self, key: str) -> JsonDict | None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._unindex(key, old)
            return old

    def _index(self, key: str, obj: JsonDict) -> None:
        for name, fn in self._indexers.items():
            for value in _safe_values(fn, obj):
                self._indices[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: JsonDict) -> None:
        for name, fn in self._indexers.items():
            idx = self._indices[name]
            for value in _safe_values(fn, obj):
                keys = idx.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del idx[value]


def _safe_values(fn: Indexer, obj: JsonDict) -> list[str]:
    # An indexer that trips over a malformed object must not take the informer down.
    try:
        return list(fn(obj))
    except (KeyError, TypeError, AttributeError, ValueError):
        return []


def meta(obj: JsonDict) -> dict[str, Any]:
    """``obj["metadata"]`` or an empty dict."""
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}

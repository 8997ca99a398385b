"""A generic informer: list, then watch, into a :class:`~lbd.k8s.store.Store`.

API::

    inf = Informer(kube, SERVICES, namespace=None, label_selector=None, field_selector=None,
                   resync_period=None, watch_timeout=300, name="services")
    inf.add_handler(lambda type_, old, new: ...)    # type_ is EventType.ADDED/MODIFIED/DELETED
    inf.on_add(fn(new)) / inf.on_update(fn(old, new)) / inf.on_delete(fn(old))
    inf.start()                      # one daemon thread
    inf.wait_for_sync(timeout=30)    # True once the first list is in the store
    inf.has_synced(); inf.store.get("ns/name"); inf.store.list()
    inf.relist(timeout=30)           # list afresh now; True once the store holds that list
    inf.on_rewind(fn)                # fn() after the relist that followed a rewound API
    inf.stop()

How it follows the API (client-go's reflector): list (one consistent list, unpaged: the watch
cache serves it, see :data:`lbd.k8s.listing.LIST_PAGE`), replace the store and emit the
differences, then watch from the list's ``resourceVersion`` with bookmarks on. Every event and
bookmark moves the remembered ``resourceVersion`` forward, so a broken stream (server restart,
timeout, network cut) resumes with a new watch from there, after a backoff computed by tenacity
(exponential with jitter, capped) so that an API outage does not turn into a reconnect storm.
``410 Gone`` (as an HTTP answer or as an ``ERROR`` event) means our version fell out of the
server's history: relist.

A rewound API (etcd restored from a snapshot, a stand-in restarted empty) is the opposite case:
our version lies in the server's *future*, and a real kube-apiserver does not say so. Measured on
v1.36.3 (``tests/k8s/test_rewind.py``): a watch from a resourceVersion the server has not reached
yet opens normally and stays silent (no error, no bookmark) until the server's history passes
that version, then delivers only the events after it; everything in between, and every change
the restore itself made, is never seen. (A *list* from such a version waits 3 s and answers
``504 Timeout`` "Too large resource version", cause ``ResourceVersionTooLarge``.) So the informer
looks for the signs itself, and any of them makes it relist:

- before it resumes a watch from a remembered version (not right after a list) it asks for the
  server's current version with a consistent list of one object, and finds it *lower* than its
  own: the server's history went backwards (one small request per rewatch, minutes apart);
- a list, or a watch event or bookmark, carries a resourceVersion lower than one it already had;
- the server answers "resourceVersion too large" (504 with cause ``ResourceVersionTooLarge``, as
  an HTTP answer or an ``ERROR`` event).

The relist after a rewind emits every difference (objects that vanished as DELETED, so a
controller never acts for a Service that no longer exists) and MODIFIED for every object still
there, whatever its resourceVersion says (after a restore a version may name another state), and
then calls the :meth:`Informer.on_rewind` handlers, so that a component can redo what it derived
from the lost history. A restore that has already been overtaken by newer writes (the server's
version has passed ours again) cannot be told from history by versions alone: restore etcd with
``etcdutl snapshot restore --bump-revision N --mark-compacted`` (docs/SECURITY.md), and every
watch gets ``410 Gone``.

While the API is unreachable the store keeps its last view: nothing is deleted because a list
failed. After an outage that view may be stale for a while (the watch resumes from where it
stopped and catches up event by event); :meth:`Informer.relist` gives a caller that must decide
from the current state (a controller starting a leadership session) a store that holds at least
everything written before the call.

Handlers run on the informer's thread, in event order; they must be quick (enqueue a key). A
handler that raises is logged and does not stop the informer.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from lbd.k8s.client import ApiError, JsonDict, Kube, Resource, object_key
from lbd.k8s.listing import list_pages
from lbd.k8s.store import Indexer, Store

log = logging.getLogger(__name__)


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


Handler = Callable[[EventType, JsonDict | None, JsonDict | None], None]


class Informer:
    """Keeps a :class:`Store` in step with one resource type and tells handlers what changed."""

    def __init__(
        self,
        kube: Kube,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: dict[str, Indexer] | None = None,
        resync_period: float | None = None,
        watch_timeout: int = 300,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        name: str | None = None,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.store = Store(indexers)
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        self.name = name or resource.plural
        self._wait = wait_exponential_jitter(
            multiplier=backoff_initial, max=backoff_max, jitter=0.2
        )
        self._handlers: list[Handler] = []
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resource_version: str | None = None
        self._lists = 0  # lists completed (the first included)
        self._relist_wanted = 0  # relist() asks for a list after this many
        self._listed = threading.Condition()
        self._wake = threading.Event()  # ends a backoff wait early (stop, relist)
        self._response: Any = None
        self._resp_lock = threading.Lock()
        self.relists = 0
        """Number of lists after the first (after 410 Gone or a failed list); for tests."""
        self.rewinds = 0
        """Times the server's history was found to have gone backwards (each led to a relist)."""
        self._rewind_handlers: list[Callable[[], None]] = []
        self._rewound: str | None = None  # why the next list is a relist after a rewind
        self._fresh = False  # the remembered version comes straight from a list

    # -- handlers -------------------------------------------------------------------------
    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def on_add(self, fn: Callable[[JsonDict], None]) -> None:
        self.add_handler(lambda t, _o, n: fn(n) if t is EventType.ADDED and n else None)

    def on_update(self, fn: Callable[[JsonDict, JsonDict], None]) -> None:
        self.add_handler(lambda t, o, n: fn(o, n) if t is EventType.MODIFIED and o and n else None)

    def on_delete(self, fn: Callable[[JsonDict], None]) -> None:
        self.add_handler(lambda t, o, _n: fn(o) if t is EventType.DELETED and o else None)

    def on_rewind(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` (on the informer's thread) after each relist that followed a rewind."""
        self._rewind_handlers.append(fn)

    def _emit(self, type_: EventType, old: JsonDict | None, new: JsonDict | None) -> None:
        for handler in self._handlers:
            try:
                handler(type_, old, new)
            except Exception:
                log.exception("informer %s: handler failed", self.name)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()
        if self.resync_period:
            threading.Thread(
                target=self._resync_loop, name=f"resync-{self.name}", daemon=True
            ).start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._close_stream()
        if self._thread is not None:
            self._thread.join(timeout)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def relist(self, timeout: float | None = None) -> bool:
        """List afresh now (in the informer's thread, handlers called for the differences) and
        wait until done: the store then holds everything the server had when this was called.
        False when that did not happen within ``timeout`` (the API is unreachable).

        Why: after a watch is cut the informer resumes from its last resourceVersion and catches
        up event by event, so for a while its store misses writes the server has already made.
        A controller that restores its allocations from a store that stale, right after an API
        outage in which it lost and regained the lease, hands out addresses that are already
        on Services (seen with the chaos test on a real kube-apiserver).
        """
        with self._listed:
            target = self._lists + 1
            self._relist_wanted = target
        self._wake.set()
        self._close_stream()
        with self._listed:
            return self._listed.wait_for(lambda: self._lists >= target, timeout)

    @property
    def resource_version(self) -> str | None:
        return self._resource_version

    def _close_stream(self) -> None:
        with self._resp_lock:
            resp = self._response
        if resp is not None:
            try:
                shutdown = getattr(resp, "shutdown", None)
                if shutdown is not None:
                    shutdown()
                else:
                    resp.close()
            except Exception:
                log.debug("informer %s: closing the stream failed", self.name, exc_info=True)

    def _set_response(self, resp: Any) -> None:
        with self._resp_lock:
            self._response = resp
        if self._stop.is_set() or self._relist_wanted > self._lists:
            self._close_stream()

    # -- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        need_list = True
        while not self._stop.is_set():
            try:
                self._wake.clear()
                if need_list or self._relist_wanted > self._lists:
                    self._list()
                    need_list = False
                elif not self._fresh and self._history_went_back():
                    need_list = True
                    continue
                self._watch()
                attempt = 0  # the stream ended normally (timeout): rewatch at once
            except _RewoundError:
                need_list = True
            except ApiError as exc:
                if self._stop.is_set():
                    break  # stop() cut the stream: not an error
                if self._relist_wanted > self._lists and exc.status == 0:
                    continue  # relist() cut the stream: list now
                if exc.status == 410:
                    log.info("informer %s: watch expired (410), relisting", self.name)
                    need_list = True
                    continue
                if _too_large(exc):
                    self._note_rewind(f"the server answered: {exc.message}")
                    need_list = True
                    continue
                attempt += 1
                # The server may say how long to wait (429 from priority and fairness, or while
                # a resource's watch cache fills): never come back sooner than that.
                delay = max(self._backoff(attempt), exc.retry_after or 0.0)
                log.warning(
                    "informer %s: %s; retrying in %.2fs",
                    self.name,
                    exc,
                    delay,
                    extra={"error": str(exc), "duration": round(delay, 3)},
                )
                self._wake.wait(delay)
            except Exception:  # a bug or garbage from the server: keep going
                attempt += 1
                log.exception("informer %s: unexpected error", self.name)
                self._wake.wait(self._backoff(attempt))
            finally:
                with self._resp_lock:
                    self._response = None

    def _backoff(self, attempt: int) -> float:
        # tenacity's wait strategies only read attempt_number from the call state.
        state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        return float(self._wait(state))

    def _query(self) -> dict[str, Any]:
        q: dict[str, Any] = {}
        if self.label_selector:
            q["labelSelector"] = self.label_selector
        if self.field_selector:
            q["fieldSelector"] = self.field_selector
        return q

    def _history_went_back(self) -> bool:
        """Ask for the server's current resourceVersion (a consistent list of one object); True
        when it is lower than ours, i.e. the history we resume from is no longer the server's."""
        page = self.kube.get(self.resource.path(namespace=self.namespace), query={"limit": 1})
        current = str((page.get("metadata") or {}).get("resourceVersion") or "")
        if _older(current, self._resource_version):
            self._note_rewind(
                f"the server is at resourceVersion {current}, we had seen {self._resource_version}"
            )
            return True
        return False

    def _note_rewind(self, why: str) -> None:
        if self._rewound is None:
            self._rewound = why

    def _list(self) -> None:
        items, rv = list_pages(self.kube, self.resource, self.namespace, self._query())
        if self._synced.is_set():
            self.relists += 1
        if _older(rv, self._resource_version):
            self._note_rewind(f"a list at {rv}, we had seen {self._resource_version}")
        why, self._rewound = self._rewound, None
        if why is not None:
            log.warning(
                "informer %s: the API server's history went backwards (%s): relisted %d objects",
                self.name,
                why,
                len(items),
                extra={"reason": why, "count": len(items)},
            )
        self._replace(items, everything=why is not None)
        self._resource_version = rv
        self._fresh = True
        self._synced.set()
        with self._listed:
            self._lists += 1
            self._listed.notify_all()
        if why is not None:
            self.rewinds += 1  # counted once the store holds the fresh list
            for fn in self._rewind_handlers:
                try:
                    fn()
                except Exception:
                    log.exception("informer %s: rewind handler failed", self.name)

    def _replace(self, items: list[JsonDict], *, everything: bool = False) -> None:
        """Make the store equal to ``items`` and emit what changed (DELETED for the missing);
        ``everything``: MODIFIED for every object kept, even with an unchanged resourceVersion."""
        kind = self.resource.kind
        api_version = self.resource.api_version
        seen: set[str] = set()
        for obj in items:
            # List items carry no kind/apiVersion: add them, as watched objects have them.
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", api_version)
            key, old = self.store.put(obj)
            seen.add(key)
            if old is None:
                self._emit(EventType.ADDED, None, obj)
            elif everything or _rv(old) != _rv(obj):
                self._emit(EventType.MODIFIED, old, obj)
        for key in list(self.store.list_keys()):  # a snapshot: we remove while iterating
            if key not in seen:
                gone = self.store.remove(key)
                if gone is not None:
                    self._emit(EventType.DELETED, gone, None)

    def _watch(self) -> None:
        self._fresh = False
        q = self._query()
        q["allowWatchBookmarks"] = "true"
        q["resourceVersion"] = start = self._resource_version or ""
        # Spread reconnects of many clients, as client-go does (timeout in [T, 2T)).
        timeout = int(self.watch_timeout * (1 + random.random()))
        q["timeoutSeconds"] = timeout
        stream = self.kube.watch(
            self.resource.path(namespace=self.namespace),
            query=q,
            read_timeout=timeout + 30,
            on_open=self._set_response,
        )
        for event in stream:
            if self._stop.is_set() or self._relist_wanted > self._lists:
                return
            self._handle(event, start)

    def _handle(self, event: JsonDict, start: str = "") -> None:
        type_ = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        if type_ == "ERROR":
            code = int(obj.get("code") or 500)
            raise ApiError(code, str(obj.get("reason") or ""), str(obj.get("message") or ""), obj)
        rv = _rv(obj)
        if _older(rv, start):
            # Each event of a watch is newer than the version it started from; an older one
            # comes from another history.
            self._note_rewind(f"a {type_} event at resourceVersion {rv} in a watch from {start}")
            raise _RewoundError
        if type_ == "BOOKMARK":
            if rv:
                self._resource_version = rv
            return
        if type_ in ("ADDED", "MODIFIED"):
            _key, old = self.store.put(obj)
            self._emit(EventType.ADDED if old is None else EventType.MODIFIED, old, obj)
        elif type_ == "DELETED":
            self.store.remove(object_key(obj))
            # The event carries the object's final state (and the deletion's resourceVersion).
            self._emit(EventType.DELETED, obj, None)
        if rv:
            self._resource_version = rv

    def _resync_loop(self) -> None:
        period = self.resync_period or 0.0
        while not self._stop.wait(period):
            if self._synced.is_set():
                self.resync()

    def resync(self) -> None:
        """Emit MODIFIED (old is new) for every stored object: level-triggered catch-up."""
        for obj in self.store.list():
            self._emit(EventType.MODIFIED, obj, obj)


class _RewoundError(Exception):
    """A watch event from another history: end the stream and relist."""


def _rv(obj: JsonDict) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _older(rv: str, than: str | None) -> bool:
    """True when both are numbers and ``rv`` is the lower one.

    resourceVersions are opaque by contract, but both servers lbd runs against (etcd's revision
    behind kube-apiserver, the stand-in's counter) issue one increasing integer for all writes;
    anything that does not parse compares as "not older", so an exotic server never triggers
    a relist loop.
    """
    if not rv or not than or not rv.isdigit() or not than.isdigit():
        return False
    return int(rv) < int(than)


def _too_large(exc: ApiError) -> bool:
    """kube-apiserver's "Too large resource version" (504 Timeout, cause ResourceVersionTooLarge,
    from ``storage.NewTooLargeResourceVersionError``): the server has not reached our version."""
    details = exc.body.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    reasons = [c.get("reason") for c in causes or [] if isinstance(c, dict)]
    if "ResourceVersionTooLarge" in reasons:
        return True
    return exc.status == 504 and "too large resource version" in exc.message.lower()

"""An Event recorder for core/v1 Events, with client-go style aggregation.

API::

    rec = EventRecorder(kube, component="lbd-controller", host="pod-a")
    rec.event(service_dict, EventKind.NORMAL, "IPAllocated", "assigned 198.18.100.7 from pool x")
    rec.flush(timeout=5)   # tests: wait until everything recorded so far is written
    rec.stop()

``involved`` is the object the Event is about: an :class:`~lbd.k8s.meta.ObjectRef`, or an object
dict (only kind, apiVersion, name, namespace, uid and resourceVersion are read). Cluster-scoped
objects get their Events in namespace ``default``, as kubectl expects.

Design:

- Recording never blocks the caller on the API: events go through a bounded queue to one writer
  thread (client-go's broadcaster). When the queue is full the event is dropped and counted:
  losing an Event is better than stalling reconciles during an API outage.
- Repeats of the same (object, type, reason, message) bump ``count`` and ``lastTimestamp`` of the
  existing Event with a merge patch instead of creating a new one (client-go's EventCorrelator
  cache, an LRU of ``CACHE_SIZE`` entries). If the patch finds the Event gone, it is recreated.
- Writes are retried a few times with tenacity on 429/5xx/no answer; then given up (and logged).
- Event writes are paced by a token bucket (``qps``/``burst``, by default kubelet's
  ``--event-qps=50 --event-burst=100``): after a pool change that reassigns thousands of
  Services, the status writes users wait for are not slowed down by thousands of Event creates
  competing for the API server; the Events follow as fast as the bucket allows.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from lbd.k8s.client import EVENTS, ApiError, JsonDict, Kube
from lbd.k8s.meta import ObjectRef, rfc3339
from lbd.k8s.patch import transient
from lbd.runtime.workqueue import TokenBucket

log = logging.getLogger(__name__)

CACHE_SIZE = 4096
QUEUE_SIZE = 10000


class EventKind(enum.Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class _Pending:
    ref: ObjectRef
    kind: EventKind
    reason: str
    message: str
    stamp: str


class EventRecorder:
    """Writes Events asynchronously, aggregating repeats into ``count``."""

    def __init__(
        self,
        kube: Kube,
        *,
        component: str,
        host: str = "",
        attempts: int = 4,
        qps: float = 50.0,
        burst: int = 100,
    ) -> None:
        self.kube = kube
        self.component = component
        self.host = host
        self.dropped = 0
        self._attempts = attempts
        self._bucket = TokenBucket(qps, burst)
        self._queue: queue.Queue[_Pending | _Marker | None] = queue.Queue(QUEUE_SIZE)
        # (ref identity, type, reason, message) -> (event namespace, event name, count)
        self._cache: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    def event(
        self, involved: JsonDict | ObjectRef, kind: EventKind, reason: str, message: str
    ) -> None:
        """Record an Event about ``involved`` (returns at once)."""
        ref = involved if isinstance(involved, ObjectRef) else ObjectRef.of(involved)
        try:
            self._queue.put_nowait(_Pending(ref, kind, reason, message, rfc3339()))
        except queue.Full:
            self.dropped += 1
            log.warning("events: queue full, dropped %s", reason, extra={"reason": reason})

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every Event recorded before this call has been written (or given up)."""
        done = threading.Event()
        deadline = time.monotonic() + timeout
        # A marker: join() would wait for events recorded after us too.
        marker = _Marker(done)
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(max(0.0, deadline - time.monotonic()))

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    # -- writer ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, _Marker):
                item.done.set()
                continue
            delay = self._bucket.reserve()
            if delay > 0:
                time.sleep(delay)
            try:
                self._write(item)
            except ApiError as exc:
                log.warning(
                    "events: could not write %s: %s",
                    item.reason,
                    exc,
                    extra={"reason": item.reason, "error": str(exc)},
                )
            except Exception:
                log.exception("events: unexpected error")

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(transient),
            wait=wait_exponential_jitter(multiplier=0.1, max=2.0),
            stop=stop_after_attempt(self._attempts),
            reraise=True,
        )

    def _write(self, ev: _Pending) -> None:
        ref = ev.ref
        ident = (ref.kind, ref.namespace, ref.name, ref.uid, ev.kind.value, ev.reason, ev.message)
        namespace = ref.namespace or "default"
        cached = self._cache.get(ident)
        if cached is not None:
            ns, name, count = cached
            patch = {"count": count + 1, "lastTimestamp": ev.stamp}
            try:
                for attempt in self._retrying():
                    with attempt:
                        self.kube.patch(EVENTS.path(namespace=ns, name=name), patch)
                self._remember(ident, (ns, name, count + 1))
                return
            except ApiError as exc:
                if exc.status != 404:
                    raise
                # The Event expired or was deleted: start a new one.
        name = f"{ref.name}.{uuid.uuid4().hex[:16]}"
        body: JsonDict = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref.as_dict(),
            "reason": ev.reason,
            "message": ev.message[:1024],
            "type": ev.kind.value,
            "count": 1,
            "firstTimestamp": ev.stamp,
            "lastTimestamp": ev.stamp,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component,
            "reportingInstance": self.host or self.component,
        }
        for attempt in self._retrying():
            with attempt:
                self.kube.create(EVENTS.path(namespace=namespace), body)
        self._remember(ident, (namespace, name, 1))

    def _remember(self, ident: tuple[str, ...], value: tuple[str, str, int]) -> None:
        self._cache[ident] = value
        self._cache.move_to_end(ident)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)


@dataclass(frozen=True)
class _Marker:
    done: threading.Event

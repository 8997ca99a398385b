"""The speaker's few Kubernetes writes: ServiceL2Status, ``NodeAssigned`` and conflict Events.

The speaker writes to the API only when ownership of a Service changes, or, for a Service no
node may announce, when the reason its reporter gives changes (a :class:`Report`:
docs/SPEAKER.md, "Announcement status"); never per VIP or per period, so a steady cluster costs
zero writes (docs/SPEAKER.md). Writes never run on the reconcile or responder threads:
:meth:`StatusWriter.set_desired` records the wanted state of one Service and returns at once;
one writer thread converges the API towards it. While the API server is away, the wanted state
simply waits (with capped exponential backoff) and announcing goes on. Keys go through a
:class:`~lbd.runtime.workqueue.WorkQueue` (dedup, per-key backoff); Events go through the shared
:class:`~lbd.k8s.events.EventRecorder` (asynchronous, repeats aggregated into ``count``).

Design decisions:

- Level-triggered and idempotent: a sync reads the current object and writes only the
  difference, so a retry, a restart or a duplicate call changes nothing. ``NodeAssigned`` is
  emitted when the object did not name this node before our write, which is exactly "once per
  owner change" - a restarted speaker that still owns the Service finds its own name and stays
  silent.
- Two speakers touch the same object during a handover (the old owner removes it, the new one
  writes it). The old owner deletes only an object whose ``status.node`` is its own, with
  ``preconditions`` on uid and resourceVersion; a concurrent write by the new owner turns that
  delete into ``409 Conflict``, the old owner re-reads, sees the new owner's name, and leaves it.
- A report is written the same way, under the reporter's own node (the admission policy lets a
  speaker write only objects naming its node), with ``announced: false``; an owner that appears
  overwrites it, and the reporter then leaves alone an object that no longer names it.
- The object is created without status (a create ignores status when the status subresource is
  on), then its status is written through ``/status``.
- The ownerReference to the Service lets the garbage collector remove the object with its
  Service; the speaker also deletes it itself when the Service goes away, for API servers
  without a garbage collector.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, InitVar, dataclass
from typing import Any, Protocol

from lbd.k8s.client import SERVICEL2STATUSES, ApiError, JsonDict, PatchType
from lbd.k8s.events import EventKind
from lbd.k8s.l2status import observe_l2status
from lbd.k8s.meta import rfc3339
from lbd.runtime.clock import SYSTEM_CLOCK, Clock
from lbd.runtime.workqueue import ExponentialBackoff, WorkQueue

log = logging.getLogger(__name__)

NODE_LABEL = "lbd.io/node"
SERVICE_NAME_LABEL = "lbd.io/service-name"
SERVICE_NAMESPACE_LABEL = "lbd.io/service-namespace"
RACES = (404, 409)  # NotFound / Conflict / AlreadyExists after a concurrent write: re-read


class KubeApi(Protocol):
    """The verbs of :class:`lbd.k8s.client.Kube` this module uses (a fake in unit tests)."""

    def get(self, path: str, *, query: Mapping[str, Any] | None = None) -> JsonDict: ...
    def create(self, path: str, body: JsonDict) -> JsonDict: ...
    def replace(self, path: str, body: JsonDict) -> JsonDict: ...
    def patch(self, path: str, body: Any, *, patch: PatchType = ...) -> JsonDict: ...
    def delete(self, path: str, *, body: JsonDict | None = None) -> JsonDict: ...


@dataclass(frozen=True)
class Ownership:
    """This node announces a Service: what its ServiceL2Status and NodeAssigned event say."""

    namespace: str
    name: str
    uid: str
    vips: tuple[str, ...]
    interfaces: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Report:
    """Nobody announces a Service and this node is its reporter (docs/SPEAKER.md,
    "Announcement status"): what its ServiceL2Status says instead of an owner."""

    namespace: str
    name: str
    uid: str
    vips: tuple[str, ...]
    reason: str  # an lbd.core.announce.Unannounced value
    message: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


Wanted = Ownership | Report
"""What this node wants a Service's ServiceL2Status to say."""

ANNOUNCED = "Announced"
"""``status.reason`` of an announced Service (the owner's object)."""


@dataclass(frozen=True)
class EventSpec:
    """A core/v1 Event about a Service."""

    namespace: str
    name: str
    uid: str
    type: str  # Normal | Warning
    reason: str
    message: str


def node_assigned_message(own: Ownership, node: str) -> str:
    """``announcing 198.18.100.7 from n2 on eth0`` (docs/API.md)."""
    where = f" on {', '.join(own.interfaces)}" if own.interfaces else ""
    return f"announcing {', '.join(own.vips)} from {node}{where}"


def _rfc3339(now: dt.datetime) -> str:
    return rfc3339(now.timestamp())


def desired_object(own: Wanted, node: str) -> JsonDict:
    """The ServiceL2Status object (metadata only; status goes through ``/status``)."""
    return {
        "apiVersion": SERVICEL2STATUSES.api_version,
        "kind": SERVICEL2STATUSES.kind,
        "metadata": {
            "name": own.name,
            "namespace": own.namespace,
            "labels": {
                NODE_LABEL: node,
                SERVICE_NAME_LABEL: own.name,
                SERVICE_NAMESPACE_LABEL: own.namespace,
            },
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": own.name,
                    "uid": own.uid,
                    "controller": False,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {},
    }


def desired_status(own: Wanted, node: str, since: str) -> JsonDict:
    """The status: ``node`` announces (an :class:`Ownership`), or reports that nobody does and
    why (a :class:`Report`; ``node`` is then the reporter, as the admission policy wants every
    speaker to write only objects naming its own node)."""
    status: JsonDict = {
        "node": node,
        "serviceName": own.name,
        "serviceNamespace": own.namespace,
    }
    if isinstance(own, Report):
        status.update(announced=False, reason=own.reason, message=own.message, vips=list(own.vips))
    else:
        where = f" on {', '.join(own.interfaces)}" if own.interfaces else ""
        status.update(
            announced=True,
            reason=ANNOUNCED,
            message=f"announced from {node}{where}",
            interfaces=[{"name": i} for i in own.interfaces],
            vips=list(own.vips),
        )
    status["since"] = since
    return status


class EventSink(Protocol):
    """Where Events go: :class:`lbd.k8s.events.EventRecorder` (asynchronous, aggregating)."""

    def event(self, involved: JsonDict, kind: EventKind, reason: str, message: str) -> None: ...


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(eq=False)
class StatusWriter:
    """Converges ServiceL2Status objects of this node towards :meth:`set_desired`; emits Events.

    The fields are what it is given; its queue and record of what is wanted start in
    ``__post_init__``."""

    kube: KubeApi
    _: KW_ONLY
    node_name: str
    events: EventSink
    clock: Clock = SYSTEM_CLOCK
    now: Callable[[], dt.datetime] = _utc_now
    backoff_initial: InitVar[float] = 0.2
    backoff_max: InitVar[float] = 10.0

    def __post_init__(self, backoff_initial: float, backoff_max: float) -> None:
        # One key per Service, never processed twice at once, per-key exponential backoff.
        self.queue: WorkQueue[str] = WorkQueue(
            clock=self.clock, rate_limiter=ExponentialBackoff(backoff_initial, backoff_max)
        )
        self._lock = threading.Lock()
        self._desired: dict[str, Wanted | None] = {}
        self._thread: threading.Thread | None = None
        self.writes = 0  # ServiceL2Status writes made (steady state must add none)

    # -- producer side (reconcile thread) ------------------------------------------------
    def set_desired(self, key: str, ownership: Wanted | None) -> None:
        """Want ``key`` (``ns/name``) owned by this node (an :class:`Ownership`), reported by it
        as not announced (a :class:`Report`), or neither (None)."""
        with self._lock:
            if key in self._desired and self._desired[key] == ownership:
                return
            self._desired[key] = ownership
        self.queue.forget(key)  # a new wish starts without the old one's backoff
        self.queue.add(key)

    def emit(self, event: EventSpec) -> None:
        """Record an Event about a Service (asynchronous, best effort)."""
        involved = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"namespace": event.namespace, "name": event.name, "uid": event.uid},
        }
        kind = EventKind.WARNING if event.type == "Warning" else EventKind.NORMAL
        self.events.event(involved, kind, event.reason, event.message)

    def cleanup_stale(self, keys: Mapping[str, Any]) -> None:
        """Remove objects naming this node for Services not in ``keys`` (left by a past run)."""
        try:
            listing = self.kube.get(
                SERVICEL2STATUSES.path(), query={"labelSelector": f"{NODE_LABEL}={self.node_name}"}
            )
        except ApiError as exc:
            log.warning("cannot list stale ServiceL2Status", extra={"error": str(exc)})
            return
        for item in listing.get("items") or []:
            meta = item.get("metadata") or {}
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            if key not in keys:
                with self._lock:
                    self._desired.setdefault(key, None)
                self.queue.add(key)

    def resync(self) -> None:
        """Converge every Service again, and remove this node's leftovers: after the API was
        rewound (an etcd restore, ``Informer.on_rewind``) the objects may hold an older state
        than the one this writer last wrote, and nothing else would make it look again."""
        with self._lock:
            wanted = {k: own for k, own in self._desired.items() if own is not None}
            keys = list(self._desired)
        for key in keys:
            self.queue.add(key)
        self.cleanup_stale(wanted)

    # -- writer thread -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self.queue.shutdown()
        if self._thread is not None:
            self._thread.join(timeout)

    def pending(self) -> int:
        return self.queue.pending()

    def _run(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                self.process(key)
            finally:
                self.queue.done(key)

    def process(self, key: str) -> bool:
        """Sync one key now; True when done, False when it was rescheduled after an error."""
        with self._lock:
            want = self._desired.get(key)
        try:
            try:
                self.sync(key, want)
            except ApiError as exc:
                if exc.status not in RACES:
                    raise
                # the other node of a hand-over wrote or deleted the object between our read
                # and our write: read again at once (a backoff would only delay the status)
                self.sync(key, want)
        except ApiError as exc:
            self.queue.add_rate_limited(key)
            log.info(
                "ServiceL2Status write failed, will retry",
                extra={"service": key, "error": str(exc), "count": self.queue.num_requeues(key)},
            )
            return False
        self.queue.forget(key)
        with self._lock:
            if want is None and self._desired.get(key, ...) is None:
                self._desired.pop(key, None)
        return True

    # -- one sync, synchronous ---------------------------------------------------------------
    def _get(self, namespace: str, name: str) -> JsonDict | None:
        try:
            return self.kube.get(SERVICEL2STATUSES.path(namespace=namespace, name=name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def sync(self, key: str, want: Wanted | None) -> None:
        """Make the API match ``want`` for ``key``; raises :class:`ApiError` to be retried."""
        namespace, _, name = key.partition("/")
        current = self._get(namespace, name)
        if want is None:
            self._remove(current)
            return
        body = desired_object(want, self.node_name)
        previous_node = previously_announced = previous_reason = previous_since = None
        if current is None:
            # 409 AlreadyExists (another node created it meanwhile) is retried: re-read, update.
            current = self.kube.create(SERVICEL2STATUSES.path(namespace=namespace), body)
            self.writes += 1
        else:
            seen = observe_l2status(current)
            previous_node = seen.node or None
            previously_announced = seen.node if seen.announced else None
            previous_reason, previous_since = seen.reason, seen.since
            meta = current.get("metadata") or {}
            if (
                meta.get("labels") != body["metadata"]["labels"]
                or meta.get("ownerReferences") != (body["metadata"]["ownerReferences"])
            ):
                updated = dict(current)
                updated["metadata"] = {
                    **meta,
                    "labels": body["metadata"]["labels"],
                    "ownerReferences": body["metadata"]["ownerReferences"],
                }
                current = self.kube.replace(SERVICEL2STATUSES.object_path(current), updated)
                self.writes += 1
        old_status = current.get("status") or {}
        # "since": when this node started announcing, or started reporting this reason
        same = previous_node == self.node_name and (
            (previously_announced == self.node_name)
            if isinstance(want, Ownership)
            else (previously_announced is None and previous_reason == want.reason)
        )
        since = previous_since if same else None
        status = desired_status(want, self.node_name, since or _rfc3339(self.now()))
        if old_status != status:
            current = dict(current)
            current["status"] = status
            self.kube.replace(SERVICEL2STATUSES.object_path(current, "status"), current)
            self.writes += 1
        if isinstance(want, Report):
            if not same:
                log.info(
                    "not announced",
                    extra={"service": key, "reason": want.reason, "node": self.node_name},
                )
            return
        if previously_announced != self.node_name:
            log.info(
                "now announcing",
                extra={"service": key, "vip": ",".join(want.vips), "node": self.node_name},
            )
            self.emit(
                EventSpec(
                    namespace=namespace,
                    name=name,
                    uid=want.uid,
                    type="Normal",
                    reason="NodeAssigned",
                    message=node_assigned_message(want, self.node_name),
                )
            )

    def _remove(self, current: JsonDict | None) -> None:
        if current is None:
            return
        meta = current.get("metadata") or {}
        owner = (current.get("status") or {}).get("node") or (meta.get("labels") or {}).get(
            NODE_LABEL
        )
        if owner != self.node_name:
            return  # another node took over: its object now
        try:
            self.kube.delete(
                SERVICEL2STATUSES.object_path(current),
                body={
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "preconditions": {
                        "uid": meta.get("uid"),
                        "resourceVersion": meta.get("resourceVersion"),
                    },
                },
            )
        except ApiError as exc:
            if exc.status == 404:
                return
            raise
        self.writes += 1

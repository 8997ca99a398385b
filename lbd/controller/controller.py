"""The controller: views -> work queue -> :class:`lbd.core.ipam.Allocator` -> status writes.

API::

    ctl = Controller(kube, ControllerSettings(lb_class=None, workers=8), metrics=metrics,
                     may_write=elector.is_leader)
    ctl.start()                      # informers (Services, IPAddressPools, Namespaces) + workers
    ctl.wait_for_sync(30)
    ctl.start_leading()              # fresh views, allocator restored from them, then allocate
    ctl.stop_leading()               # stop writing (lost the lease); informers keep running
    ctl.ready()                      # True, or the reason it is not ready (for /readyz)
    ctl.stop()

Work keys are typed (:class:`ServiceWork`, :class:`PoolWork`, :data:`CONFIG`). Every reconcile is
level-triggered: it reads the views and the allocator, never the event that woke it, so dropped,
merged or repeated events are harmless. One Service key goes: :meth:`_reconcile` ->
:meth:`_reconcile_service` (reads its :class:`~lbd.k8s.service.ObservedService`) ->
:meth:`_assign` (the allocator decides) -> :meth:`_write` (the writer diffs against the view) ->
:func:`~lbd.controller.effects.service_effects` (Events, logs, metrics).

Leadership session (:meth:`start_leading`): the views are refreshed with a consistent LIST (a
standby's watch can lag by seconds; deciding from a stale view undid the previous leader's last
decisions: issue 10, point 3), a fresh allocator gets the pool configuration, every Service's
current addresses are restored oldest first, and only then are Services enqueued, oldest first.
A restart therefore changes no address, and a takeover starts from what the Services show.

Liveness (docs/IPAM.md): the allocator remembers what each refused Service waits for; after every
decision the controller asks it which waiters to wake (:meth:`~lbd.core.ipam.Allocator.wake`)
and enqueues only those. Freeing one address re-decides the oldest Service waiting for that pool
and family, not every Service; a pool change re-decides the waiters (and the Services that lost
addresses), not everything.

An address on the wire is never given to a second Service: addresses a Service loses stay taken
in the allocator (*leaving*) until the write that removes them from its status has been made
(:meth:`~lbd.core.ipam.Allocator.settle`).

No key is dropped while leading (issue 10, point 2): a reconcile that meets ``NotLeaderError``
(the elector could not prove the lease for a moment) goes back to the queue after a short delay;
a replica that really lost the lease stops its session, and the next session enqueues everything.

Writes: only differences (see :mod:`lbd.k8s.service`), and Events only when a write changed what
a user sees, so resyncs and restarts emit nothing. The address (status) is written first; the
``lbd.io/ip-allocated-from-pool`` annotation in a later pass of the same key, so that after a
burst every Service has its address before bookkeeping writes compete for the API server. A 409
Conflict sends the key back to the queue: the decision is made again from the newer object. An
object we wrote becomes our view at once, so the watch echo of our own write is not reconciled.
The allocator is not thread-safe: calls into it hold ``_lock``, which is never held across an
API request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lbd.controller.adeffects import advertisement_effects
from lbd.controller.advertisements import Advertisements
from lbd.controller.annotations import annotation_effects
from lbd.controller.announce import (
    KEEP,
    SpeakerState,
    announced_condition,
    announced_effects,
    unannounced_counts,
)
from lbd.controller.effects import (
    Count,
    Decision,
    Effect,
    Emit,
    Gauge,
    Log,
    Metric,
    Shown,
    Verdict,
    pool_effects,
    service_effects,
    services_waiting,
)
from lbd.controller.speakers import SpeakerLiveness
from lbd.core.config import Config, FieldError, build_config
from lbd.core.ipam import Allocator, Snapshot
from lbd.core.model import (
    Allocation,
    Family,
    Refusal,
    ServiceKey,
    ServiceRequest,
    family_of,
    service_key,
)
from lbd.core.poolstatus import READY, pool_shown
from lbd.k8s.cache import ViewCache
from lbd.k8s.client import (
    IPADDRESSPOOLS,
    L2ADVERTISEMENTS,
    NAMESPACES,
    SERVICEL2STATUSES,
    SERVICES,
    ApiError,
    JsonDict,
    Kube,
)
from lbd.k8s.conditions import Condition, ObservedCondition
from lbd.k8s.events import EventKind, EventRecorder
from lbd.k8s.informer import Informer
from lbd.k8s.l2advertisement import AdvertisementStatusWriter
from lbd.k8s.l2status import ObservedL2Status, observe_l2status
from lbd.k8s.meta import ObjectRef, meta_field
from lbd.k8s.namespace import ObservedNamespace, observe_namespace
from lbd.k8s.patch import NotLeaderError, Patcher
from lbd.k8s.pool import ObservedPool, PoolStatusWriter, observe_pool
from lbd.k8s.service import AnnotationFinding, ObservedService, observe_service
from lbd.k8s.service_writer import ServiceStatus, ServiceWriter, WriteOutcome
from lbd.metrics import ControllerMetrics
from lbd.runtime.clock import SYSTEM_CLOCK, Clock
from lbd.runtime.workqueue import WorkQueue

log = logging.getLogger(__name__)

NOT_LEADER_RETRY = 0.2
"""Seconds before a key that met NotLeaderError is tried again (the elector's blind moment)."""
ANNOUNCE_SETTLE = 1.0
"""Seconds a new Service's first "not announced" must last before it is shown: a Service's
EndpointSlice is often written a moment after its address, and a Warning on every new Service
would teach users to ignore it."""
CONFIG_RETRY = 0.2
"""Seconds before a pool change whose consistent LIST failed is tried again."""
REFRESH_BACKOFF = (0.1, 2.0)
"""First and longest wait between attempts of the takeover LIST while the API is away."""


@dataclass(frozen=True)
class ServiceWork:
    """Decide one Service."""

    key: ServiceKey


@dataclass(frozen=True)
class PoolWork:
    """Write one pool's status."""

    name: str


@dataclass(frozen=True)
class AdvertisementWork:
    """Write one L2Advertisement's Ready condition (:mod:`lbd.controller.advertisements`)."""

    name: str


@dataclass(frozen=True)
class AnnounceWork:
    """Bring one Service's ``lbd.io/Announced`` condition up to date (controller/announce.py)."""

    key: ServiceKey


@dataclass(frozen=True)
class ConfigWork:
    """Give the allocator the current pool configuration."""


CONFIG = ConfigWork()
WorkKey = ServiceWork | PoolWork | ConfigWork | AdvertisementWork | AnnounceWork


@dataclass(frozen=True)
class ControllerSettings:
    """Knobs of the controller (command-line flags)."""

    lb_class: str | None = None
    workers: int = 8
    pool_status_interval: float = 1.0
    """At most one status write per pool per this many seconds (debounce)."""
    resync_period: float = 600.0
    watch_timeout: int = 300
    component: str = "lbd-controller"
    identity: str = ""
    speaker_namespace: str | None = None
    """Where the speaker Pods run (NoLiveSpeaker, lbd/controller/speakers.py); None: not judged."""
    speaker_selector: str = "app.kubernetes.io/component=speaker"
    speaker_grace: float = 10.0


class Controller:
    """Keeps every LoadBalancer Service of our class showing the right address."""

    def __init__(
        self,
        kube: Kube,
        settings: ControllerSettings,
        *,
        metrics: ControllerMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
        may_write: Callable[[], bool] = lambda: True,
        events: EventRecorder | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics or ControllerMetrics()
        self.clock = clock
        self.events = events or EventRecorder(
            kube, component=settings.component, host=settings.identity
        )
        self._may_write = may_write
        self.patcher = Patcher(kube, may_write=self._writing_allowed, on_written=self._on_written)
        self.service_writer = ServiceWriter(self.patcher)
        self.pool_writer = PoolStatusWriter(self.patcher)
        self.queue: WorkQueue[WorkKey] = WorkQueue(clock=clock)
        self.services: ViewCache[ObservedService] = ViewCache(
            SERVICES,
            observe_service,
            on_change=self._service_changed,
            index=lambda v: v.ref.namespace,
        )
        self.pools: ViewCache[ObservedPool] = ViewCache(
            IPADDRESSPOOLS, observe_pool, on_change=self._pool_changed
        )
        self.namespaces: ViewCache[ObservedNamespace] = ViewCache(
            NAMESPACES, observe_namespace, on_change=self._namespace_changed
        )
        self.ad_writer = AdvertisementStatusWriter(self.patcher)
        self.advertisements = Advertisements(
            kube,
            pools=self.pools,
            enqueue=lambda name: self.queue.add(AdvertisementWork(name)),
            watch_timeout=settings.watch_timeout,
        )
        self.l2statuses: ViewCache[ObservedL2Status] = ViewCache(
            SERVICEL2STATUSES, observe_l2status, on_change=self._l2status_changed
        )
        self._unannounced: dict[str, str] = {}  # Services whose Announced is False -> reason
        self._unsettled: dict[str, tuple[str, float]] = {}  # new Service -> (reason, first seen)
        self.speakers: Callable[[], SpeakerState | None] = lambda: None
        """Whether any speaker runs (lbd.controller.speakers); None: no source, never judged."""
        self.informers: tuple[Informer, ...] = (
            Informer(kube, NAMESPACES, watch_timeout=settings.watch_timeout),
            Informer(kube, IPADDRESSPOOLS, watch_timeout=settings.watch_timeout),
            Informer(
                kube,
                SERVICES,
                resync_period=settings.resync_period,
                watch_timeout=settings.watch_timeout,
            ),
        )
        self.informers[0].add_handler(self.namespaces.on_event)
        self.informers[1].add_handler(self.pools.on_event)
        self.informers[2].add_handler(self.services.on_event)
        self.informers = (*self.informers, self._l2status_informer())
        self.liveness: SpeakerLiveness | None = None
        if settings.speaker_namespace:
            self.liveness = SpeakerLiveness(
                kube,
                namespace=settings.speaker_namespace,
                selector=settings.speaker_selector,
                grace=settings.speaker_grace,
                on_change=self.recheck_announced,
                clock=clock,
                watch_timeout=settings.watch_timeout,
            )
            self.speakers = self.liveness.state
            self.informers = (*self.informers, self.liveness.informer)
        self.informers += self.advertisements.informers
        for informer in self.informers:
            informer.on_rewind(self._on_rewind)
        self.metrics.services_waiting.source = lambda: services_waiting(
            self.services.values(), settings.lb_class
        )

        self._lock = threading.RLock()  # guards the allocator and the session state below
        self._allocator: Allocator | None = None
        # Sessions: one start at a time; a stop bumps the epoch, so a start that began before
        # it gives up. Writes of a session are counted: the next session lists the Services
        # only after the last of them has landed or failed (else a retry of the old session's
        # write could land after the new session's list, undetected: issue 10, point 3).
        self._session_lock = threading.Lock()
        self._epoch = 0
        self._writes_in_flight = 0
        self._drained = threading.Condition(self._lock)
        self._config: Config | None = None
        self._config_input: Any = None
        self._config_changed: list[str] = []  # pools the last configuration change touched
        self._pool_written: dict[str, float] = {}
        self._pool_warned: dict[str, tuple[str, ...]] = {}
        # Annotation findings presented per Service (uid, findings): Events once per change.
        self._findings_shown: dict[ServiceKey, tuple[str, tuple[AnnotationFinding, ...]]] = {}
        self._active = threading.Event()
        self._restored = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._forget_announced(None)  # every reason's series at 0 from the start

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        for inf in self.informers:
            inf.start()
        if self.liveness is not None:
            self.liveness.start()
        for i in range(self.settings.workers):
            t = threading.Thread(target=self._worker, name=f"worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for inf in self.informers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not inf.wait_for_sync(left):
                return False
        return True

    def has_synced(self) -> bool:
        return all(i.has_synced() for i in self.informers)

    def stop(self) -> None:
        self._stop.set()
        self.stop_leading()
        self.queue.shutdown()
        for inf in self.informers:
            inf.stop()
        if self.liveness is not None:
            self.liveness.stop()
        for t in self._threads:
            t.join(5)
        self.events.stop()

    def ready(self) -> bool | str:
        if not self.has_synced():
            return "caches not synced"
        if self._active.is_set() and not self._restored:
            return "restoring assignments"
        return True

    def describe(self) -> dict[str, object]:
        """The session's state, for a diagnostic dump (``SIGUSR1``)."""
        with self._lock:
            allocator = self._allocator
            alloc = allocator.describe() if allocator is not None else None
            snap = allocator.snapshot() if allocator is not None else None
            return {
                "active": self._active.is_set(),
                "epoch": self._epoch,
                "writes_in_flight": self._writes_in_flight,
                "queue_pending": self.queue.pending(),
                "services": len(self.services),
                "allocator": alloc,
                "unlike_views": self._unlike_views(snap) if snap is not None else None,
            }

    def _unlike_views(self, snap: Snapshot, most: int = 20) -> dict[str, str]:
        """Services whose view shows other addresses than the allocator holds for them (the
        writes that are still to be made, or a lost one): ``key -> "held ... shown ..."``."""
        held = {a.key: a.addresses for a in snap.holdings}
        for key, addrs in snap.leaving:
            held[key] = (*held.get(key, ()), *(f"{a}(leaving)" for a in addrs))
        out: dict[str, str] = {}
        for key in sorted(
            set(held)
            | {
                v.key
                for v in self.services.values()
                if v.addresses and v.ours(self.settings.lb_class)
            }
        ):
            view = self.services.get(key)
            shown = view.addresses if view is not None else None
            if shown is None or tuple(held.get(key, ())) != shown:
                out[key] = f"held {list(held.get(key, ()))}, shown {shown}"
                if len(out) >= most:
                    break
        return out

    def _writing_allowed(self) -> bool:
        return self._active.is_set() and self._may_write()

    # -- leadership session ---------------------------------------------------------------
    def start_leading(self) -> None:
        """Refresh the views, rebuild the allocator from them (restore everything), then
        start allocating."""
        with self._session_lock:
            self._start_session()

    def _start_session(self, *, listed: bool = False) -> None:
        """``listed``: the views were just taken from a fresh list (after a rewind)."""
        with self._lock:
            epoch = self._epoch
        if not self.wait_for_sync(timeout=None if not self._stop.is_set() else 0):
            return
        started = time.monotonic()
        with self._lock:  # the previous session's last writes land before we look
            self._drained.wait_for(lambda: self._writes_in_flight == 0, timeout=60)
        if not listed and not self._refresh_views(epoch):
            return
        with self._lock:
            if self._epoch != epoch:
                return  # stopped meanwhile: the next start takes over
            self._restored = False
            self._allocator = Allocator()
            self._config_input = None
            self._pool_written.clear()
            self._pool_warned.clear()
            self._apply_config()
            restored, refused = self._restore_all()
            if not self._may_write():
                # Leadership was lost (or never proven) while we restored: stay passive.
                self._allocator = None
                return
            self._restored = True
            self._active.set()
        self.metrics.controller_leader.set(1)
        log.info(
            "leading: restored %d Services (%d refused) in %.3fs",
            restored,
            refused,
            time.monotonic() - started,
            extra={"count": restored, "duration": round(time.monotonic() - started, 3)},
        )
        self.queue.add(CONFIG)
        # Oldest first: of Services that compete for the last free addresses, the older wins.
        for view in sorted(self.services.values(), key=lambda v: (v.created, v.key)):
            self.queue.add(ServiceWork(view.key))
        for name in self.pools.keys():  # noqa: SIM118 (a ViewCache, not a dict)
            self.queue.add(PoolWork(name))
        self.advertisements.enqueue_all()
        self.recheck_announced()

    def _caches(self) -> tuple[ViewCache[Any], ...]:
        """Every view the controller decides from, in the order a takeover lists them."""
        return (
            self.namespaces,
            self.pools,
            self.services,
            self.l2statuses,
            *self.advertisements.caches,
        )

    def _refresh_views(self, epoch: int) -> bool:
        """A consistent LIST of everything we decide from; retried while we may lead."""
        if self._epoch != epoch:
            return False
        return self._list_views(
            lambda cache: cache.refresh(self.kube),
            "takeover",
            lambda: self._epoch == epoch and self._may_write(),
        )

    def _list_views(
        self, how: Callable[[ViewCache[Any]], None], what: str, go_on: Callable[[], bool]
    ) -> bool:
        """``how`` on every view cache, retried with backoff while ``go_on()`` after a
        failure; whether it completed."""
        wait = REFRESH_BACKOFF[0]
        while not self._stop.is_set():
            try:
                for cache in self._caches():
                    how(cache)
                return True
            except ApiError as exc:
                if not go_on():
                    return False
                log.warning("%s: listing failed: %s", what, exc, extra={"error": str(exc)})
                self._stop.wait(wait)
                wait = min(wait * 2, REFRESH_BACKOFF[1])
        return False

    def _on_rewind(self) -> None:
        """The API server's history went back (an etcd restore, docs/SECURITY.md): objects
        returned with older resourceVersions, some we saw deleted came back, some we saw
        created are gone. The newest-first views would keep the undone state, and the
        allocator was built from it; so end the session, take the views from a fresh list as
        they are, and, if we lead, restore everything anew (issue 16, point 5)."""
        log.warning("the API server's history went back (an etcd restore?): relisting")
        with self._session_lock:
            leading = self._active.is_set()
            if leading:
                self.stop_leading()
            with self._lock:
                self._drained.wait_for(lambda: self._writes_in_flight == 0, timeout=60)
            listed = self._list_views(lambda cache: cache.reset(self.kube), "rewind", lambda: True)
            if listed and leading and self._may_write():
                self._start_session(listed=True)  # the views are fresh: no second LIST

    def stop_leading(self) -> None:
        with self._lock:
            self._epoch += 1
            was = self._active.is_set()
            self._active.clear()
            self._allocator = None
            self._restored = False
        self.metrics.controller_leader.set(0)
        self._forget_announced(None)
        if was:
            log.info("stopped leading: no more writes")

    def _restore_all(self) -> tuple[int, int]:
        """Register the addresses every Service of ours shows with the allocator (oldest
        first, so of two claimants the older keeps an address)."""
        alloc = self._allocator
        assert alloc is not None
        items: list[tuple[ServiceRequest, tuple[str, ...], str | None]] = []
        for view in self.services.values():
            if view.ours(self.settings.lb_class) and view.addresses:
                items.append((self._request_for_restore(view), view.addresses, view.pool_hint))
        results = alloc.restore_all(items) if items else {}
        refused = [(k, r) for k, r in results.items() if isinstance(r, Refusal)]
        for key, refusal in refused[:20]:
            log.info(
                "restore refused: %s",
                refusal.message,
                extra={"service": key, "reason": refusal.reason.value},
            )
        return len(results), len(refused)

    def _request_for_restore(self, view: ObservedService) -> ServiceRequest:
        req = view.request_in(self._namespace_labels(view))
        if isinstance(req, ServiceRequest):
            return req
        # A Service with a garbage annotation still holds its address: restore it under a
        # minimal request so nobody else is given that address while the user fixes the typo.
        fams = tuple(dict.fromkeys(family_of(a) for a in view.addresses))
        return ServiceRequest(
            key=view.key,
            namespace=view.ref.namespace,
            name=view.ref.name,
            created=view.created,
            ip_families=fams or (Family.IPV4,),
        )

    # -- view changes (informer threads: only enqueue) ------------------------------------
    def _on_written(self, obj: JsonDict) -> None:
        """An object our write returned is our newest view (its watch echo is then ignored)."""
        kind = obj.get("kind")
        if kind == SERVICES.kind:
            self.services.put(obj, notify=False)
            # its address may have changed: the Announced condition follows
            key = service_key(meta_field(obj, "namespace"), meta_field(obj, "name"))
            self.queue.add(AnnounceWork(key))
        elif kind == IPADDRESSPOOLS.kind:
            self.pools.put(obj, notify=False)
        elif kind == L2ADVERTISEMENTS.kind:
            self.advertisements.ads.put(obj, notify=False)

    def _service_changed(self, old: ObservedService | None, new: ObservedService | None) -> None:
        view = new or old
        if view is not None:
            self.queue.add(ServiceWork(view.key))
            self.queue.add(AnnounceWork(view.key))

    def _pool_changed(self, old: ObservedPool | None, new: ObservedPool | None) -> None:
        self.queue.add(CONFIG)
        view = new or old
        if view is not None:
            self.queue.add(PoolWork(view.name))
        self.advertisements.pool_changed(old, new)

    def _namespace_changed(
        self, old: ObservedNamespace | None, new: ObservedNamespace | None
    ) -> None:
        if old is None or new is None or old.labels == new.labels:
            return
        for view in self.services.by_index(new.name):
            self.queue.add(ServiceWork(view.key))

    # -- workers --------------------------------------------------------------------------
    def _worker(self) -> None:
        while not self._stop.is_set():
            if not self._active.wait(0.5):
                continue
            key = self.queue.get(timeout=0.5)
            if key is None:
                continue
            self.metrics.workqueue_depth.set(len(self.queue))
            started = time.perf_counter()
            try:
                if self._active.is_set():
                    self._reconcile(key)
                    self.queue.forget(key)
                else:
                    self.queue.add_after(key, NOT_LEADER_RETRY)  # the next session needs it
            except NotLeaderError:
                # The elector could not prove the lease just now (or we lost it). Never drop
                # the key: if we lead again it must be decided (issue 10, point 2).
                self.queue.add_after(key, NOT_LEADER_RETRY)
            except ApiError as exc:
                # 409: the object moved on since we read it; decide again from the newer one.
                log.log(
                    logging.DEBUG if exc.status == 409 else logging.WARNING,
                    "reconcile %s failed: %s",
                    key,
                    exc,
                    extra={"key": str(key), "error": str(exc)},
                )
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("reconcile %s: unexpected error", key, extra={"key": str(key)})
                self.queue.add_rate_limited(key)
            finally:
                self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
                self.queue.done(key)

    def _reconcile(self, key: WorkKey) -> None:
        match key:
            case ServiceWork(key=skey):
                self._reconcile_service(skey)
            case PoolWork(name=name):
                self._reconcile_pool(name)
            case ConfigWork():
                self._reconcile_config()
            case AdvertisementWork(name=name):
                self._reconcile_advertisement(name)
            case AnnounceWork(key=skey):
                self._reconcile_announced(skey)

    def sync_once(self, key: WorkKey) -> None:
        """Run one reconcile now (tests); raises what the reconcile raises."""
        self._reconcile(key)

    def _alloc(self) -> Allocator:
        """The session's allocator (call with ``_lock`` held); NotLeaderError outside one."""
        if self._allocator is None:
            raise NotLeaderError("no leadership session")
        return self._allocator

    def _wake(self, alloc: Allocator, pools: Iterable[str] = ()) -> None:
        """Enqueue the waiters the last decision unblocked, and the pools it changed."""
        for key in alloc.wake():
            self.queue.add(ServiceWork(key))
        for pool in pools:
            self.queue.add(PoolWork(pool))

    # -- configuration --------------------------------------------------------------------
    def _pool_input(self) -> tuple[list[ObservedPool], list[Any]]:
        """The pool views, by name, and what of them the configuration depends on."""
        views = sorted(self.pools.values(), key=lambda v: v.name)
        return views, [(v.name, repr(v.spec), sorted(v.labels.items()), v.created) for v in views]

    def _apply_config(self) -> tuple[ServiceKey, ...] | None:
        """Give the allocator the current pools; None when nothing changed."""
        alloc = self._alloc()
        views, frozen = self._pool_input()
        if frozen == self._config_input:
            return None
        before = {f[0]: f for f in self._config_input or ()}
        gone = set(before) - {v.name for v in views}
        changed = sorted({f[0] for f in frozen if before.get(f[0]) != f} | gone)
        self._config_input = frozen
        config = build_config({v.name: v.config_input() for v in views})
        self._config = config
        by_name = {v.name: v for v in views}
        self._config_changed = [_pool_line(n, by_name.get(n), config) for n in changed]
        for name, errors in config.invalid.items():
            log.warning(
                "pool %s is invalid: %s",
                name,
                "; ".join(str(e) for e in errors),
                extra={"pool": name, "reason": "Invalid"},
            )
        return alloc.set_pools(
            config.pools.values(),
            config.conflicting,
            {n: "; ".join(str(e) for e in errs) for n, errs in config.invalid.items()},
        )

    def _reconcile_config(self) -> None:
        with self._lock:
            self._alloc()
            frozen = self._pool_input()[1]
            if frozen == self._config_input:
                return
            before = set(map(repr, self._config_input or ()))
            only_added = before <= set(map(repr, frozen))
        if not only_added:
            # The pool views may be a lagging watch's: after an outage it replays what it
            # missed, a pool shrunk and grown back arrives as two events, and a pass between
            # them would take addresses from Services whose pool never stopped holding them
            # (issue 10, chaos seed 1843369182). So a change that may take addresses away is
            # decided from a consistent read, as a takeover is: one LIST of the pools (a few
            # objects; the watch's late events are older than it and ignored). A pool added
            # takes nothing away and is applied at once.
            try:
                self.pools.refresh(self.kube)
            except ApiError as exc:
                # Soon again, not after the rate limiter's backlog: every pool change waits.
                log.warning("pool list failed: %s", exc, extra={"error": str(exc)})
                self.queue.add_after(CONFIG, CONFIG_RETRY)
                return
        with self._lock:
            alloc = self._alloc()
            lost = self._apply_config()
            if lost is None:
                return
            for key in lost:  # they lost addresses: decide them again (and clear what left)
                self.queue.add(ServiceWork(key))
            self._wake(alloc, self.pools.keys())
            shown = "; ".join(self._config_changed)
        log.info("pool configuration changed: %s", shown, extra={"count": len(lost)})

    # -- Services -------------------------------------------------------------------------
    def _namespace_labels(self, view: ObservedService) -> dict[str, str]:
        ns = self.namespaces.get(view.ref.namespace)
        return dict(ns.labels) if ns is not None else {}

    def _reconcile_service(self, key: ServiceKey) -> None:
        view = self.services.get(key)
        self._present_findings(key, view)
        if view is None:
            with self._lock:
                alloc = self._alloc()
                held = alloc.holding(key)
                waited = _waited_pools(alloc, key)
                released = alloc.release(key)
                self._wake(alloc, waited | ({held.pool} if held is not None else set()))
            self._apply(
                ObjectRef("v1", "Service", *key.split("/", 1)),
                service_effects(key, Shown(), Decision(Verdict.DELETED, released=released), False),
            )
            return
        if not view.class_matches(self.settings.lb_class):
            if view.load_balancer:
                # Another controller's Service: forget it, never write to it.
                with self._lock:
                    alloc = self._alloc()
                    alloc.release(key)
                    self._wake(alloc)
            return
        if not view.load_balancer:
            self._release_service(view)
            return
        req = view.request_in(self._namespace_labels(view))
        if isinstance(req, FieldError):
            self._report_invalid(view, req)
            return
        self._assign(view, req)

    def _present_findings(self, key: ServiceKey, view: ObservedService | None) -> None:
        """Events for the annotation findings this Service did not show before
        (:mod:`lbd.controller.annotations`); only Services of our class hear of them."""
        with self._lock:
            self._alloc()  # only a leader presents
            if view is None or not view.ours(self.settings.lb_class):
                self._findings_shown.pop(key, None)
                return
            uid, before = self._findings_shown.get(key, ("", ()))
            if uid != view.ref.uid:
                before = ()
            if before == view.findings:
                return
            self._findings_shown[key] = (view.ref.uid, view.findings)
        self._apply(view.ref, annotation_effects(key, before, view.findings))

    def _write(
        self, alloc: Allocator, view: ObservedService, desired: ServiceStatus
    ) -> WriteOutcome:
        """Status now; the pool annotation, if it changes too, in a later pass of the same key.

        The key goes to the back of the queue, so after a burst (a restart of a big cluster, a
        pool change) every Service gets its address before any bookkeeping write is made. Only
        while the session that decided (``alloc``) lasts.
        """
        with self._session_write(alloc) as still:
            outcome = self.service_writer.write(view, desired, defer_metadata=True, still=still)
        if outcome.metadata_pending:
            self.queue.add(ServiceWork(view.key))
        return outcome

    @contextlib.contextmanager
    def _session_write(self, alloc: Allocator) -> Iterator[Callable[[], bool]]:
        """A write of the session whose allocator is ``alloc``: refused once it ended, and
        counted while in flight."""
        with self._lock:
            if self._allocator is not alloc:
                raise NotLeaderError("the session that decided has ended")
            self._writes_in_flight += 1
        try:
            yield lambda: self._allocator is alloc
        finally:
            with self._lock:
                self._writes_in_flight -= 1
                if not self._writes_in_flight:
                    self._drained.notify_all()

    def _settle(self, alloc: Allocator, key: ServiceKey) -> None:
        """The status no longer shows what ``key`` lost: those addresses are free now."""
        with self._lock:
            if self._allocator is alloc:
                alloc.settle(key)
                self._wake(alloc)

    def _release_service(self, view: ObservedService) -> None:
        """A Service that stopped being a LoadBalancer: forget it and clear what we wrote."""
        key = view.key
        with self._lock:
            alloc = self._alloc()
            held = alloc.holding(key)
            waited = _waited_pools(alloc, key)
            alloc.retire(key)
            alloc.stop_waiting(key)
            released = alloc.leaving(key)
            self._wake(alloc, waited | ({held.pool} if held is not None else set()))
        wrote = False
        if view.marked:
            wrote = self._write(alloc, view, ServiceStatus((), None, None)).wrote
        self._settle(alloc, key)
        self._apply(
            view.ref,
            service_effects(
                key, Shown(view.addresses), Decision(Verdict.RELEASED, released=released), wrote
            ),
        )

    def _report_invalid(self, view: ObservedService, err: FieldError) -> None:
        # Keep whatever the Service holds (no churn while the user fixes a typo); say why.
        with self._lock:
            alloc = self._alloc()
            held = alloc.holding(view.key)
            waited = _waited_pools(alloc, view.key)
            alloc.stop_waiting(view.key)
            self._wake(alloc, waited)
        decision = Decision(Verdict.INVALID, reason="InvalidRequest", message=str(err))
        desired = ServiceStatus(
            addresses=held.addresses if held is not None else (),
            pool=held.pool if held is not None else None,
            condition=Condition(False, decision.reason, decision.message),
        )
        outcome = self._write(alloc, view, desired)
        self._settle(alloc, view.key)  # an address it showed but does not hold is cleared now
        self._apply(
            view.ref,
            service_effects(
                view.key, Shown(view.addresses, view.condition), decision, outcome.wrote
            ),
        )

    def _assign(self, view: ObservedService, req: ServiceRequest) -> None:
        key = req.key
        with self._lock:
            alloc = self._alloc()
            before = alloc.holding(key)
            waited = _waited_pools(alloc, key)
            if before is None and view.addresses and not alloc.leaving(key):
                # Addresses we did not know about (a write by the previous leader that landed
                # after our restore): keep them if nobody holds them; a holder is never
                # displaced (a stale status must not move a Service that has an address).
                alloc.restore(req, view.addresses, view.pool_hint)
            result = alloc.allocate(req)
            if isinstance(result, Refusal):
                # What it held stays taken until the write below clears its status.
                alloc.retire(key)
            pools = {a.pool for a in (before, result) if isinstance(a, Allocation)}
            # The pools it waited or now waits on: their status counts waiting Services.
            self._wake(alloc, pools | waited | _waited_pools(alloc, key))
        if isinstance(result, Allocation):
            decision = Decision(
                Verdict.ASSIGNED,
                addresses=result.addresses,
                pool=result.pool,
                reason="Assigned",
                message=f"{', '.join(result.addresses)} from pool {result.pool}",
            )
            desired = ServiceStatus(
                result.addresses, result.pool, Condition(True, "Assigned", decision.message)
            )
        else:
            decision = Decision(Verdict.REFUSED, reason=result.reason.value, message=result.message)
            desired = ServiceStatus((), None, Condition(False, decision.reason, result.message))
        outcome = self._write(alloc, view, desired)
        self._settle(alloc, key)
        self._apply(
            view.ref,
            service_effects(key, Shown(view.addresses, view.condition), decision, outcome.wrote),
        )

    # -- announcement status (lbd.controller.announce) ------------------------------------
    def _l2status_informer(self) -> Informer:
        inf = Informer(self.kube, SERVICEL2STATUSES, watch_timeout=self.settings.watch_timeout)
        inf.add_handler(self.l2statuses.on_event)
        return inf

    def _l2status_changed(self, old: ObservedL2Status | None, new: ObservedL2Status | None) -> None:
        view = new or old
        if view is not None:
            self.queue.add(AnnounceWork(ServiceKey(view.key)))

    def recheck_announced(self) -> None:
        """Decide every Service's Announced condition again (speaker liveness changed)."""
        for view in self.services.values():
            self.queue.add(AnnounceWork(view.key))

    def _reconcile_announced(self, key: ServiceKey) -> None:
        view = self.services.get(key)
        if view is None:
            self._forget_announced(key)
            return
        want = announced_condition(
            view, self.l2statuses.get(key), self.speakers(), self.settings.lb_class
        )
        shown = view.announced
        if want is KEEP:
            self._count_announced(key, shown if view.addresses else None)
            return
        if self._settling(key, shown, want):
            return
        wrote = False
        if (shown is not None) if want is None else (shown is None or not shown.shows(want)):
            with self._lock:
                alloc = self._alloc()
            with self._session_write(alloc) as still:
                wrote = self.service_writer.write_announced(view, want, still=still)
        self._count_announced(key, want)
        self._apply(view.ref, announced_effects(key, shown, want, wrote))

    def _settling(
        self, key: ServiceKey, shown: ObservedCondition | None, want: Condition | None
    ) -> bool:
        """A Service that never showed the condition and is first said not announced waits
        :data:`ANNOUNCE_SETTLE` seconds for that to last (the key comes back then)."""
        if shown is not None or want is None or want.status:
            with self._lock:
                self._unsettled.pop(key, None)
            return False
        now = self.clock.monotonic()
        with self._lock:
            reason, since = self._unsettled.get(key, (want.reason, now))
            if reason != want.reason:
                since = now
            self._unsettled[key] = (want.reason, since)
            left = since + ANNOUNCE_SETTLE - now
            if left <= 0:
                self._unsettled.pop(key, None)
                return False
        self.queue.add_after(AnnounceWork(key), left)
        return True

    def _count_announced(self, key: str, shown: Condition | ObservedCondition | None) -> None:
        """``lbd_services_unannounced``: from the condition the Service now shows."""
        with self._lock:
            if shown is not None and shown.status in (False, "False"):
                self._unannounced[key] = shown.reason
            elif self._unannounced.pop(key, None) is None:
                return
            counts = unannounced_counts(self._unannounced)
        for reason, n in counts.items():
            self.metrics.services_unannounced.labels(reason=reason).set(n)

    def _forget_announced(self, key: str | None) -> None:
        """A Service gone (``key``), or leadership lost (None: forget all, gauge to zero)."""
        with self._lock:
            if key is not None:
                self._unsettled.pop(key, None)
            if key is None:
                self._unannounced.clear()
                self._unsettled.clear()
            elif self._unannounced.pop(key, None) is None:
                return
            counts = unannounced_counts(self._unannounced)
        for reason, n in counts.items():
            self.metrics.services_unannounced.labels(reason=reason).set(n)

    # -- pool status ----------------------------------------------------------------------
    def _reconcile_pool(self, name: str) -> None:
        view = self.pools.get(name)
        if view is None:
            with self._lock:
                self._pool_written.pop(name, None)
                self._pool_warned.pop(name, None)
            gone = ObjectRef(IPADDRESSPOOLS.api_version, IPADDRESSPOOLS.kind, "", name)
            self._apply(gone, pool_effects(name, None, None, ()))
            return
        now = self.clock.monotonic()
        with self._lock:
            alloc = self._alloc()
            if self._config is None:
                raise NotLeaderError(name)
            last = self._pool_written.get(name)
            if last is not None and now - last < self.settings.pool_status_interval:
                self.queue.add_after(
                    PoolWork(name), self.settings.pool_status_interval - (now - last)
                )
                return
            shown = pool_shown(name, self._config, alloc)
            warned = self._pool_warned.get(name, ())
            self._pool_warned[name] = shown.warnings
        with self._session_write(alloc) as still:
            written = self.pool_writer.write(view, shown, still=still)
        if written:
            with self._lock:
                self._pool_written[name] = self.clock.monotonic()
        self._apply(view.ref, pool_effects(name, view.condition(READY), shown, warned))

    # -- L2Advertisement status -----------------------------------------------------------
    def _reconcile_advertisement(self, name: str) -> None:
        decided = self.advertisements.decide(name)
        if decided is None:
            return  # deleted: its status went with it
        view, after = decided
        with self._lock:
            alloc = self._alloc()
        want = Condition(after.ready, after.reason.value, after.message)
        with self._session_write(alloc) as still:
            wrote = self.ad_writer.write(view, want, still=still)
        self._apply(view.ref, advertisement_effects(name, view.ready, after, wrote))

    # -- effects --------------------------------------------------------------------------
    def _apply(self, subject: ObjectRef, effects: Iterable[Effect]) -> None:
        """Carry out what :mod:`lbd.controller.effects` decided users see."""
        m = self.metrics
        for effect in effects:
            match effect:
                case Emit(warning=warning, reason=reason, message=message):
                    kind = EventKind.WARNING if warning else EventKind.NORMAL
                    self.events.event(subject, kind, reason, message)
                case Log(level=level, message=message, fields=fields):
                    log.log(level, message, extra=dict(fields))
                case Count(labels=(result, reason)):
                    m.allocations_total.labels(result, reason).inc()
                case Gauge(metric=metric, labels=labels, value=value):
                    gauge = {
                        Metric.POOL_TOTAL: m.pool_addresses_total,
                        Metric.POOL_ASSIGNED: m.pool_addresses_assigned,
                        Metric.POOL_STATE: m.pool_state,
                    }[metric]
                    if value is None:
                        with contextlib.suppress(KeyError):  # never set: nothing to remove
                            gauge.remove(*labels)
                    else:
                        gauge.labels(*labels).set(float(value))


def _waited_pools(alloc: Allocator, key: ServiceKey) -> set[str]:
    """Pools whose status counts ``key`` among the Services waiting on them."""
    return {w.pool for w in alloc.waits(key) if w.pool}


def _pool_line(name: str, view: ObservedPool | None, config: Config) -> str:
    """``name addresses (status)`` of a pool whose definition changed, for the change log."""
    if view is None:
        return f"{name} deleted"
    status = "Ready"
    if name in config.invalid:
        status = "Invalid"
    elif name in config.conflicting:
        status = "Conflicting"
    addresses = list(view.spec.get("addresses") or [])
    return f"{name} {addresses} ({status}, resourceVersion {view.ref.resource_version})"

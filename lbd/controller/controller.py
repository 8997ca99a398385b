"""The controller: informers -> work queue -> :class:`lbd.core.ipam.Allocator` -> status writes.

API::

    ctl = Controller(kube, ControllerSettings(lb_class=None, workers=8), metrics=metrics,
                     may_write=elector.is_leader)
    ctl.start()                      # informers (Services, IPAddressPools, Namespaces) + workers
    ctl.wait_for_sync(30)
    ctl.start_leading()              # build the allocator from the store, then allocate
    ctl.stop_leading()               # stop writing (lost the lease); informers keep running
    ctl.ready()                      # True, or the reason it is not ready (for /readyz)
    ctl.stop()

Keys in the queue: ``s:<namespace>/<name>`` (a Service), ``p:<name>`` (a pool's status) and
``c`` (the pool configuration). Every reconcile is level-triggered: it reads the stores and the
allocator, never the event that woke it, so dropped, merged or repeated events are harmless.

Leadership session (``start_leading``): a fresh allocator gets the pool configuration, then every
Service's current addresses are restored oldest first (``(creationTimestamp, namespace/name)``),
and only then are Services enqueued for allocation. A restart therefore changes no address, and
a standby replica that takes over starts from what the Services show, not from its own memory.

Writes: only differences (see :mod:`lbd.k8s.status`), and Events only when a write changed what
a user sees, so resyncs and restarts emit nothing. The address (status) is written first; the
``lbd.io/ip-allocated-from-pool`` annotation in a later pass of the same key, so that after a
burst every Service has its address before bookkeeping writes compete for the API server. A
409 Conflict sends the key back to the queue: the decision is made again from the newer object
(its request may have changed). Watch echoes of our own writes (same resourceVersion) do not
wake the key again. The allocator is not thread-safe: calls into it hold ``_lock``, which is
never held across an API request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lbd.core.config import Config, FieldError, PoolInput, build_config
from lbd.core.ipam import Allocator
from lbd.core.model import (
    Allocation,
    Family,
    Refusal,
    ServiceKey,
    ServiceRequest,
    family_of,
    render_count,
    service_key,
)
from lbd.k8s.client import IPADDRESSPOOLS, NAMESPACES, SERVICES, ApiError, JsonDict, Kube
from lbd.k8s.convert import (
    allocated_pool,
    class_matches,
    ingress_addresses,
    is_load_balancer,
    service_request,
)
from lbd.k8s.events import EventKind, EventRecorder
from lbd.k8s.informer import EventType, Informer
from lbd.k8s.status import (
    CONDITION_TYPE,
    Condition,
    NotLeaderError,
    ServiceStatus,
    StatusWriter,
    WriteOutcome,
    merge_conditions,
    now_rfc3339,
)
from lbd.metrics import ControllerMetrics
from lbd.runtime.clock import SYSTEM_CLOCK, Clock
from lbd.runtime.workqueue import WorkQueue

log = logging.getLogger(__name__)

CONFIG_KEY = "c"


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
        self.writer = StatusWriter(
            kube, may_write=self._writing_allowed, on_written=self._remember_own_write
        )
        # resourceVersions our own writes produced, per Service key: their watch echoes need no
        # reconcile (we computed that very state). Anything else still wakes the key.
        self._own_writes: dict[str, set[str]] = {}
        self._own_lock = threading.Lock()
        self.queue: WorkQueue[str] = WorkQueue(clock=clock)
        self.services = Informer(
            kube,
            SERVICES,
            indexers={"namespace": _namespace_of},
            resync_period=settings.resync_period,
            watch_timeout=settings.watch_timeout,
        )
        self.pools = Informer(kube, IPADDRESSPOOLS, watch_timeout=settings.watch_timeout)
        self.namespaces = Informer(kube, NAMESPACES, watch_timeout=settings.watch_timeout)
        self.services.add_handler(self._on_service)
        self.pools.add_handler(self._on_pool)
        self.namespaces.add_handler(self._on_namespace)

        self._lock = threading.RLock()  # guards the allocator and the session state below
        self._allocator: Allocator | None = None
        self._config: Config | None = None
        self._config_input: Any = None
        self._pool_written: dict[str, float] = {}
        self._released: dict[ServiceKey, tuple[str, ...]] = {}
        self._session = 0
        self._decided_in = threading.local()  # the session a worker's current reconcile began in
        self._active = threading.Event()
        self._restored = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        for inf in (self.namespaces, self.pools, self.services):
            inf.start()
        for i in range(self.settings.workers):
            t = threading.Thread(target=self._worker, name=f"worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for inf in (self.namespaces, self.pools, self.services):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not inf.wait_for_sync(left):
                return False
        return True

    def has_synced(self) -> bool:
        return all(i.has_synced() for i in (self.namespaces, self.pools, self.services))

    def stop(self) -> None:
        self._stop.set()
        self.stop_leading()
        self.queue.shutdown()
        for inf in (self.services, self.pools, self.namespaces):
            inf.stop()
        for t in self._threads:
            t.join(5)
        self.events.stop()

    def ready(self) -> bool | str:
        if not self.has_synced():
            return "caches not synced"
        if self._active.is_set() and not self._restored:
            return "restoring assignments"
        return True

    def _writing_allowed(self) -> bool:
        # Fencing: a write decided in an earlier leadership session (a retry still running when
        # this replica stepped down and then led again) must not land in the new one, whose
        # allocator was restored without it and may already have given that address to another
        # Service. Found by the chaos test on the real API server; the new session requeues the
        # key.
        session = getattr(self._decided_in, "session", self._session)
        return session == self._session and self._active.is_set() and self._may_write()

    # -- leadership session ---------------------------------------------------------------
    def start_leading(self) -> None:
        """Rebuild the allocator from the stores (restore everything), then start allocating."""
        if not self.wait_for_sync(timeout=None if not self._stop.is_set() else 0):
            return
        started = time.monotonic()
        # Decide from the server's current state, not from a view an API outage left behind
        # (writes of the previous session may have landed since; see Informer.relist).
        for inf in (self.namespaces, self.pools, self.services):
            if not inf.relist(timeout=30):
                log.warning("informer %s: no fresh list; restoring from the cached view", inf.name)
        with self._lock:
            self._session += 1
            self._restored = False
            self._allocator = Allocator()
            self._config_input = None
            self._pool_written.clear()
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
        self.queue.add(CONFIG_KEY)
        for key in self.services.store.list_keys():
            self.queue.add("s:" + key)
        for name in self.pools.store.list_keys():
            self.queue.add("p:" + name)

    def stop_leading(self) -> None:
        with self._lock:
            was = self._active.is_set()
            self._active.clear()
            self._allocator = None
            self._restored = False
        self.metrics.controller_leader.set(0)
        if was:
            log.info("stopped leading: no more writes")

    def _restore_all(self, *, orphans_only: bool = False) -> tuple[int, int]:
        """Register the addresses Services show in their status with the allocator.

        At the start of a session every Service is restored. After a pool change only the
        *orphans* are: Services whose status still shows addresses the allocator does not hold
        for them (a pool that was removed and came back before their clean-up write). Restoring
        them before anything new is allocated keeps an address that is still on the wire from
        being handed to a second Service.
        """
        alloc = self._allocator
        assert alloc is not None
        items: list[tuple[ServiceRequest, tuple[str, ...], str | None]] = []
        for svc in self.services.store.list():
            if not (is_load_balancer(svc) and class_matches(svc, self.settings.lb_class)):
                continue
            addresses = ingress_addresses(svc)
            if not addresses or (orphans_only and alloc.holding(ServiceKey(_key(svc)))):
                continue
            items.append((self._request_for_restore(svc), addresses, allocated_pool(svc)))
        results = alloc.restore_all(items) if items else {}
        refused = sum(1 for r in results.values() if isinstance(r, Refusal))
        # At session start nobody is displaced (restore_all goes oldest first into an empty
        # allocator); an orphan older than the current holder takes its address back.
        for displaced in alloc.pop_displaced():
            self.queue.add("s:" + displaced)
        return len(results), refused

    def _request_for_restore(self, svc: JsonDict) -> ServiceRequest:
        req = service_request(svc, self._namespace_labels(svc))
        if isinstance(req, ServiceRequest):
            return req
        # A Service with a garbage annotation still holds its address: restore it under a
        # minimal request so nobody else is given that address while the user fixes the typo.
        meta = svc.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        fams = tuple(dict.fromkeys(family_of(a) for a in ingress_addresses(svc)))
        return ServiceRequest(
            key=service_key(ns, name),
            namespace=ns,
            name=name,
            created=str(meta.get("creationTimestamp") or ""),
            ip_families=fams or (Family.IPV4,),
        )

    # -- event handlers (informer threads: only enqueue) ----------------------------------
    def _remember_own_write(self, obj: JsonDict) -> None:
        if obj.get("kind") != "Service":
            return
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        with self._own_lock:
            if len(self._own_writes) > 100_000:  # echoes lost to a relist: start over
                self._own_writes.clear()
            rvs = self._own_writes.setdefault(_key(obj), set())
            if len(rvs) > 4:  # echoes that arrived before we noted them: forget
                rvs.clear()
            rvs.add(rv)

    def _is_own_echo(self, obj: JsonDict) -> bool:
        key = _key(obj)
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        with self._own_lock:
            rvs = self._own_writes.get(key)
            if rvs is None or rv not in rvs:
                return False
            rvs.discard(rv)
            if not rvs:
                del self._own_writes[key]
            return True

    def _on_service(self, t: EventType, old: JsonDict | None, new: JsonDict | None) -> None:
        obj = new or old
        if obj is None:
            return
        if (
            t is EventType.MODIFIED
            and new is not None
            and old is not new
            and self._is_own_echo(new)
        ):
            return
        self.queue.add("s:" + _key(obj))

    def _on_pool(self, _t: EventType, old: JsonDict | None, new: JsonDict | None) -> None:
        self.queue.add(CONFIG_KEY)
        obj = new or old
        if obj is not None:
            self.queue.add("p:" + _key(obj))

    def _on_namespace(self, t: EventType, old: JsonDict | None, new: JsonDict | None) -> None:
        if t is not EventType.MODIFIED or old is None or new is None:
            return
        if _labels(old) == _labels(new):
            return
        name = _key(new)
        for svc in self.services.store.by_index("namespace", name):
            self.queue.add("s:" + _key(svc))

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
                    self._decided_in.session = self._session
                    self._reconcile(key)
                self.queue.forget(key)
            except NotLeaderError:
                self.queue.forget(key)
            except ApiError as exc:
                # 409: the object moved on since we read it; decide again from the newer one.
                log.log(
                    logging.DEBUG if exc.status == 409 else logging.WARNING,
                    "reconcile %s failed: %s",
                    key,
                    exc,
                    extra={"key": key, "error": str(exc)},
                )
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("reconcile %s: unexpected error", key, extra={"key": key})
                self.queue.add_rate_limited(key)
            finally:
                self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
                self.queue.done(key)

    def _reconcile(self, key: str) -> None:
        if key == CONFIG_KEY:
            self._reconcile_config()
        elif key.startswith("s:"):
            self._reconcile_service(key[2:])
        elif key.startswith("p:"):
            self._reconcile_pool(key[2:])

    def sync_once(self, key: str) -> None:
        """Run one reconcile now (tests); raises what the reconcile raises."""
        self._reconcile(key)

    # -- configuration --------------------------------------------------------------------
    def _config_inputs(self) -> dict[str, PoolInput]:
        out: dict[str, PoolInput] = {}
        for pool in self.pools.store.list():
            meta = pool.get("metadata") or {}
            out[str(meta.get("name"))] = PoolInput(
                spec=pool.get("spec") or {}, labels=_labels(pool)
            )
        return out

    def _apply_config(self) -> tuple[ServiceKey, ...] | None:
        """Give the allocator the current pools; None when nothing changed."""
        assert self._allocator is not None
        inputs = self._config_inputs()
        frozen = {n: (repr(i.spec), tuple(sorted(i.labels.items()))) for n, i in inputs.items()}
        if frozen == self._config_input:
            return None
        self._config_input = frozen
        config = build_config(inputs)
        self._config = config
        for name, errors in config.invalid.items():
            log.warning(
                "pool %s is invalid: %s",
                name,
                "; ".join(str(e) for e in errors),
                extra={"pool": name, "reason": "Invalid"},
            )
        return self._allocator.set_pools(
            config.pools.values(), config.conflicting.keys(), config.invalid.keys()
        )

    def _reconcile_config(self) -> None:
        with self._lock:
            if self._allocator is None:
                return
            released = self._apply_config()
            if released is not None:
                self._restore_all(orphans_only=True)
        if released is None:
            return
        log.info("pool configuration changed", extra={"count": len(released)})
        # Level-triggered: every Service is re-evaluated (a refused one may fit now); most of
        # these reconciles find nothing to do and write nothing.
        for skey in self.services.store.list_keys():
            self.queue.add("s:" + skey)
        for name in self.pools.store.list_keys():
            self.queue.add("p:" + name)

    # -- Services -------------------------------------------------------------------------
    def _namespace_labels(self, svc: JsonDict) -> dict[str, str]:
        ns = self.namespaces.store.get(str((svc.get("metadata") or {}).get("namespace")))
        return _labels(ns) if ns is not None else {}

    def _reconcile_service(self, key: str) -> None:
        svc = self.services.store.get(key)
        skey = ServiceKey(key)
        if svc is None:
            with self._lock:
                self._released.pop(skey, None)
                released = self._release(skey)
            if released:
                log.info(
                    "released (Service deleted)",
                    extra={"service": key, "address": ",".join(released)},
                )
            return
        if not class_matches(svc, self.settings.lb_class) and is_load_balancer(svc):
            # Another controller's Service: forget it, never write to it.
            with self._lock:
                self._release(skey)
            return
        if not is_load_balancer(svc):
            self._release_service(svc, skey)
            return
        req = service_request(svc, self._namespace_labels(svc))
        if isinstance(req, FieldError):
            self._report_invalid(svc, skey, req)
            return
        self._assign(svc, req)

    def _write_service(self, svc: JsonDict, desired: ServiceStatus) -> WriteOutcome:
        """Status now; the pool annotation, if it changes too, in a later pass of the same key.

        The key goes to the back of the queue, so after a burst (a restart of a big cluster, a
        pool change) every Service gets its address before any bookkeeping write is made.
        """
        outcome = self.writer.write_service(svc, desired, defer_metadata=True)
        if outcome.metadata_pending:
            self.queue.add("s:" + _key(svc))
        return outcome

    def _release(self, key: ServiceKey) -> tuple[str, ...]:
        if self._allocator is None:
            raise NotLeaderError(key)
        held = self._allocator.holding(key)
        released = self._allocator.release(key)
        if held is not None:
            self._pool_changed(held.pool)
        return released

    def _pool_changed(self, pool: str) -> None:
        self.queue.add("p:" + pool)

    def _release_service(self, svc: JsonDict, key: ServiceKey) -> None:
        """A Service that stopped being a LoadBalancer: forget it and clear what we wrote."""
        with self._lock:
            released = self._release(key)
            # The API server may already have cleared the ingress itself (it does when the type
            # changes); remember what was released until the clean-up write has been made, so
            # the event names it even if that write needs another pass.
            if released:
                self._released[key] = released
        ours = allocated_pool(svc) is not None or _our_condition(svc) is not None
        if not ours:
            with self._lock:
                self._released.pop(key, None)
            return
        outcome = self._write_service(svc, ServiceStatus((), None, None))
        with self._lock:
            addresses = self._released.pop(key, ()) or ingress_addresses(svc)
        if outcome.wrote and addresses:
            self.events.event(
                svc, EventKind.NORMAL, "IPReleased", f"released {', '.join(addresses)}"
            )
            log.info("released", extra={"service": key, "address": ",".join(addresses)})

    def _report_invalid(self, svc: JsonDict, key: ServiceKey, err: FieldError) -> None:
        # Keep whatever the Service holds (no churn while the user fixes a typo); say why.
        with self._lock:
            if self._allocator is None:
                raise NotLeaderError(key)
            held = self._allocator.holding(key)
        desired = ServiceStatus(
            addresses=held.addresses if held is not None else (),
            pool=held.pool if held is not None else None,
            condition=Condition(False, "InvalidRequest", str(err)),
        )
        outcome = self._write_service(svc, desired)
        if outcome.wrote and _condition_changed(outcome.before, desired.condition):
            self.metrics.allocation_failures_total.labels(reason="InvalidRequest").inc()
            self.events.event(svc, EventKind.WARNING, "InvalidRequest", str(err))
            log.warning(
                "invalid request: %s", err, extra={"service": key, "reason": "InvalidRequest"}
            )

    def _assign(self, svc: JsonDict, req: ServiceRequest) -> None:
        current = ingress_addresses(svc)
        with self._lock:
            alloc = self._allocator
            if alloc is None:
                raise NotLeaderError(req.key)
            before = alloc.holding(req.key)
            if before is None and current:
                # Addresses we did not know about (written by a previous leader after our
                # restore, or a Service that arrived with a status): take them over if allowed.
                alloc.restore(req, current, allocated_pool(svc))
                for displaced in alloc.pop_displaced():
                    self.queue.add("s:" + displaced)
                before = alloc.holding(req.key)
            result = alloc.allocate(req)
            # A refused Service keeps its addresses in the allocator until the write that
            # clears its status has been made: until then they are still on the wire, and
            # giving them to another Service would put one address on two Services.
            release_after_write = isinstance(result, Refusal) and alloc.holding(req.key) is not None
            for pool in {p.pool for p in (before, result) if isinstance(p, Allocation)}:
                self._pool_changed(pool)
        if isinstance(result, Allocation):
            desired = ServiceStatus(
                addresses=result.addresses,
                pool=result.pool,
                condition=Condition(
                    True, "Assigned", f"{', '.join(result.addresses)} from pool {result.pool}"
                ),
            )
        else:
            desired = ServiceStatus((), None, Condition(False, result.reason.value, result.message))
        outcome = self._write_service(svc, desired)
        if release_after_write:
            with self._lock:
                if self._allocator is alloc:
                    self._release(req.key)
        if not outcome.wrote:
            return
        self._announce(outcome.before, req.key, result, desired)

    def _announce(
        self,
        before_obj: JsonDict,
        key: ServiceKey,
        result: Allocation | Refusal,
        desired: ServiceStatus,
    ) -> None:
        """Events and logs for a write that changed something a user sees."""
        before = ingress_addresses(before_obj)
        if isinstance(result, Allocation):
            if before == result.addresses:
                return
            self.metrics.allocations_total.labels(result="assigned").inc()
            if before:
                self.events.event(
                    before_obj,
                    EventKind.WARNING,
                    "ClearAssignment",
                    f"{', '.join(before)} no longer valid for this Service; reassigned",
                )
            self.events.event(
                before_obj,
                EventKind.NORMAL,
                "IPAllocated",
                f"assigned {', '.join(result.addresses)} from pool {result.pool}",
            )
            log.info(
                "assigned",
                extra={
                    "service": key,
                    "pool": result.pool,
                    "address": ",".join(result.addresses),
                },
            )
            return
        if not _condition_changed(before_obj, desired.condition) and not before:
            return
        self.metrics.allocations_total.labels(result="refused").inc()
        self.metrics.allocation_failures_total.labels(reason=result.reason.value).inc()
        if before:
            self.events.event(
                before_obj,
                EventKind.WARNING,
                "ClearAssignment",
                f"cleared {', '.join(before)}: {result.message}",
            )
        self.events.event(
            before_obj,
            EventKind.WARNING,
            "AllocationFailed",
            f"{result.reason.value}: {result.message}",
        )
        log.warning(
            "allocation failed: %s",
            result.message,
            extra={"service": key, "reason": result.reason.value},
        )

    # -- pool status ----------------------------------------------------------------------
    def _reconcile_pool(self, name: str) -> None:
        pool = self.pools.store.get(name)
        if pool is None:
            with self._lock:
                self._pool_written.pop(name, None)
            for family in ("ipv4", "ipv6"):  # a deleted pool leaves no stale series behind
                for gauge in (
                    self.metrics.pool_addresses_total,
                    self.metrics.pool_addresses_assigned,
                ):
                    with contextlib.suppress(KeyError):
                        gauge.remove(name, family)
            return
        now = self.clock.monotonic()
        with self._lock:
            if self._allocator is None or self._config is None:
                raise NotLeaderError(name)
            last = self._pool_written.get(name)
            if last is not None and now - last < self.settings.pool_status_interval:
                self.queue.add_after("p:" + name, self.settings.pool_status_interval - (now - last))
                return
            status = self._pool_status(name)
        written = self.writer.write_pool_status(pool, status)
        if written is not None:
            with self._lock:
                self._pool_written[name] = self.clock.monotonic()

    def _pool_status(self, name: str) -> JsonDict:
        assert self._allocator is not None and self._config is not None
        config = self._config
        stamp = now_rfc3339()
        pool = self.pools.store.get(name) or {}
        conds: Any = (pool.get("status") or {}).get("conditions") or []
        invalid = config.invalid.get(name)
        others = config.conflicting.get(name)
        counters = None
        try:
            counters = self._allocator.counters(name)
        except KeyError:
            counters = None
        status: JsonDict = {}
        for fam, suffix in ((Family.IPV4, "IPv4"), (Family.IPV6, "IPv6")):
            fc = counters.of(fam) if counters is not None else None
            assigned = fc.assigned if fc is not None else 0
            available = fc.available if fc is not None else 0
            total = fc.total if fc is not None else 0
            status[f"assigned{suffix}"] = render_count(assigned)
            status[f"available{suffix}"] = render_count(available)
            fam_label = suffix.lower()
            self.metrics.pool_addresses_total.labels(pool=name, family=fam_label).set(float(total))
            self.metrics.pool_addresses_assigned.labels(pool=name, family=fam_label).set(
                float(assigned)
            )
        wanted: list[tuple[str, Condition]] = [
            (
                "Ready",
                Condition(True, "Ready", "addresses can be assigned")
                if not invalid and not others
                else Condition(
                    False,
                    "Invalid" if invalid else "Conflicting",
                    "see the Invalid condition" if invalid else "see the Conflicting condition",
                ),
            ),
            (
                "Conflicting",
                Condition(True, "Overlap", f"overlaps pool(s) {', '.join(sorted(others))}")
                if others
                else Condition(False, "NoOverlap", "no overlap with other pools"),
            ),
            (
                "Invalid",
                Condition(True, "InvalidSpec", "; ".join(str(e) for e in invalid))
                if invalid
                else Condition(False, "Valid", "spec is valid"),
            ),
        ]
        for ctype, cond in wanted:
            merged = merge_conditions(conds, ctype, cond, stamp)
            if merged is not None:
                conds = merged
        status["conditions"] = conds
        return status


def _our_condition(svc: Mapping[str, Any]) -> JsonDict | None:
    conds = (svc.get("status") or {}).get("conditions") or []
    for c in conds if isinstance(conds, list) else []:
        if isinstance(c, dict) and c.get("type") == CONDITION_TYPE:
            return c
    return None


def _condition_changed(svc: Mapping[str, Any], want: Condition | None) -> bool:
    return (
        merge_conditions((svc.get("status") or {}).get("conditions"), CONDITION_TYPE, want, "")
        is not None
    )


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def _namespace_of(obj: JsonDict) -> list[str]:
    return [str((obj.get("metadata") or {}).get("namespace") or "")]

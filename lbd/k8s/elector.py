"""Leader election on a ``coordination.k8s.io/v1`` Lease.

API::

    cfg = ElectionConfig(namespace="lbd-system", name="lbd-controller", identity="pod-a",
                         lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)
    elector = LeaderElector(kube, cfg, clock=clock,
                            on_started_leading=fn(), on_stopped_leading=fn(),
                            on_new_leader=fn(identity))
    threading.Thread(target=elector.run, args=(stop_event,)).start()
    elector.is_leader()     # True only while our last successful renewal is fresh
    elector.try_acquire_or_renew()  # one step (tests drive this with a FakeClock)

Why our own and not the Python client's: that one measures the lease's age with wall-clock
timestamps written by another machine and sleeps blocking. Like client-go's
``tools/leaderelection``:

- A lease held by someone else is considered expired only when *we* have seen its record stay
  unchanged for ``leaseDurationSeconds`` on our monotonic clock: clock skew between machines
  cannot make two replicas leaders.
- ``lease_duration > renew_deadline > retry_period`` is validated. A leader that has not renewed
  successfully for ``renew_deadline`` gives up, and :meth:`is_leader` is already False from that
  moment on, so writers that check it stop *before* another replica can take the lease (which
  needs ``lease_duration`` of silence): two replicas never write at once.
- Updates carry the ``resourceVersion`` we read (optimistic concurrency): of two candidates
  racing for an expired lease exactly one update succeeds.
- A renewal counts from the moment its *write* was sent (the conservative end: others see the
  record change no earlier). It used to count from before the read, so after an API stall
  longer than ``renew_deadline`` a renewal that then succeeded still left :meth:`is_leader`
  False until the next one, a retry period during which the controller's writes were refused
  (issue 10, point 2). And a renewal that succeeds too late to count (its write itself stalled)
  is followed at once by another instead of a retry period of silence.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from lbd.k8s.client import LEASES, ApiError, JsonDict, Kube
from lbd.k8s.meta import micro_time
from lbd.runtime.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ElectionConfig:
    """Where the Lease lives, who we are, and the timing (seconds)."""

    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.identity:
            raise ValueError("identity: must not be empty")
        if not self.lease_duration > self.renew_deadline:
            raise ValueError("lease_duration: must be greater than renew_deadline")
        if not self.renew_deadline > self.retry_period:
            raise ValueError("renew_deadline: must be greater than retry_period")
        if not self.retry_period > 0:
            raise ValueError("retry_period: must be positive")


@dataclass(eq=False)
class LeaderElector:
    """Acquires and renews one Lease; tells callbacks when leadership starts and stops.

    The fields are what it is given; its record of the Lease starts in ``__post_init__``."""

    kube: Kube
    config: ElectionConfig
    _: KW_ONLY
    clock: Clock = SYSTEM_CLOCK
    on_started_leading: Callable[[], None] | None = None
    on_stopped_leading: Callable[[], None] | None = None
    on_new_leader: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._observed: tuple[Any, ...] | None = None  # the record as we last saw it
        self._observed_at = 0.0  # monotonic time we saw it change
        self._observed_rv: str | None = None
        self._observed_lease: JsonDict | None = None
        self._renewed_at: float | None = None  # monotonic time of our last successful write
        self._leading = False  # we hold the lease as of our last successful write
        self._notified = False  # what the callbacks were last told
        self._leader: str | None = None

    @property
    def path(self) -> str:
        return LEASES.path(namespace=self.config.namespace, name=self.config.name)

    @property
    def leader(self) -> str | None:
        """Holder identity as last observed (may be stale)."""
        return self._leader

    def is_leader(self) -> bool:
        """True while we hold the lease and our last renewal is younger than renew_deadline."""
        with self._lock:
            return (
                self._leading
                and self._renewed_at is not None
                and self.clock.monotonic() - self._renewed_at < self.config.renew_deadline
            )

    # -- one step -------------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        """Read the lease and take or renew it if we may; True when we hold it afterwards."""
        cfg = self.config
        now = self.clock.monotonic()
        try:
            lease: JsonDict | None = self.kube.get(self.path)
        except ApiError as exc:
            if exc.status != 404:
                log.warning("lease: read failed: %s", exc, extra={"error": str(exc)})
                return False
            lease = None
        if lease is None:
            return self._create(self.clock.monotonic())

        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (
            holder,
            spec.get("renewTime"),
            spec.get("acquireTime"),
            spec.get("leaseTransitions"),
            spec.get("leaseDurationSeconds"),
        )
        with self._lock:
            if record != self._observed:
                self._observed = record
                self._observed_at = now
            observed_at = self._observed_at
        self._note_leader(holder)
        duration = float(spec.get("leaseDurationSeconds") or cfg.lease_duration)
        if holder and holder != cfg.identity and now < observed_at + duration:
            with self._lock:
                self._leading = False  # someone else holds it: whatever we had is gone
            return False  # held by another replica and not expired as far as we have seen

        transitions = int(spec.get("leaseTransitions") or 0)
        new_spec = dict(spec)
        new_spec["holderIdentity"] = cfg.identity
        new_spec["leaseDurationSeconds"] = max(1, math.ceil(cfg.lease_duration))
        new_spec["renewTime"] = micro_time()  # informational: nobody's decisions read it
        if holder != cfg.identity:
            new_spec["acquireTime"] = new_spec["renewTime"]
            new_spec["leaseTransitions"] = transitions + 1
        body = dict(lease)
        body["spec"] = new_spec
        sent = self.clock.monotonic()
        try:
            written = self.kube.replace(self.path, body)
        except ApiError as exc:
            log.info("lease: update failed: %s", exc, extra={"error": str(exc)})
            return False
        self._succeeded(written, sent)
        return True

    def _create(self, now: float) -> bool:
        cfg = self.config
        stamp = micro_time()
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": {
                "holderIdentity": cfg.identity,
                "leaseDurationSeconds": max(1, math.ceil(cfg.lease_duration)),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
        try:
            written = self.kube.create(LEASES.path(namespace=cfg.namespace), body)
        except ApiError as exc:
            log.info("lease: create failed: %s", exc, extra={"error": str(exc)})
            return False
        self._succeeded(written, now)
        return True

    def _succeeded(self, written: JsonDict, started: float) -> None:
        spec = written.get("spec") or {}
        with self._lock:
            # Count the renewal from when we *sent* it: the conservative end of the interval.
            self._renewed_at = started
            self._leading = True
            self._observed = (
                spec.get("holderIdentity"),
                spec.get("renewTime"),
                spec.get("acquireTime"),
                spec.get("leaseTransitions"),
                spec.get("leaseDurationSeconds"),
            )
            self._observed_at = started
        self._note_leader(self.config.identity)

    def _note_leader(self, holder: str) -> None:
        if holder and holder != self._leader:
            self._leader = holder
            log.info("lease: leader is %s", holder, extra={"node": holder})
            if self.on_new_leader is not None:
                self.on_new_leader(holder)

    # -- the loop -------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Campaign, lead, and campaign again after losing, until ``stop`` is set."""
        cfg = self.config
        while not stop.is_set():
            # Candidate: try every retry_period until we hold the lease.
            if not self.try_acquire_or_renew():
                self._wait(stop, cfg.retry_period)
                continue
            self._set_leading(True)
            # Leader: renew every retry_period; give up once renew_deadline passes without one.
            while not stop.is_set():
                if self.is_leader():  # a renewal that came too late to count: renew at once
                    self._wait(stop, cfg.retry_period)
                if stop.is_set():
                    break
                if self.try_acquire_or_renew():
                    continue
                if not self.is_leader():
                    log.warning("lease: could not renew within renew_deadline, stepping down")
                    break
            self._set_leading(False)
            if stop.is_set():
                self._release()

    def _wait(self, stop: threading.Event, seconds: float) -> None:
        if self.clock is SYSTEM_CLOCK:
            stop.wait(seconds)
        else:
            self.clock.sleep(seconds)

    def _set_leading(self, leading: bool) -> None:
        with self._lock:
            changed = self._notified != leading
            self._notified = leading
            if not leading:
                self._leading = False
                self._renewed_at = None
        if not changed:
            return
        callback = self.on_started_leading if leading else self.on_stopped_leading
        log.info("lease: %s leading", "started" if leading else "stopped")
        if callback is not None:
            callback()

    def _release(self) -> None:
        """On a clean shutdown, hand the lease over at once (clear the holder)."""
        try:
            lease = self.kube.get(self.path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.config.identity:
                return
            body = dict(lease)
            body["spec"] = dict(spec, holderIdentity="", leaseDurationSeconds=1)
            self.kube.replace(self.path, body)
        except ApiError as exc:
            log.info("lease: release failed: %s", exc, extra={"error": str(exc)})

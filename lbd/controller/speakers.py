"""Is any speaker running? The one "not announced" answer no speaker can give (``NoLiveSpeaker``).

API::

    live = SpeakerLiveness(kube, namespace="lbd-system",
                           selector="app.kubernetes.io/component=speaker", grace=10.0,
                           on_change=controller.recheck_announced)
    live.informer          # the owner starts, syncs and stops it with its other informers
    live.start(); live.stop()
    live.state()           # SpeakerState, or None until the Pods have been listed
    speaker_state(total, ready, down_for, grace, where) -> SpeakerState     # pure

Source: the speaker Pods' ``Ready`` condition, in the controller's own namespace. The kubelet
keeps it (from the speaker's readiness probe) whether lbd runs or not, so watching it costs the
cluster no write, and it is what a user sees in ``kubectl get pods -n lbd-system``. The lab
provides the same Pods on both of its control planes (docs/LAB.md).

A grace period (``--speaker-grace``, 10 s) keeps a rolling restart of a one-node cluster, or
the moment between a DaemonSet update's last old Pod and first new one, from flapping every
Service's condition: "no speaker" is said only once no Pod has been Ready for that long. A
controller that starts counts from its start, so it never claims it before the grace either.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from lbd.controller.announce import SpeakerState
from lbd.k8s.cache import ViewCache
from lbd.k8s.client import PODS, Kube
from lbd.k8s.informer import Informer
from lbd.k8s.pod import ObservedPod, observe_pod
from lbd.runtime.clock import SYSTEM_CLOCK, Clock


def speaker_state(
    total: int, ready: int, down_for: float, grace: float, where: str
) -> SpeakerState:
    """Live while a speaker Pod is Ready, or was within ``grace`` seconds (``down_for`` ago)."""
    if ready or down_for < grace:
        return SpeakerState(True)
    if not total:
        return SpeakerState(False, f"no speaker Pod exists ({where}): no node can announce")
    return SpeakerState(
        False,
        f"none of the {total} speaker Pods ({where}) has been Ready for {down_for:.0f}s: "
        "no node can announce",
    )


class SpeakerLiveness:
    """Watches the speaker Pods; calls ``on_change`` when the verdict changes."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        selector: str,
        grace: float,
        on_change: Callable[[], None],
        clock: Clock = SYSTEM_CLOCK,
        watch_timeout: int = 300,
    ) -> None:
        self.where = f"namespace {namespace}, {selector}"
        self.grace = grace
        self.clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._last_ready = clock.monotonic()
        self._verdict: bool | None = None
        self._timer: threading.Timer | None = None
        self.pods: ViewCache[ObservedPod] = ViewCache(
            PODS, observe_pod, on_change=self._pod_changed
        )
        self.informer = Informer(
            kube, PODS, namespace=namespace, label_selector=selector, watch_timeout=watch_timeout
        )
        self.informer.add_handler(self.pods.on_event)

    def state(self) -> SpeakerState | None:
        """None until the Pods are listed (nothing is claimed from an empty cache)."""
        if not self.informer.has_synced():
            return None
        pods = self.pods.values()
        ready = sum(p.ready for p in pods)
        now = self.clock.monotonic()
        with self._lock:
            if ready:
                self._last_ready = now
            down_for = now - self._last_ready
        return speaker_state(len(pods), ready, down_for, self.grace, self.where)

    def _pod_changed(self, old: ObservedPod | None, new: ObservedPod | None) -> None:
        if old is not None and old.ready and (new is None or not new.ready):
            with self._lock:  # it was Ready until now: the grace starts here
                self._last_ready = self.clock.monotonic()
        self._check()

    def _check(self) -> None:
        """A Pod changed, or the grace ran out: tell the controller if the verdict changed,
        and come back when the grace of the last Ready Pod ends."""
        state = self.state()
        if state is None:
            return
        with self._lock:
            changed = self._verdict is not None and self._verdict != state.live
            self._verdict = state.live
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if state.live and not any(p.ready for p in self.pods.values()):
                left = self._last_ready + self.grace - self.clock.monotonic()
                self._timer = threading.Timer(max(0.0, left) + 0.05, self._check)
                self._timer.daemon = True
                self._timer.start()
        if changed:
            self._on_change()

    def start(self) -> None:
        """Judge once the Pods are listed (the owner starts and stops :attr:`informer`)."""
        threading.Thread(target=self._first_check, name="speaker-liveness", daemon=True).start()

    def _first_check(self) -> None:
        if self.informer.wait_for_sync(None):
            self._check()

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

"""The speaker process: builds every part, starts them in order, stops them in reverse.

Kept apart from the CLI so that tests and the lab can run a speaker in-process (one per network
namespace thread) with an injected :class:`~lbd.k8s.client.Kube`.

Start order: health endpoint (so ``/healthz`` answers while the caches fill), link monitor,
membership (peers are learned from Node objects, so it starts empty and fills after the first
pass), responder, status writer, informers, then the reconcile thread, which waits for the
informers' first list before its first pass: deciding from an empty view would withdraw every
VIP on a restart. Until membership has run for ``--dead-after`` the reconciler computes but does
not announce (see :mod:`lbd.speaker.reconciler`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from lbd.core.keyring import DEFAULT_GRACE
from lbd.health import HealthServer
from lbd.k8s.client import Kube, load_kube
from lbd.k8s.events import EventRecorder
from lbd.k8s.speaker_informers import SpeakerCache
from lbd.k8s.speaker_status import StatusWriter
from lbd.metrics import SpeakerMetrics
from lbd.net import capabilities
from lbd.net.keyfile import KeyFileWatcher
from lbd.net.links import (
    EXCLUDED_PREFIXES,
    IFF_BROADCAST,
    IFF_LOOPBACK,
    IFF_NOARP,
    Link,
    LinkMonitor,
    select_interfaces,
)
from lbd.net.membership import Membership
from lbd.net.responder import Responder
from lbd.runtime.clock import SYSTEM_CLOCK, Clock
from lbd.speaker.reconciler import Reconciler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeakerSettings:
    """Everything ``lbd speaker`` is configured with (flags, already validated)."""

    node_name: str
    keys: tuple[bytes, ...]
    key_file: str | None = None  # watched: a rotated key takes effect (lbd.net.keyfile)
    key_grace: float = DEFAULT_GRACE
    kubeconfig: str | None = None
    membership_port: int = 7947
    heartbeat_interval: float = 0.1
    dead_after: float = 0.4
    lb_class: str | None = None
    health_addr: str = "0.0.0.0:7473"
    interfaces_exclude: tuple[str, ...] = ()


def can_answer_l2(link: Link) -> bool:
    """ARP/NDP can be answered here: broadcast-capable, ARP on, not loopback."""
    return bool(link.flags & IFF_BROADCAST) and not link.flags & (IFF_NOARP | IFF_LOOPBACK)


class AnnounceLinks:
    """The link monitor as the reconciler sees it, restricted to interfaces that speak ARP/NDP.

    kube-proxy puts every VIP on a local interface (``lo``, or ``kube-ipvs0`` which is NOARP),
    and such an interface can never carry an answer. The default rule of :mod:`lbd.net.links`
    skips them; this filter also keeps an ``L2Advertisement.interfaces`` list that names one
    from opening a socket that would only ever stay silent.
    """

    def __init__(self, monitor: LinkMonitor) -> None:
        self.monitor = monitor

    def interfaces_up(self) -> frozenset[str]:
        return self.monitor.interfaces_up()

    def resolve(self, vip: str, wanted: tuple[str, ...]) -> tuple[str, ...]:
        links = {n: link for n, link in self.monitor.links().items() if can_answer_l2(link)}
        return select_interfaces(vip, links, wanted, self.monitor.exclude)


class Speaker:
    """One node's speaker: heartbeats, election, announcing, and the few API writes."""

    def __init__(
        self,
        settings: SpeakerSettings,
        *,
        kube: Kube | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.metrics = SpeakerMetrics()
        self.kube = kube or load_kube(settings.kubeconfig)
        if self.kube.observer is None:  # a Kube shared by several speakers (tests): the first
            self.kube.observer = self.metrics.api.observe
        self._stop = threading.Event()
        self._reconciler: Reconciler | None = None
        trigger = self._trigger
        self.links = LinkMonitor(
            exclude=EXCLUDED_PREFIXES + settings.interfaces_exclude, on_change=trigger
        )
        self.membership = Membership(
            node_name=settings.node_name,
            key=settings.keys,
            key_grace=settings.key_grace,
            bind=("0.0.0.0", settings.membership_port),
            interval=settings.heartbeat_interval,
            dead_after=settings.dead_after,
            clock=clock,
            on_change=trigger,
            metrics=self.metrics,
        )
        self.key_watch = (
            KeyFileWatcher(settings.key_file, self.membership.set_keys, metrics=self.metrics)
            if settings.key_file is not None
            else None
        )
        self.responder = Responder(
            node_name=settings.node_name,
            metrics=self.metrics,
            clock=clock,
            on_conflict=self._on_conflict,
            on_announced=self._on_announced,
        )
        self.cache = SpeakerCache(self.kube, on_change=trigger)
        self.events = EventRecorder(self.kube, component="lbd-speaker", host=settings.node_name)
        self.status = StatusWriter(
            self.kube, node_name=settings.node_name, events=self.events, clock=clock
        )
        self.cache.on_rewind(self.status.resync)  # an etcd restore: rewrite the statuses
        self.reconciler = Reconciler(
            node_name=settings.node_name,
            lb_class=settings.lb_class,
            source=self.cache.view,
            heartbeats=self.membership,
            announcer=self.responder,
            links=AnnounceLinks(self.links),
            status=self.status,
            metrics=self.metrics,
            clock=clock,
            warmup=settings.dead_after,
        )
        self._reconciler = self.reconciler
        self.health = HealthServer(
            settings.health_addr,
            healthz=self._healthy,
            readyz=self._ready,
            registry=self.metrics.registry,
        )
        self._thread: threading.Thread | None = None

    # -- callbacks from other threads ----------------------------------------------------
    def _trigger(self) -> None:
        if self._reconciler is not None:
            self._reconciler.trigger()

    def _on_conflict(self, vip: str, mac: str) -> None:
        if self._reconciler is not None:
            self._reconciler.on_conflict(vip, mac)

    def _on_announced(self, vip: str, at: float) -> None:
        if self._reconciler is not None:
            self._reconciler.on_announced(vip, at)

    def _healthy(self) -> bool | str:
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            return "reconcile thread ended"
        return True

    def _ready(self) -> bool | str:
        if not self.cache.has_synced():
            return "informers not synced"
        if not self.reconciler.first_pass_done.is_set():
            return "first election pending"
        return True

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        # said plainly at start: what this speaker can and cannot do with the capabilities it got
        capabilities.report(self.metrics)
        self.health.start()
        self.links.start()
        self.membership.start()
        if self.key_watch is not None:
            self.key_watch.start()
        self.responder.start()
        self.status.start()
        self.cache.start()
        self._thread = threading.Thread(target=self._main, name="reconcile", daemon=True)
        self._thread.start()
        log.info("speaker started", extra={"node": self.settings.node_name})

    def _main(self) -> None:
        while not self._stop.is_set() and not self.cache.wait_for_sync(1.0):
            log.info("waiting for the informers' first list")
        if self._stop.is_set():
            return
        self.reconciler.trigger()
        self.reconciler.run(self._stop)

    def stop(self, grace: float = 0.15) -> None:
        """Leave: ``leaving`` heartbeats, keep answering ``grace`` s, stop answering, shut down."""
        self._stop.set()
        self.reconciler.trigger()
        if self.key_watch is not None:
            self.key_watch.stop()
        self.membership.stop(graceful=True)
        threading.Event().wait(grace)  # a plain wait: _stop is already set
        self.responder.stop()
        log.info("speaker stopped answering", extra={"node": self.settings.node_name})
        self.links.stop()
        # The API clients last, told to stop all at once and not waited for one by one (five
        # informers joined 0.2 s each made a SIGTERMed speaker miss its one-second exit on a
        # busy node): their threads are daemons, and a node must drain with the API down.
        for informer in self.cache.informers:
            informer.stop(0)
        self.status.stop(0.1)
        self.events.stop(0.1)
        self.health.stop()
        log.info("speaker stopped", extra={"node": self.settings.node_name})

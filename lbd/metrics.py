"""Prometheus metrics: the names are a contract (``docs/API.md``, README "Metrics").

Each program builds its metrics on its own :class:`prometheus_client.CollectorRegistry` rather
than the process-global default registry, so that tests (and the lab, which runs several
speakers' code in one interpreter when it wants to) can create as many instances as they like
without "duplicated timeseries" errors.

Decisions (issue 14, point 2):

- No ``*_created`` series: prometheus_client adds a ``_created`` twin to every counter and
  histogram, which doubles the series and means nothing to an alert; they are disabled for the
  whole process when this module is imported.
- One model for allocation outcomes: ``lbd_allocations_total{result,reason}`` counts every
  change of a Service's ``lbd.io/AddressAssigned`` condition that a user sees (result
  ``assigned``, ``refused`` or ``invalid``, reason the condition's reason); there is no second
  counter that could disagree with it (the former ``lbd_allocation_failures_total`` is
  ``sum by (reason) (lbd_allocations_total{result!="assigned"})``).
- ``lbd_failover_seconds`` is what a client feels: from the last heartbeat this node received
  from the old owner to the first gratuitous ARP / unsolicited NA it sent for the VIP (detection
  plus takeover). ``lbd_takeover_seconds`` is the takeover step alone (from noticing the change
  to that announcement), which tells apart a slow detection from a slow node.
- Gauges computed from the informer caches (``lbd_services_waiting``) are evaluated when
  scraped (:class:`ComputedGauge`): a Service the controller writes without a watch echo is
  never missed, and nothing is kept in step by hand.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

API_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
"""Seconds; client-go's ``rest_client_request_duration_seconds`` spans the same range."""


def _version() -> str:
    try:
        return metadata.version("lbd")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


class ComputedGauge(Collector):
    """A gauge whose series are computed when scraped, by ``source`` (set by the program).

    ``source`` returns ``{label values: value}`` (two labels: all lbd needs so far); before it
    is set the gauge has no series.
    """

    def __init__(
        self, name: str, documentation: str, labels: list[str], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.source: Callable[[], Mapping[tuple[str, str], float]] | None = None
        registry.register(self)

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=self.labels)]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        source = self.source
        if source is not None:
            for values, value in sorted(source().items()):
                family.add_metric(list(values), value)
        yield family


@dataclass
class ApiMetrics:
    """Kubernetes API requests of one program (``lbd.k8s.client.Kube.observer``).

    Named after client-go's ``rest_client_requests_total`` / ``..._request_duration_seconds``
    but labelled with the Kubernetes verb and resource, which say what lbd was doing.
    """

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.requests_total = Counter(
            "lbd_api_requests_total",
            "Kubernetes API requests by verb (get, list, watch, create, update, patch, delete), "
            'resource (services, services/status, leases ...) and HTTP code ("error": no '
            "answer: connection refused, reset or timed out)",
            ["verb", "resource", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "lbd_api_request_duration_seconds",
            "Latency of Kubernetes API requests until the answer's headers (a watch: until it "
            "is open), by verb and resource",
            ["verb", "resource"],
            buckets=API_LATENCY_BUCKETS,
            registry=r,
        )

    def observe(self, verb: str, resource: str, code: str, seconds: float) -> None:
        self.requests_total.labels(verb, resource, code).inc()
        self.request_seconds.labels(verb, resource).observe(seconds)


def _build_info(r: CollectorRegistry, component: str) -> Gauge:
    info = Gauge(
        "lbd_build_info",
        "Always 1: the lbd version, the Python it runs on and the component",
        ["version", "python", "component"],
        registry=r,
    )
    info.labels(_version(), platform.python_version(), component).set(1)
    return info


@dataclass
class ControllerMetrics:
    """Metrics the controller exports on ``/metrics``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.build_info = _build_info(r, "controller")
        self.api = ApiMetrics(r)
        self.pool_addresses_total = Gauge(
            "lbd_pool_addresses_total",
            "Addresses the pool can hand out, by family (exact, IPv6 pools included; 0 for a "
            "family the pool has no range of)",
            ["pool", "family"],
            registry=r,
        )
        self.pool_addresses_assigned = Gauge(
            "lbd_pool_addresses_assigned",
            "Addresses of the pool held by at least one Service, by family",
            ["pool", "family"],
            registry=r,
        )
        self.pool_state = Gauge(
            "lbd_pool_state",
            "1 for the state the pool is in (its Ready condition: Ready, Exhausted, "
            "Conflicting, Invalid), 0 for the others",
            ["pool", "state"],
            registry=r,
        )
        self.allocations_total = Counter(
            "lbd_allocations_total",
            "Changes of a Service's lbd.io/AddressAssigned condition, by result (assigned, "
            "refused, invalid) and reason (the condition's reason: Assigned, PoolExhausted, "
            "NoMatchingPool, ...); a repeated decision is not counted again",
            ["result", "reason"],
            registry=r,
        )
        self.services_waiting = ComputedGauge(
            "lbd_services_waiting",
            "LoadBalancer Services of lbd's class without an address, by reason (the "
            "AddressAssigned condition's reason; Pending: not decided yet) and the pool they "
            'ask for ("" when they take any pool)',
            ["reason", "pool"],
            r,
        )
        self.services_unannounced = Gauge(
            "lbd_services_unannounced",
            "Services with an address that no node announces, by reason",
            ["reason"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "lbd_reconcile_seconds",
            "Time spent in one reconcile of one key",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.workqueue_depth = Gauge(
            "lbd_workqueue_depth", "Keys waiting in the work queue", registry=r
        )
        self.controller_leader = Gauge(
            "lbd_controller_leader", "1 when this replica holds the leader lease", registry=r
        )


@dataclass
class SpeakerMetrics:
    """Metrics the speaker exports on ``/metrics``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.build_info = _build_info(r, "speaker")
        self.api = ApiMetrics(r)
        self.speaker_announced = Gauge(
            "lbd_speaker_announced",
            "1 for each VIP this node announces, with the Service it belongs to",
            ["service", "vip", "node"],
            registry=r,
        )
        self.arp_requests_total = Counter(
            "lbd_arp_requests_total", "ARP requests received for owned VIPs", registry=r
        )
        self.arp_replies_total = Counter("lbd_arp_replies_total", "ARP replies sent", registry=r)
        self.ndp_requests_total = Counter(
            "lbd_ndp_requests_total", "Neighbor Solicitations received for owned VIPs", registry=r
        )
        self.ndp_replies_total = Counter(
            "lbd_ndp_replies_total", "Neighbor Advertisements sent in reply", registry=r
        )
        self.garp_sent_total = Counter(
            "lbd_garp_sent_total", "Gratuitous ARP / unsolicited NA frames sent", registry=r
        )
        self.send_errors_total = Counter(
            "lbd_send_errors_total",
            "ARP/NDP replies and announcements the kernel refused to send",
            registry=r,
        )
        self.socket_reopens_total = Counter(
            "lbd_socket_reopens_total",
            "Times a responder socket failed and was reopened (answers stop meanwhile)",
            registry=r,
        )
        self.vip_conflicts_total = Counter(
            "lbd_vip_conflicts_total",
            "Frames from another MAC claiming a VIP this node owns",
            ["vip"],
            registry=r,
        )
        self.handovers_seen_total = Counter(
            "lbd_handovers_seen_total",
            "Frames from another MAC for a VIP right after this node gained it (the previous "
            "owner's last answers: a hand-over, not a conflict)",
            registry=r,
        )
        self.peers_alive = Gauge(
            "lbd_peers_alive", "Speakers (this one included) considered alive", registry=r
        )
        self.peers_known = Gauge(
            "lbd_peers_known",
            "Nodes this speaker sends heartbeats to, itself included (every Node with an "
            "InternalIP): lbd_peers_alive below it means a node whose speaker is not heard",
            registry=r,
        )
        self.failover_seconds = Histogram(
            "lbd_failover_seconds",
            "From the last heartbeat received from a VIP's old owner (gone or leaving) to the "
            "first gratuitous ARP / unsolicited NA this node sent for it: the outage a client "
            "sees, detection included",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1, 1.5, 2.5, 5),
            registry=r,
        )
        self.takeover_seconds = Histogram(
            "lbd_takeover_seconds",
            "From noticing that a VIP's owner is gone to the first gratuitous ARP / "
            "unsolicited NA this node sent for it (the takeover step, detection excluded)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.heartbeats_sent_total = Counter(
            "lbd_heartbeats_sent_total", "Membership heartbeats sent (one per peer)", registry=r
        )
        self.heartbeat_send_errors_total = Counter(
            "lbd_heartbeat_send_errors_total",
            "Membership heartbeats the kernel refused to send (unreachable peer, full buffer)",
            registry=r,
        )
        self.heartbeats_received_total = Counter(
            "lbd_heartbeats_received_total",
            "Membership datagrams received, accepted or not (see lbd_heartbeats_dropped_total)",
            registry=r,
        )
        # Every frame or datagram the speaker does not act on, by reason (enums in
        # lbd.core.arp / lbd.core.ndp / lbd.core.membership): hostile or broken traffic shows here.
        self.arp_dropped_total = Counter(
            "lbd_arp_dropped_total",
            "ARP frames received and not answered, by reason (NotOwned: not a VIP this node "
            "answers for; SenderMac*/SenderIp*: invalid sender, see RFC 826/1122/5227)",
            ["reason"],
            registry=r,
        )
        self.ndp_dropped_total = Counter(
            "lbd_ndp_dropped_total",
            "ICMPv6 frames received and not answered, by reason (RFC 4861 7.1.1 validation, "
            "RFC 4291 source rules, NotOwned)",
            ["reason"],
            registry=r,
        )
        self.heartbeats_dropped_total = Counter(
            "lbd_heartbeats_dropped_total",
            "Membership heartbeats received and not accepted, by reason (KeyMismatch: signed "
            "only with keys this node does not hold; BadMac: a tag of a key it holds does not "
            "verify; Replay, OldBoot, WrongSource, UnknownNode, Malformed, UnknownVersion, Self; "
            "ReceiveBuffer: dropped by the kernel, the socket's buffer was full)",
            ["reason"],
            registry=r,
        )
        self.key_info = Gauge(
            "lbd_membership_key_info",
            "The heartbeat keys in use, by key id (first 4 bytes of the key's SHA-256, hex): "
            "Current (in the key file) or Retiring (left it, accepted until the grace ends); "
            "every key in use signs each heartbeat",
            ["key_id", "state"],
            registry=r,
        )
        self.key_reloads_total = Counter(
            "lbd_membership_key_reloads_total",
            "Changes of the membership key file: Applied (new keys in use) or Rejected "
            "(unusable; the keys in use stay)",
            ["result"],
            registry=r,
        )
        self.receive_buffer_drops_total = Counter(
            "lbd_receive_buffer_drops_total",
            "ARP/NDP frames the kernel dropped because a responder socket's receive buffer was "
            "full (PACKET_STATISTICS); NET_ADMIN lets the buffer grow past net.core.rmem_max",
            registry=r,
        )
        self.capability = Gauge(
            "lbd_speaker_capability",
            "1 if the speaker holds the Linux capability (NET_RAW: answer at all; NET_ADMIN: "
            "large receive buffers; SYS_NICE: real-time priority), else 0",
            ["capability"],
            registry=r,
        )

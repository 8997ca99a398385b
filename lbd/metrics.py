"""Prometheus metrics: the names are a contract (``docs/API.md``).

Each program builds its metrics on its own :class:`prometheus_client.CollectorRegistry` rather
than the process-global default registry, so that tests (and the lab, which runs several
speakers' code in one interpreter when it wants to) can create as many instances as they like
without "duplicated timeseries" errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class ControllerMetrics:
    """Metrics the controller exports on ``/metrics``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.pool_addresses_total = Gauge(
            "lbd_pool_addresses_total",
            "Addresses in the pool (IPv6 pools above 2^53 are capped at 2^53)",
            ["pool", "family"],
            registry=r,
        )
        self.pool_addresses_assigned = Gauge(
            "lbd_pool_addresses_assigned",
            "Addresses of the pool held by at least one Service",
            ["pool", "family"],
            registry=r,
        )
        self.allocations_total = Counter(
            "lbd_allocations_total", "Allocation attempts by result", ["result"], registry=r
        )
        self.allocation_failures_total = Counter(
            "lbd_allocation_failures_total",
            "Refused allocations by reason",
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
        self.services_unannounced = Gauge(
            "lbd_services_unannounced",
            "Services with an address that no node announces, by reason",
            ["reason"],
            registry=r,
        )


@dataclass
class SpeakerMetrics:
    """Metrics the speaker exports on ``/metrics``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.speaker_announced = Gauge(
            "lbd_speaker_announced",
            "1 for each VIP this node announces",
            ["vip", "node"],
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
        self.vip_conflicts_total = Counter(
            "lbd_vip_conflicts_total",
            "Frames from another MAC claiming a VIP this node owns",
            ["vip"],
            registry=r,
        )
        self.peers_alive = Gauge(
            "lbd_peers_alive", "Speakers (this one included) considered alive", registry=r
        )
        self.failover_seconds = Histogram(
            "lbd_failover_seconds",
            "From noticing the old owner gone to the first gratuitous announcement sent",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
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

from __future__ import annotations

from prometheus_client import generate_latest

from lbd.metrics import ControllerMetrics, SpeakerMetrics

CONTROLLER_NAMES = [
    "lbd_pool_addresses_total",
    "lbd_pool_addresses_assigned",
    "lbd_allocations_total",
    "lbd_allocation_failures_total",
    "lbd_reconcile_seconds",
    "lbd_workqueue_depth",
    "lbd_controller_leader",
]
SPEAKER_NAMES = [
    "lbd_speaker_announced",
    "lbd_arp_requests_total",
    "lbd_arp_replies_total",
    "lbd_ndp_requests_total",
    "lbd_ndp_replies_total",
    "lbd_garp_sent_total",
    "lbd_vip_conflicts_total",
    "lbd_peers_alive",
    "lbd_failover_seconds",
]


def test_controller_exports_contract_names() -> None:
    m = ControllerMetrics()
    m.pool_addresses_total.labels(pool="p", family="ipv4").set(256)
    m.allocations_total.labels(result="Assigned").inc()
    m.allocation_failures_total.labels(reason="PoolExhausted").inc()
    text = generate_latest(m.registry).decode()
    for name in CONTROLLER_NAMES:
        assert f"# TYPE {name} " in text, name


def test_speaker_exports_contract_names_and_instances_are_independent() -> None:
    a, b = SpeakerMetrics(), SpeakerMetrics()
    a.speaker_announced.labels(vip="198.18.100.1", node="n1").set(1)
    a.vip_conflicts_total.labels(vip="198.18.100.1").inc()
    text = generate_latest(a.registry).decode()
    for name in SPEAKER_NAMES:
        assert f"# TYPE {name} " in text, name
    assert 'lbd_speaker_announced{node="n1",vip="198.18.100.1"} 1.0' in text
    assert "198.18.100.1" not in generate_latest(b.registry).decode()

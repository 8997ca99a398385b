"""The metrics' registries: no ``_created`` twins, build info, independent instances, and the
API client's verb/resource labels (what an operator filters on)."""

from __future__ import annotations

import platform

import pytest
from prometheus_client import generate_latest

from lbd.k8s.client import verb_and_resource
from lbd.metrics import ControllerMetrics, SpeakerMetrics
from tests.unit.test_monitoring import exported


def test_no_created_series_and_build_info_names_version_and_python() -> None:
    m = ControllerMetrics()
    m.allocations_total.labels("assigned", "Assigned").inc()
    m.api.observe("list", "services", "200", 0.01)
    text = generate_latest(m.registry).decode()
    assert "_created" not in text
    info = [line for line in text.splitlines() if line.startswith("lbd_build_info{")]
    assert len(info) == 1
    assert f'python="{platform.python_version()}"' in info[0]
    assert 'component="controller"' in info[0]
    assert 'version="unknown"' not in info[0]  # installed: the package's version
    assert 'lbd_api_requests_total{code="200",resource="services",verb="list"} 1.0' in text


def test_speaker_instances_are_independent_and_announced_names_the_service() -> None:
    a, b = SpeakerMetrics(), SpeakerMetrics()
    a.speaker_announced.labels(service="ns/web", vip="198.18.100.1", node="n1").set(1)
    a.vip_conflicts_total.labels(vip="198.18.100.1").inc()
    text = generate_latest(a.registry).decode()
    assert 'lbd_speaker_announced{node="n1",service="ns/web",vip="198.18.100.1"} 1.0' in text
    assert "198.18.100.1" not in generate_latest(b.registry).decode()


def test_computed_gauge_is_listed_before_its_source_is_set_and_reads_it_when_scraped() -> None:
    m = ControllerMetrics()
    assert "lbd_services_waiting" in {fam.name for fam in m.registry.collect()}
    assert "lbd_services_waiting{" not in generate_latest(m.registry).decode()
    counts = {("PoolExhausted", "blue"): 2.0}
    m.services_waiting.source = lambda: counts
    assert (
        m.registry.get_sample_value(
            "lbd_services_waiting", {"reason": "PoolExhausted", "pool": "blue"}
        )
        == 2.0
    )
    counts[("PoolExhausted", "blue")] = 0.0
    assert (
        m.registry.get_sample_value(
            "lbd_services_waiting", {"reason": "PoolExhausted", "pool": "blue"}
        )
        == 0.0
    )


def test_exported_names_are_the_scraped_family_names() -> None:
    names = exported()
    assert names["lbd_arp_replies_total"] == "counter"
    assert names["lbd_failover_seconds"] == "histogram"
    assert "lbd_arp_replies" not in names


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/services", None, ("list", "services")),
        ("GET", "/api/v1/services", {"watch": "true"}, ("watch", "services")),
        ("GET", "/api/v1/namespaces/ns/services/web", None, ("get", "services")),
        ("PATCH", "/api/v1/namespaces/ns/services/web/status", None, ("patch", "services/status")),
        ("POST", "/api/v1/namespaces/ns/events", None, ("create", "events")),
        ("GET", "/api/v1/namespaces/ns", None, ("get", "namespaces")),
        ("GET", "/api/v1/namespaces", None, ("list", "namespaces")),
        ("GET", "/api/v1/nodes/n1", None, ("get", "nodes")),
        (
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/lbd-system/leases/lbd-controller",
            None,
            ("update", "leases"),
        ),
        (
            "PUT",
            "/apis/lbd.io/v1beta1/ipaddresspools/p/status",
            None,
            ("update", "ipaddresspools/status"),
        ),
        (
            "DELETE",
            "/apis/lbd.io/v1beta1/namespaces/ns/servicel2statuses/x",
            None,
            ("delete", "servicel2statuses"),
        ),
        ("GET", "/readyz", None, ("get", "-")),
    ],
)
def test_api_requests_are_labelled_with_the_kubernetes_verb_and_resource(
    method: str, path: str, query: dict[str, str] | None, expected: tuple[str, str]
) -> None:
    assert verb_and_resource(method, path, query) == expected

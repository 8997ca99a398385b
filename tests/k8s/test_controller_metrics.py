"""The controller's ``/metrics`` after a scripted sequence, value by value (issue 14, point 2).

A real ``lbd controller`` process on both API servers: four Services fill a four-address
IPv4-only pool, a fifth is refused (PoolExhausted), one asks for a pool that does not exist,
one carries an address that is not one; then a Service is deleted and the refused one gets its
address. Every metric an operator reads about that is compared with what happened.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from lbd.k8s.client import SERVICES
from tests.k8s.controller_support import (
    CONTROLLER_TOKEN,
    ROOT,
    controller_argv,
    kube_for,
    pool,
    service,
    wait_addresses,
    wait_condition,
    wait_for,
)
from tests.k8s.test_controller_cli import free_port, http_get

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[str, Samples]:
    code, text = http_get(port, "/metrics")
    assert code == 200
    samples: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def select(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """The series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return {lab: v for (n, lab), v in samples.items() if n == name and want <= lab}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def by(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """``name``'s series keyed by the values of ``keys`` (the only labels it has)."""
    out = {}
    for labels, v in select(samples, name).items():
        d = dict(labels)
        assert set(d) == set(keys), (name, d)
        out[tuple(d[k] for k in keys)] = v
    return out


def settle(port: int, check: Mapping[str, object], timeout: float = 15.0) -> Samples:
    """Scrape until every ``check`` (metric -> expected ``by`` dict) holds; then return it."""
    keys = {
        "lbd_allocations_total": ("result", "reason"),
        "lbd_services_waiting": ("reason", "pool"),
        "lbd_pool_addresses_assigned": ("pool", "family"),
        "lbd_pool_state": ("pool", "state"),
    }
    last: dict[str, object] = {}

    def ok() -> Samples | None:
        _, samples = scrape(port)
        last.clear()
        last.update({m: by(samples, m, *keys[m]) for m in check})
        return samples if last == dict(check) else None

    try:
        return wait_for(ok, timeout, "metrics")
    except AssertionError:
        raise AssertionError(f"metrics never settled: got {last}, want {dict(check)}") from None


def test_controller_metrics_follow_allocations_refusals_and_releases(lab, tmp_path: Path):
    admin = kube_for(lab)
    pool(admin, "met", ["198.18.100.0/30"])  # 4 addresses, IPv4 only
    kubeconfig = lab.write_kubeconfig(tmp_path / "kubeconfig", CONTROLLER_TOKEN)
    port = free_port()
    proc = subprocess.Popen(
        controller_argv(kubeconfig, "--health-addr", f"127.0.0.1:{port}", "--leader-elect"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for name in ("s1", "s2", "s3", "s4"):
            service(admin, name)
            wait_addresses(admin, name, timeout=20)
        service(admin, "s5")
        service(admin, "nopool", annotations={"lbd.io/address-pool": "absent"})
        service(admin, "bad", annotations={"lbd.io/loadBalancerIPs": "banana"})
        wait_condition(admin, "s5", "PoolExhausted")
        wait_condition(admin, "nopool", "NoMatchingPool")
        wait_condition(admin, "bad", "InvalidRequest")

        full = {
            ("met", "Ready"): 0.0,
            ("met", "Exhausted"): 1.0,
            ("met", "Conflicting"): 0.0,
            ("met", "Invalid"): 0.0,
        }
        refused = {
            ("refused", "PoolExhausted"): 1.0,
            ("refused", "NoMatchingPool"): 1.0,
            ("invalid", "InvalidRequest"): 1.0,
        }
        waiting = {("NoMatchingPool", "absent"): 1.0, ("InvalidRequest", ""): 1.0}
        expected: dict[str, object] = {
            "lbd_allocations_total": {("assigned", "Assigned"): 4.0, **refused},
            "lbd_services_waiting": {("PoolExhausted", ""): 1.0, **waiting},
            "lbd_pool_addresses_assigned": {("met", "ipv4"): 4.0, ("met", "ipv6"): 0.0},
            "lbd_pool_state": full,
        }
        samples = settle(port, expected)
        text, _ = scrape(port)
        assert "_created" not in text
        total = by(samples, "lbd_pool_addresses_total", "pool", "family")
        assert total == {("met", "ipv4"): 4.0, ("met", "ipv6"): 0.0}
        assert value(samples, "lbd_controller_leader") == 1.0
        [info] = select(samples, "lbd_build_info", component="controller")
        assert dict(info)["version"] not in ("", "unknown")

        # API client: every status write is counted once, with its code, and timed
        writes = select(samples, "lbd_api_requests_total", resource="services/status")
        assert writes and all(dict(lab_)["code"].startswith("2") for lab_ in writes)
        assert sum(writes.values()) >= 7  # 4 assigned, 3 refused
        for labels, n in writes.items():
            d = dict(labels)
            timed = value(
                samples,
                "lbd_api_request_duration_seconds_count",
                verb=d["verb"],
                resource="services/status",
            )
            assert timed == n
        lists = select(samples, "lbd_api_requests_total", verb="list", resource="services")
        assert lists and all(dict(lab_)["code"] == "200" for lab_ in lists)
        assert select(samples, "lbd_api_requests_total", verb="watch", resource="services")

        # a release: the refused Service gets the freed address; nothing waits on the pool
        admin.delete(SERVICES.path(namespace="default", name="s1"))
        wait_addresses(admin, "s5", timeout=20)
        expected["lbd_allocations_total"] = {("assigned", "Assigned"): 5.0, **refused}
        expected["lbd_services_waiting"] = waiting  # the pool stays full: 4 of 4
        settle(port, expected)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)

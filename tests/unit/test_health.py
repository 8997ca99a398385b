"""The health endpoint: probes follow their callables, metrics are served."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from lbd.health import HealthServer, parse_addr
from lbd.metrics import ControllerMetrics


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_probes_and_metrics():
    ready: list[bool | str] = ["caches not synced"]
    metrics = ControllerMetrics()
    metrics.controller_leader.set(1)
    server = HealthServer("127.0.0.1:0", readyz=lambda: ready[0], registry=metrics.registry)
    server.start()
    try:
        assert _get(server.port, "/healthz") == (200, "ok\n")
        assert _get(server.port, "/readyz") == (503, "caches not synced\n")
        ready[0] = True
        assert _get(server.port, "/readyz")[0] == 200
        code, text = _get(server.port, "/metrics")
        assert code == 200
        assert "lbd_controller_leader 1.0" in text
        assert _get(server.port, "/nope")[0] == 404
    finally:
        server.stop()


def test_a_check_that_raises_is_unhealthy_not_a_crash():
    def boom() -> bool:
        raise RuntimeError("wedged")

    server = HealthServer("127.0.0.1:0", healthz=boom)
    server.start()
    try:
        code, text = _get(server.port, "/healthz")
        assert code == 503
        assert "wedged" in text
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("addr", "want"),
    [("0.0.0.0:7472", ("0.0.0.0", 7472)), (":80", ("0.0.0.0", 80)), ("[::1]:9", ("::1", 9))],
)
def test_parse_addr(addr, want):
    assert parse_addr(addr) == want


@pytest.mark.parametrize("addr", ["7472", "host:", "host:99999", "host:x"])
def test_parse_addr_rejects_garbage(addr):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_addr(addr)

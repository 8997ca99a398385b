"""``lbd controller`` as a process: flags, health endpoint, metrics, JSON logs, clean stop."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.k8s.controller_support import (
    CONTROLLER_TOKEN,
    ROOT,
    controller_argv,
    kube_for,
    pool,
    service,
    wait_addresses,
    wait_for,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def test_controller_process_serves_health_metrics_and_json_logs(lab, tmp_path: Path):
    admin = kube_for(lab)
    pool(admin, "lab", ["198.18.100.0/28"])
    service(admin, "web")
    kubeconfig = lab.write_kubeconfig(tmp_path / "kubeconfig", CONTROLLER_TOKEN)
    port = free_port()
    proc = subprocess.Popen(
        controller_argv(
            kubeconfig,
            "--health-addr",
            f"127.0.0.1:{port}",
            "--leader-elect",
            "--identity",
            "cli-test",
        ),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_addresses(admin, "web", timeout=20) == ["198.18.100.0"]
        wait_for(lambda: http_get(port, "/readyz")[0] == 200, 10, "/readyz 200")
        assert http_get(port, "/healthz")[0] == 200

        def metrics() -> str | None:
            code, text = http_get(port, "/metrics")
            return (
                text
                if code == 200
                and 'lbd_pool_addresses_assigned{family="ipv4",pool="lab"} 1.0' in text
                else None
            )

        text = wait_for(metrics, 10, "pool metrics")
        assert 'lbd_pool_addresses_total{family="ipv4",pool="lab"} 16.0' in text
        assert "lbd_controller_leader 1.0" in text
        assert 'lbd_allocations_total{reason="Assigned",result="assigned"} 1.0' in text
        assert "lbd_reconcile_seconds_count" in text
        assert "lbd_workqueue_depth" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    records = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assigned = [r for r in records if r["msg"] == "assigned"]
    assert assigned and assigned[0]["service"] == "default/web"
    assert assigned[0]["address"] == "198.18.100.0"
    assert assigned[0]["pool"] == "lab"
    lease = admin.get("/apis/coordination.k8s.io/v1/namespaces/lbd-system/leases/lbd-controller")
    assert lease["spec"]["holderIdentity"] == "", "a clean stop hands the lease over at once"


def test_invalid_election_timing_is_refused_with_the_field(lab, tmp_path: Path):
    kubeconfig = lab.write_kubeconfig(tmp_path / "kubeconfig", CONTROLLER_TOKEN)
    proc = subprocess.run(
        controller_argv(kubeconfig, "--leader-elect", "--renew-deadline", "20"),
        cwd=ROOT,
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr == b"lbd controller: --lease-duration: must be greater than --renew-deadline\n"
    )

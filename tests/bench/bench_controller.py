"""Controller benchmark: assignment throughput, restart time, address churn, peak memory.

    .venv/bin/python tests/bench/bench_controller.py [--services 10000] [--workers 8]
        [--control-plane stand-in|real]

1. The API server: the in-process stand-in, or with ``--control-plane real`` the real etcd,
   kube-apiserver and kube-controller-manager (``make k8s``); either way with CRDs and RBAC
   loaded and the controller running under its service-account token. The Services are made
   with ``allocateLoadBalancerNodePorts: false``: a real API server has 2 768 node ports.
2. Raw rate: status patches per second on Services, straight from ``--workers`` client threads
   in a separate process (what the API server absorbs from one client; the yardstick).
3. ``--services`` LoadBalancer Services are created, then ``lbd controller`` is started as a
   subprocess; we time until every Service has an address (watching from this process).
4. The controller is stopped and started again: time until ``/readyz`` answers 200, and the
   number of Services whose address changed (must be 0) once its queue has drained.
5. Peak RSS of each controller process (``VmHWM`` from ``/proc/PID/status``).
6. Liveness (issue 10): a fresh lab with ``--services`` Services and a pool that holds all but
   ``--waiting`` of them; once those wait (PoolExhausted), ``--free`` holders are deleted: the
   time until as many waiting Services hold addresses, and the reconciles the controller spent
   meanwhile (``lbd_reconcile_seconds_count`` from its ``/metrics``). Without a waiting index
   that would be of the order of every Service per freed address.

Prints figures; the last line is one JSON object. Never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lbd.k8s.client import SERVICES, JsonDict, PatchType, load_kube  # noqa: E402
from lbd.k8s.informer import EventType, Informer  # noqa: E402
from lbd.k8s.service import observe_service  # noqa: E402
from tests.k8s.controller_support import (  # noqa: E402
    CONTROLLER_TOKEN,
    controller_argv,
    kube_for,
    pool,
    service_body,
    start_lab,
)


def vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tracker:
    """Counts Services with an address, and remembers each one's addresses."""

    def __init__(self, namespace: str = "bench") -> None:
        self.namespace = namespace
        self.addresses: dict[str, tuple[str, ...]] = {}
        self.annotated: set[str] = set()
        self.changes = 0
        self.modified = 0
        self.cond = threading.Condition()

    def __call__(self, t: EventType, old: JsonDict | None, new: JsonDict | None) -> None:
        obj = new or old
        if obj is None or obj["metadata"]["namespace"] != self.namespace:
            return
        key = obj["metadata"]["name"]
        addrs = observe_service(new).addresses if new is not None else ()
        with self.cond:
            if t is EventType.MODIFIED and old is not new:
                self.modified += 1
            prev = self.addresses.get(key, ())
            if prev and addrs != prev:
                self.changes += 1
            if addrs:
                self.addresses[key] = addrs
            if new is not None and "lbd.io/ip-allocated-from-pool" in (
                new["metadata"].get("annotations") or {}
            ):
                self.annotated.add(key)
            self.cond.notify_all()

    def wait_count(self, n: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.addresses) >= n, timeout)

    def wait_annotated(self, n: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.annotated) >= n, timeout)


def raw_client(kubeconfig: str, count: int, workers: int) -> float:
    """Status patches per second on the ``raw`` Services, from ``workers`` threads, as the
    controller's service account (the same identity and RBAC checks as the controller)."""
    kube = load_kube(kubeconfig)

    def patch(i: int) -> None:
        kube.patch(
            SERVICES.path(namespace="raw", name=f"r{i}", subresource="status"),
            {"status": {"loadBalancer": {"ingress": [{"ip": f"198.18.200.{i % 250}"}]}}},
            patch=PatchType.MERGE,
        )

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(patch, range(min(workers, count))))  # warm the connection pool
        t0 = time.perf_counter()
        list(ex.map(patch, range(count)))
    return count / (time.perf_counter() - t0)


def open_server(control_plane: str) -> tuple[Any, Callable[[], None]]:
    """The API server to measure on, and how to stop it."""
    if control_plane == "stand-in":
        lab = start_lab()
        return lab, lab.stop
    from lbd.lab.control_plane import ControlPlane, RealApiServer

    deploy = ROOT / "deploy/base"
    plane = ControlPlane(
        manifests=[
            ROOT / "crds",
            deploy / "namespace.yaml",
            deploy / "serviceaccounts.yaml",
            deploy / "rbac.yaml",
        ]
    ).start()
    print(f"real control plane {plane.version.get('gitVersion')} in {plane.startup_seconds:.1f}s")
    # No fault proxy: clients go straight to kube-apiserver, which is what is measured.
    real = RealApiServer(plane, proxy=False).start()
    real.add_token(CONTROLLER_TOKEN, "system:serviceaccount:lbd-system:lbd-controller")

    def close() -> None:
        real.stop()
        plane.stop()

    return real, close


def reconciles(port: int) -> float:
    """``lbd_reconcile_seconds_count`` from the controller's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("lbd_reconcile_seconds_count"):
                return float(line.split()[-1])
    return 0.0


def quiet_reconciles(port: int, quiet: float = 1.5) -> float:
    """The reconcile count once it has not moved for ``quiet`` seconds (the queue is idle)."""
    last, since = reconciles(port), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.1)
        now = reconciles(port)
        if now != last:
            last, since = now, time.monotonic()
    return last


def create_services(admin: Any, ns: str, n: int, workers: int) -> None:
    with ThreadPoolExecutor(workers) as ex:
        list(
            ex.map(
                lambda i: admin.create(
                    SERVICES.path(namespace=ns),
                    service_body(f"s{i}", ns, allocateLoadBalancerNodePorts=False),
                ),
                range(n),
            )
        )


def liveness_case(
    n: int, waiting: int, free: int, workers: int, control_plane: str
) -> dict[str, Any]:
    """Phase 6: freed addresses go to waiting Services without re-deciding everything."""
    server, close_server = open_server(control_plane)
    admin = kube_for(server)
    tmp = Path(tempfile.mkdtemp(prefix="lbd-bench-live-"))
    kubeconfig = server.write_kubeconfig(tmp / "kubeconfig", CONTROLLER_TOKEN)
    holders = n - waiting
    last = 0xC6120000 + holders - 1  # 198.18.0.0 + holders - 1
    end = f"198.18.{(last >> 8) & 255}.{last & 255}"
    pool(admin, "full", [f"198.18.0.0-{end}"])
    admin.create("/api/v1/namespaces", {"metadata": {"name": "live"}})
    tracker = Tracker(namespace="live")
    inf = Informer(admin, SERVICES)
    inf.add_handler(tracker)
    inf.start()
    inf.wait_for_sync(60)
    create_services(admin, "live", n, workers)
    port = free_port()
    proc = subprocess.Popen(
        controller_argv(
            kubeconfig,
            "--health-addr",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "controller.log", "wb"),  # noqa: SIM115
    )
    try:
        ok = tracker.wait_count(holders, 900)

        def pool_waiting() -> int:
            st = admin.get("/apis/lbd.io/v1beta1/ipaddresspools/full").get("status") or {}
            return int(st.get("waitingServices") or 0)

        deadline = time.monotonic() + 300
        while pool_waiting() < waiting and time.monotonic() < deadline:
            time.sleep(0.2)
        before_rec = quiet_reconciles(port)  # the annotation pass and pool status are done
        holding = sorted(k for k, v in tracker.addresses.items() if v)
        victims = holding[:free]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(lambda k: admin.delete(SERVICES.path(namespace="live", name=k)), victims))
        served = tracker.wait_count(holders + free, 120)  # counts every Service ever served
        took = time.perf_counter() - t0
        spent = quiet_reconciles(port) - before_rec  # incl. the annotation pass of the served
        waiting_after = pool_waiting()
    finally:
        proc.terminate()
        proc.wait(30)
        inf.stop()
        close_server()
    print(
        f"liveness: {n} Services, {waiting} waiting on a full pool, {free} holders deleted: "
        f"{free} waiting Services served in {took:.2f}s (complete={served and ok}); "
        f"{spent:.0f} reconciles spent ({spent / free:.1f} per freed address); "
        f"{waiting_after} still waiting"
    )
    return {
        "liveness_services": n,
        "liveness_waiting": waiting,
        "liveness_freed": free,
        "liveness_served_seconds": round(took, 3),
        "liveness_reconciles": int(spent),
        "liveness_reconciles_per_freed_address": round(spent / free, 2),
        "liveness_complete": bool(served and ok),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--control-plane",
        choices=("stand-in", "real"),
        default="stand-in",
        help="the in-process stand-in, or real etcd + kube-apiserver (make k8s)",
    )
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--waiting", type=int, default=1000, help="phase 6: Services left waiting")
    ap.add_argument("--free", type=int, default=100, help="phase 6: holders deleted")
    ap.add_argument("--only-liveness", action="store_true", help="run phase 6 only")
    ap.add_argument("--raw", type=int, default=2000, help="status patches for the raw rate")
    ap.add_argument("--raw-client", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.raw_client:
        print(raw_client(args.raw_client, args.raw, args.workers))
        return 0
    n = args.services
    if args.only_liveness:
        live = liveness_case(n, args.waiting, args.free, args.workers, args.control_plane)
        print(json.dumps(live))
        return 0

    server, close_server = open_server(args.control_plane)
    admin = kube_for(server)
    tmp = Path(tempfile.mkdtemp(prefix="lbd-bench-"))
    kubeconfig = server.write_kubeconfig(tmp / "kubeconfig", CONTROLLER_TOKEN)
    pool(admin, "bench", ["198.18.0.0/17"])
    for ns in ("bench", "raw"):
        admin.create("/api/v1/namespaces", {"metadata": {"name": ns}})

    # Watches every Service (as the controller will): its cost is part of both measurements.
    tracker = Tracker()
    inf = Informer(admin, SERVICES)
    inf.add_handler(tracker)
    inf.start()
    inf.wait_for_sync(60)

    # -- raw status-patch rate --------------------------------------------------------------
    raw_names = [f"r{i}" for i in range(args.raw)]
    with ThreadPoolExecutor(args.workers) as ex:
        list(
            ex.map(
                lambda nm: admin.create(
                    SERVICES.path(namespace="raw"),
                    # Only a LoadBalancer may show an ingress (a real API server refuses it on
                    # a ClusterIP Service); another class, so the controller leaves them alone.
                    service_body(
                        nm,
                        "raw",
                        loadBalancerClass="example.com/raw",
                        allocateLoadBalancerNodePorts=False,
                    ),
                ),
                raw_names,
            )
        )

    # The patching client runs in its own process, as the controller does: in this process it
    # would fight the in-process API server for the interpreter lock and understate the rate.
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--raw-client",
            str(kubeconfig),
            "--raw",
            str(args.raw),
            "--workers",
            str(args.workers),
        ],
        capture_output=True,
        check=True,
        timeout=600,
    )
    raw_rate = float(out.stdout.decode().split()[-1])
    print(f"raw status patches: {raw_rate:.0f}/s ({args.workers} threads)")

    # -- create the Services (controller not running yet) --------------------------------------
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as ex:
        list(
            ex.map(
                lambda i: admin.create(
                    SERVICES.path(namespace="bench"),
                    service_body(f"s{i}", "bench", allocateLoadBalancerNodePorts=False),
                ),
                range(n),
            )
        )
    print(f"created {n} Services in {time.perf_counter() - t0:.1f}s")

    def start_controller() -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        proc = subprocess.Popen(
            controller_argv(
                kubeconfig,
                "--health-addr",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / f"controller-{port}.log", "wb"),  # noqa: SIM115
        )
        return proc, port

    # -- first run: assign everything -------------------------------------------------------
    proc, port = start_controller()
    t_start = time.perf_counter()
    while not ready(port) and proc.poll() is None:
        time.sleep(0.02)
    t_ready = time.perf_counter()
    done = tracker.wait_count(n, 600)
    t_done = time.perf_counter()
    assign_s = t_done - t_start
    assign_rate = n / (t_done - t_ready) if done else 0.0
    rss1 = vm_hwm_kb(proc.pid)
    cpu1 = cpu_seconds(proc.pid)
    print(f"controller CPU during the first run: {cpu1:.1f}s of {assign_s:.1f}s")
    print(
        f"first start: ready {t_ready - t_start:.2f}s, all {n} assigned {assign_s:.1f}s "
        f"after start ({assign_rate:.0f}/s after ready), complete={done}"
    )
    # The pool annotations follow the addresses (lower priority); wait for them too, so that the
    # restart below starts from a settled cluster.
    annotated = tracker.wait_annotated(n, 600)
    annotated_s = time.perf_counter() - t_start
    print(f"all annotations written {annotated_s:.1f}s after start, complete={annotated}")
    rss1 = max(rss1, vm_hwm_kb(proc.pid))
    before = dict(tracker.addresses)
    proc.terminate()
    proc.wait(30)
    requests_before = server.request_count
    modified_before = tracker.modified

    # -- restart ----------------------------------------------------------------------------
    proc, port = start_controller()
    t_start = time.perf_counter()
    while not ready(port) and proc.poll() is None:
        time.sleep(0.01)
    restart_ready = time.perf_counter() - t_start
    time.sleep(3)  # its queue drains: every Service is reconciled once
    rss2 = vm_hwm_kb(proc.pid)
    proc.terminate()
    proc.wait(30)
    inf.stop()
    after = dict(tracker.addresses)
    changed = sum(1 for k, v in before.items() if after.get(k) != v) + tracker.changes
    rewritten = tracker.modified - modified_before
    print(
        f"restart: ready in {restart_ready:.2f}s; address changes: {changed}; Services "
        f"written: {rewritten}; API requests: {server.request_count - requests_before}"
    )
    ratio = assign_rate / raw_rate if raw_rate else 0.0
    print(f"peak RSS: {rss1 / 1024:.0f} MB first run, {rss2 / 1024:.0f} MB after restart")
    print(f"assignment rate / raw status-patch rate: {ratio:.2f}")
    close_server()
    live = liveness_case(n, args.waiting, args.free, args.workers, args.control_plane)
    result: dict[str, Any] = {
        "control_plane": args.control_plane,
        "services": n,
        "raw_status_patch_per_s": round(raw_rate, 1),
        "assign_all_seconds": round(assign_s, 2),
        "assign_per_s": round(assign_rate, 1),
        "annotate_all_seconds": round(annotated_s, 2),
        "ratio_vs_raw": round(ratio, 3),
        "restart_ready_seconds": round(restart_ready, 2),
        "address_changes_on_restart": changed,
        "services_written_on_restart": rewritten,
        "peak_rss_mb": round(max(rss1, rss2) / 1024, 1),
        "complete": done,
        **live,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

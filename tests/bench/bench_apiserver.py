"""Throughput of the lab API server.

The server runs as its own process (``lbd lab apiserver``), as in the lab, so the client's work
does not share its interpreter lock. Measured, each for a fixed number of requests:

- get of one Service: official client and raw keep-alive HTTP
- list of 10 000 Services: raw HTTP (bytes), and the official client (which deserialises them)
- status merge patch of a Service: official client from one thread, and raw keep-alive HTTP
- watch fan-out: 20 watchers on Services while one writer patches status as fast as it can;
  events/s delivered in total, and whether delivery kept up with the write rate

Usage: ``.venv/bin/python tests/bench/bench_apiserver.py [--services N] [--patches N]``.
Prints figures, then one JSON line. Never asserts on time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


class Server:
    """``lbd lab apiserver`` in a process of its own (``extra``: more of its flags)."""

    def __init__(self, workdir: Path, extra: tuple[str, ...] = ()) -> None:
        kubeconfig = workdir / "kubeconfig"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lbd",
                "lab",
                "apiserver",
                "--listen",
                "127.0.0.1:0",
                "--kubeconfig-out",
                str(kubeconfig),
                "--history",
                "50000",
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the API server did not start")
        config = yaml.safe_load(kubeconfig.read_text())
        self.url = config["clusters"][0]["cluster"]["server"]
        self.token = config["users"][0]["user"]["token"]
        hostport = self.url.split("//")[1]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.kubeconfig = kubeconfig

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Raw:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, server: Server) -> None:
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
        self.headers = {"Authorization": f"Bearer {server.token}"}

    def call(self, method: str, path: str, body: Any = None, ctype: str = "") -> bytes:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = ctype or "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        out = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {out[:200]!r}")
        return out


SVC = "/api/v1/namespaces/default/services"


def _service(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{i}", "labels": {"app": "bench"}},
        # no node ports: thousands of Services would exhaust the 30000-32767 range, as on a
        # real kube-apiserver (the stand-in allocates them since issue 11)
        "spec": {
            "type": "LoadBalancer",
            "allocateLoadBalancerNodePorts": False,
            "ports": [{"port": 80, "name": "http"}],
        },
    }


def _status(i: int) -> dict[str, Any]:
    return {"status": {"loadBalancer": {"ingress": [{"ip": f"198.18.{100 + i // 250}.{i % 250}"}]}}}


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--patches", type=int, default=3000)
    parser.add_argument("--client-requests", type=int, default=1000)
    parser.add_argument("--watchers", type=int, default=20)
    args = parser.parse_args()

    from kubernetes import client, config

    results: dict[str, Any] = {"services": args.services}
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        try:
            raw = Raw(server)
            t0 = time.perf_counter()
            for i in range(args.services):
                raw.call("POST", SVC, _service(i))
            results["create_raw_per_s"] = rate(args.services, time.perf_counter() - t0)
            print(f"create (raw keep-alive):        {results['create_raw_per_s']:>9} req/s")

            n = args.client_requests
            t0 = time.perf_counter()
            for i in range(n):
                raw.call("GET", f"{SVC}/svc-{i % args.services}")
            results["get_raw_per_s"] = rate(n, time.perf_counter() - t0)
            print(f"get (raw keep-alive):           {results['get_raw_per_s']:>9} req/s")

            api = config.new_client_from_config(str(server.kubeconfig))  # type: ignore[no-untyped-call]
            v1: Any = client.CoreV1Api(api)
            t0 = time.perf_counter()
            for i in range(n):
                v1.read_namespaced_service(f"svc-{i % args.services}", "default")
            results["get_client_per_s"] = rate(n, time.perf_counter() - t0)
            print(f"get (official client):          {results['get_client_per_s']:>9} req/s")

            lists = 5
            t0 = time.perf_counter()
            for _ in range(lists):
                size = len(raw.call("GET", SVC))
            dt = (time.perf_counter() - t0) / lists
            results["list_raw_seconds"] = round(dt, 4)
            results["list_bytes"] = size
            print(
                f"list {args.services} (raw):             {dt * 1000:>9.1f} ms "
                f"({size / 1e6:.1f} MB)"
            )
            t0 = time.perf_counter()
            listed = v1.list_namespaced_service("default")
            dt = time.perf_counter() - t0
            # every Service created, besides the cluster's own default/kubernetes
            ours = [i for i in listed.items if i.metadata.name != "kubernetes"]
            assert len(ours) == args.services
            results["list_client_seconds"] = round(dt, 3)
            print(f"list {args.services} (official client): {dt * 1000:>9.1f} ms")

            t0 = time.perf_counter()
            for i in range(n):
                v1.patch_namespaced_service_status(
                    f"svc-{i % args.services}",
                    "default",
                    _status(i),
                    _content_type="application/merge-patch+json",
                )
            results["status_patch_client_per_s"] = rate(n, time.perf_counter() - t0)
            print(
                f"status patch (official client): {results['status_patch_client_per_s']:>9} req/s"
            )

            t0 = time.perf_counter()
            for i in range(args.patches):
                raw.call(
                    "PATCH",
                    f"{SVC}/svc-{i % args.services}/status",
                    _status(i + 1),
                    "application/merge-patch+json",
                )
            results["status_patch_raw_per_s"] = rate(args.patches, time.perf_counter() - t0)
            print(f"status patch (raw keep-alive):  {results['status_patch_raw_per_s']:>9} req/s")

            results.update(_fanout(server, raw, args))
            api.close()
        finally:
            server.stop()
    print(json.dumps(results))
    return 0


def _fanout(server: Server, raw: Raw, args: argparse.Namespace) -> dict[str, Any]:
    """20 watchers from the current version; one writer patches; count delivered events."""
    rv = json.loads(raw.call("GET", f"{SVC}?limit=1"))["metadata"]["resourceVersion"]
    n = args.patches
    counts = [0] * args.watchers
    done_at = [0.0] * args.watchers
    ready = threading.Barrier(args.watchers + 1)

    def watcher(idx: int) -> None:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
        conn.request(
            "GET",
            f"{SVC}?watch=true&resourceVersion={rv}&timeoutSeconds=120",
            headers={"Authorization": f"Bearer {server.token}"},
        )
        resp = conn.getresponse()
        ready.wait()
        while counts[idx] < n:
            line = resp.readline()
            if not line:
                break
            counts[idx] += 1
        done_at[idx] = time.perf_counter()
        conn.close()

    threads = [
        threading.Thread(target=watcher, args=(i,), daemon=True) for i in range(args.watchers)
    ]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    for i in range(n):
        raw.call(
            "PATCH",
            f"{SVC}/svc-{i % args.services}/status",
            _status(i + 7),
            "application/merge-patch+json",
        )
    write_s = time.perf_counter() - t0
    for t in threads:
        t.join(120)
    deliver_s = max(done_at) - t0
    delivered = sum(counts)
    out = {
        "fanout_watchers": args.watchers,
        "fanout_writes_per_s": rate(n, write_s),
        "fanout_events_per_s": rate(delivered, deliver_s),
        "fanout_delivered": delivered,
        "fanout_expected": n * args.watchers,
        "fanout_lag_seconds": round(deliver_s - write_s, 3),
    }
    print(
        f"watch fan-out ({args.watchers} watchers):    {out['fanout_events_per_s']:>9} events/s "
        f"delivered while writing {out['fanout_writes_per_s']} patches/s; "
        f"{delivered}/{n * args.watchers} events, last one {out['fanout_lag_seconds']} s after "
        "the last write"
    )
    return out


if __name__ == "__main__":
    sys.exit(main())

"""How long ``lbd status`` takes to answer on a cluster of 10 000 LoadBalancer Services.

The cluster: one pool (status written), N Services each with an address and its
``lbd.io/AddressAssigned`` condition, N ServiceL2Status objects (who announces each), and the
API server either the real kube-apiserver + etcd (``--control-plane real``, default when
``make k8s`` built them) or the lab's stand-in in its own process (``stand-in``), so the
server never shares the measuring interpreter's lock.

Measured (median of ``--runs``):

- ``read``: :func:`lbd.k8s.snapshot_read.read_snapshot`, one list per kind, the kinds
  listed at once (the I/O, the JSON decoding and the typed readers);
- ``decide+render``: :func:`lbd.tools.status.build_status` and the table;
- ``command``: the whole ``lbd status -o json`` as a user runs it (a new process: interpreter
  start, imports, kubeconfig, read, print), and ``command_cpu``, the CPU time that process
  used: what the command costs where the API server has cores of its own (here both share
  the same cores, so the wall time also holds the server's encoding of the lists).

Usage: ``.venv/bin/python tests/bench/bench_status.py [--services N] [--control-plane ...]``.
Prints figures, then one JSON line. Never asserts on time (target: about 1 s, issue 15).

Where the time went, and what was done (10 000 Services, real kube-apiserver; per-phase timing,
cProfile, py-spy, the server's CPU from /proc and its storage metrics; figures in
docs/OPERATIONS.md): the lists were paged, and kube-apiserver reads every page after the first
from etcd (several seconds of its CPU for a custom resource): now one unpaged list per kind,
which its watch cache serves. The cyclic GC walked the million freshly decoded objects again and
again: paused for the command. The standard library decoded the 24 MB (half of it
managedFields): msgspec now, leaving managedFields out of the two big kinds. Importing
``kubernetes`` for its kubeconfig loader took 0.3 s: a kubeconfig with static credentials is
read without it. The Service reader built the allocator's request nobody here reads: it is
built when asked. What remains is the interpreter's start and imports, the decoding and typed
reading of 20 000 objects, and, on these two shared cores, the API server's encoding of the
lists (about 0.7 s of its CPU, the ServiceL2Statuses the slowest: a custom resource's JSON).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lbd.k8s.client import SERVICEL2STATUSES, SERVICES, ApiError, load_kube  # noqa: E402
from lbd.k8s.meta import rfc3339  # noqa: E402
from lbd.k8s.snapshot_read import read_snapshot  # noqa: E402
from lbd.tools.status import build_status, render_table  # noqa: E402
from tests.bench.bench_apiserver import Server  # noqa: E402
from tests.k8s.controller_support import service_body  # noqa: E402


def stand_in(workdir: Path) -> tuple[Path, Callable[[], None]]:
    server = Server(workdir, ("--crds", str(ROOT / "crds")))
    return server.kubeconfig, server.stop


def real(workdir: Path) -> tuple[Path, Callable[[], None]]:
    from lbd.lab.control_plane import ControlPlane, RealApiServer

    # No kube-controller-manager: with 10 000 Services its endpoint-slice and garbage
    # collectors kept a quarter of a core busy minutes after populating, on the two cores the
    # measured command shares (in a cluster it runs on the control-plane nodes).
    plane = ControlPlane(manifests=[ROOT / "crds"], controllers=()).start()
    print(f"real control plane {plane.version.get('gitVersion')} in {plane.startup_seconds:.1f}s")
    server = RealApiServer(plane, proxy=False).start()  # no fault proxy: kube-apiserver itself
    kubeconfig = server.write_kubeconfig(workdir / "kubeconfig")

    def stop() -> None:
        server.stop()
        plane.stop()

    return kubeconfig, stop


def populate_slice(kubeconfig: str, first: int, last: int, workers: int) -> None:
    """Services ``first..last-1``, each with its address, condition and owner node (one
    process: the client's JSON work would otherwise be the bottleneck under one GIL)."""
    kube = load_kube(kubeconfig)
    stamp = rfc3339()

    def retried(call: Callable[[], Any]) -> None:
        # a loaded machine: kube-apiserver may not answer within the read timeout; a retried
        # create that finds its object is done
        for attempt in range(6):
            try:
                call()
                return
            except ApiError as exc:
                if exc.status == 409:
                    return
                if not exc.retryable or attempt == 5:
                    raise
                time.sleep(0.5 * 2**attempt)

    def one(i: int) -> None:
        name = f"s{i}"
        ip = f"198.18.{i // 256}.{i % 256}"
        retried(
            lambda: kube.create(
                SERVICES.path(namespace="bench"),
                service_body(name, "bench", allocateLoadBalancerNodePorts=False),
            )
        )
        retried(
            lambda: kube.patch(
                SERVICES.path(namespace="bench", name=name, subresource="status"),
                {
                    "status": {
                        "loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]},
                        "conditions": [
                            {
                                "type": "lbd.io/AddressAssigned",
                                "status": "True",
                                "reason": "Assigned",
                                "message": f"{ip} from pool bench",
                                "lastTransitionTime": stamp,
                            }
                        ],
                    }
                },
            )
        )
        retried(
            lambda: kube.create(
                SERVICEL2STATUSES.path(namespace="bench"),
                {
                    "apiVersion": "lbd.io/v1beta1",
                    "kind": "ServiceL2Status",
                    "metadata": {"name": name, "namespace": "bench"},
                    "spec": {},
                },
            )
        )
        retried(
            lambda: kube.patch(
                SERVICEL2STATUSES.path(namespace="bench", name=name, subresource="status"),
                {
                    "status": {
                        "node": f"n{i % 5}",
                        "serviceName": name,
                        "serviceNamespace": "bench",
                        "interfaces": [{"name": "eth0"}],
                        "vips": [ip],
                        "since": stamp,
                    }
                },
            )
        )

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(one, range(first, last)))


def populate(kubeconfig: str, n: int, workers: int, processes: int) -> None:
    """A full pool's worth of Services, each with its address, condition and owner node."""
    kube = load_kube(kubeconfig)
    kube.create(
        "/apis/lbd.io/v1beta1/ipaddresspools",
        {
            "apiVersion": "lbd.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "bench"},
            "spec": {"addresses": ["198.18.0.0/17"]},
        },
    )
    kube.patch(
        "/apis/lbd.io/v1beta1/ipaddresspools/bench/status",
        {"status": {"assignedIPv4": n, "availableIPv4": 32768 - n, "waitingServices": 0}},
    )
    kube.create("/api/v1/namespaces", {"metadata": {"name": "bench"}})
    kube.close()
    step = -(-n // processes)
    with ProcessPoolExecutor(processes) as ex:
        futures = [
            ex.submit(populate_slice, kubeconfig, lo, min(n, lo + step), workers)
            for lo in range(0, n, step)
        ]
        for f in futures:
            f.result()


def machine_busy(window: float = 1.0) -> float:
    """The share of this machine's CPU time that was busy during ``window`` seconds."""

    def totals() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    busy0, all0 = totals()
    time.sleep(window)
    busy1, all1 = totals()
    return (busy1 - busy0) / max(1, all1 - all0)


def settle(limit: float = 120.0, quiet: float = 0.05) -> float:
    """Wait until the machine is quiet (the API server done with what populating left it:
    its caches and its Go and etcd housekeeping kept a core busy for up to a minute after
    190 s of writes); the seconds waited. Measured figures are of a cluster at rest."""
    started = time.monotonic()
    while time.monotonic() - started < limit and machine_busy() > quiet:
        pass
    return time.monotonic() - started


def cpu_reference() -> float:
    """Seconds for a fixed piece of pure-Python work (ten million additions): this machine's
    speed varies by a factor of two from one minute to the next (0.86-1.66 s measured while
    idle), so every figure above is printed with it, to be compared at equal speed."""
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - started


def median_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--control-plane", choices=("stand-in", "real"), default="real")
    ap.add_argument("--workers", type=int, default=8, help="threads per populating process")
    ap.add_argument("--processes", type=int, default=4, help="populating processes")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lbd-bench-status-"))
    kubeconfig, stop = (real if args.control_plane == "real" else stand_in)(work)
    try:
        t0 = time.perf_counter()
        populate(str(kubeconfig), args.services, args.workers, args.processes)
        kube = load_kube(str(kubeconfig))
        print(
            f"populated {args.services} Services + ServiceL2Statuses in "
            f"{time.perf_counter() - t0:.1f}s ({args.control_plane})"
        )
        print(f"the machine was quiet {settle():.0f} s later")
        read_s, snap = median_of(args.runs, lambda: read_snapshot(kube))
        assert len(snap.services) == args.services, len(snap.services)
        decide_s, text = median_of(args.runs, lambda: render_table(build_status(snap)))
        assert text.count("\nbench/s") == args.services
        command = [
            sys.executable,
            "-m",
            "lbd",
            "status",
            "--kubeconfig",
            str(kubeconfig),
            "-o",
            "json",
        ]

        cpu: list[float] = []

        def run_command() -> dict[str, Any]:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            res = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            return dict(json.loads(res.stdout))

        command_s, data = median_of(args.runs, run_command)
        command_cpu_s = statistics.median(cpu)
        assert len(data["services"]) == args.services
        baseline = [sys.executable, "-c", "import lbd.cli, lbd.k8s.client"]
        imports_s, _ = median_of(args.runs, lambda: subprocess.run(baseline, check=True, cwd=ROOT))
        reference_s, _ = median_of(args.runs, cpu_reference)
        kube.close()
    finally:
        stop()
        shutil.rmtree(work, ignore_errors=True)  # a benchmark leaves no folder behind
    print(f"read (one list per kind):       {read_s * 1000:.0f} ms")
    print(f"decide + render table:          {decide_s * 1000:.0f} ms")
    print(
        f"lbd status -o json (process):   {command_s * 1000:.0f} ms "
        f"(of which interpreter + imports {imports_s * 1000:.0f} ms)"
    )
    print(
        f"  its own CPU time:              {command_cpu_s * 1000:.0f} ms (the rest of the wall "
        "time: waiting for the API server, which shares this machine's cores)"
    )
    print(f"CPU reference (10M additions):  {reference_s * 1000:.0f} ms (this machine's speed)")
    print(
        json.dumps(
            {
                "bench": "status",
                "control_plane": args.control_plane,
                "services": args.services,
                "read_ms": round(read_s * 1000),
                "decide_render_ms": round(decide_s * 1000),
                "command_ms": round(command_s * 1000),
                "command_cpu_ms": round(command_cpu_s * 1000),
                "startup_ms": round(imports_s * 1000),
                "cpu_reference_ms": round(reference_s * 1000),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

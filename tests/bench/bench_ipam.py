"""Allocator benchmark: throughput, per-operation cost vs pool size and vs held count, memory.

Run: ``.venv/bin/python tests/bench/bench_ipam.py`` (``--quick`` for a smaller smoke run).
Prints one figure per line; the last line is one JSON object with every figure. Never asserts on
time: the numbers are for people (and the README), not a pass/fail gate.

What is measured (per-operation figures are CPU time of this process, so that other work on the
machine does not inflate them; the bulk figure is given as wall and CPU time):

* ``alloc_100k_s``: 100 000 Services allocated into two IPv4 /16 pools plus an IPv6 /64 pool
  (two thirds IPv4, one third IPv6), wall time of the allocate calls only.
* ``alloc_us_<pool>`` / ``release_us_<pool>``: the same work (200 fresh allocations, then 200
  releases, on a new allocator, repeated) in a /24, a /16 and a /64 pool. Constant cost is the
  claim: no step enumerates a pool.
* ``op_us_held_1k`` / ``op_us_held_100k``: one allocate + one release of a fresh Service in a
  /64 while 1 000 and 100 000 addresses are held.
* ``bytes_per_held``: tracemalloc growth per held address while 100 000 are allocated, counting
  the allocator's own structures (the ServiceRequest objects belong to the caller and are created
  before tracing starts; ``bytes_per_request`` reports them separately).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lbd.core.config import parse_pool
from lbd.core.ipam import Allocator
from lbd.core.model import (
    Allocation,
    Family,
    Pool,
    ServiceRequest,
    service_key,
)


def make_pool(name: str, *addresses: str) -> Pool:
    p = parse_pool(name, {"addresses": list(addresses)})
    assert isinstance(p, Pool), p
    return p


def make_services(n: int, prefix: str, v6_every: int = 0) -> list[ServiceRequest]:
    out = []
    for i in range(n):
        fam = Family.IPV6 if v6_every and i % v6_every == 0 else Family.IPV4
        name = f"{prefix}{i}"
        out.append(
            ServiceRequest(
                key=service_key("bench", name),
                namespace="bench",
                name=name,
                created="2026-01-01T00:00:00Z",
                ip_families=(fam,),
            )
        )
    return out


def big_pools() -> list[Pool]:
    return [
        make_pool("v4-a", "198.18.0.0/16"),
        make_pool("v4-b", "198.19.0.0/16"),
        make_pool("v6", "2001:db8::/64"),
    ]


def bench_bulk(n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for ``n`` allocations; CPU time is the fairer figure when
    other work shares the machine."""
    a = Allocator()
    a.set_pools(big_pools())
    services = make_services(n, "s", v6_every=3)
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    for s in services:
        if not isinstance(a.allocate(s), Allocation):
            raise SystemExit(f"unexpected refusal for {s.key}")
    return time.perf_counter() - start, time.process_time() - cpu


def cycle_us(a: Allocator, family: Family, rounds: int) -> float:
    """Average microseconds of allocate + release of a fresh Service."""
    services = make_services(rounds, f"c{family}-", v6_every=1 if family is Family.IPV6 else 0)
    start = time.process_time()
    for s in services:
        a.allocate(s)
        a.release(s.key)
    return (time.process_time() - start) / rounds * 1e6


def prefill(a: Allocator, held: int, family: Family) -> None:
    for s in make_services(held, "held-", v6_every=1 if family is Family.IPV6 else 0):
        if not isinstance(a.allocate(s), Allocation):
            raise SystemExit("prefill refused")


def bench_pool_sizes(rounds: int) -> dict[str, float]:
    """Same work in every pool (200 fresh allocations, then 200 releases, on a new allocator,
        repeated), so only the pool size differs. Compare within a family: IPv6 costs more per
    address (128-bit ints, longer text) whatever the pool size."""
    out = {}
    batch = 200
    repeats = max(1, rounds // batch)
    for label, cidr, fam in (
        ("slash24", "198.18.100.0/24", Family.IPV4),
        ("slash16", "198.18.0.0/16", Family.IPV4),
        ("v6_slash120", "2001:db8::/120", Family.IPV6),
        ("slash64", "2001:db8::/64", Family.IPV6),
    ):
        services = make_services(batch, "p", v6_every=1 if fam is Family.IPV6 else 0)
        pool_ = make_pool(label, cidr)
        alloc_t = release_t = 0.0
        for _ in range(repeats):
            a = Allocator()
            a.set_pools([pool_])
            t0 = time.process_time()
            for s in services:
                a.allocate(s)
            t1 = time.process_time()
            for s in services:
                a.release(s.key)
            t2 = time.process_time()
            alloc_t += t1 - t0
            release_t += t2 - t1
        ops = repeats * batch
        out[f"alloc_us_{label}"] = round(alloc_t / ops * 1e6, 2)
        out[f"release_us_{label}"] = round(release_t / ops * 1e6, 2)
    return out


def bench_held(rounds: int, big: int) -> dict[str, float]:
    out = {}
    for label, held in (("held_1k", 1000), (f"held_{big // 1000}k", big)):
        a = Allocator()
        a.set_pools([make_pool("v6", "2001:db8::/64")])
        prefill(a, held, Family.IPV6)
        cycle_us(a, Family.IPV6, min(rounds, 1000))
        out[f"op_us_{label}"] = round(cycle_us(a, Family.IPV6, rounds), 2)
    return out


def bench_memory(n: int) -> dict[str, float]:
    a = Allocator()
    a.set_pools(big_pools())
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    services = make_services(n, "m", v6_every=3)
    with_requests = tracemalloc.get_traced_memory()[0]
    for s in services:
        a.allocate(s)
    gc.collect()
    end = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {
        "bytes_per_held": round((end - with_requests) / n, 1),
        "bytes_per_request": round((with_requests - base) / n, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run for a smoke test")
    args = parser.parse_args()
    n = 10_000 if args.quick else 100_000
    rounds = 2_000 if args.quick else 20_000

    figures: dict[str, object] = {
        "python": platform.python_version(),
        "services": n,
    }
    wall, cpu = bench_bulk(n)
    label = "100k" if n == 100_000 else str(n)
    figures[f"alloc_{label}_s"] = round(wall, 3)
    figures[f"alloc_{label}_cpu_s"] = round(cpu, 3)
    figures["alloc_us_each"] = round(wall / n * 1e6, 2)
    figures.update(bench_pool_sizes(rounds))
    figures.update(bench_held(rounds, n))
    figures.update(bench_memory(n))
    for k, v in figures.items():
        print(f"{k:>22}: {v}")
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

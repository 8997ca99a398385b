"""Chaos benchmark: the chaos scenario of ``tests/k8s/controller_chaos.py`` on many seeds.

    .venv/bin/python tests/bench/bench_chaos.py [--runs 20] [--ops 2000] [--seed S ...] [--keep DIR]
        [--control-plane stand-in|real]

Each run starts a fresh stand-in API server (``--control-plane real``: a fresh fault proxy in
front of one real etcd + kube-apiserver + kube-controller-manager, swept clean after each run, as
``tests/k8s`` runs the ``[real]`` chaos test) and two ``lbd controller --leader-elect`` processes,
drives the seeded workload with faults and leader kills, and checks every invariant (including
"settled within 2 s of the workload going quiet"). Seeds are fresh unless given with ``--seed``
(each is printed, so a failure replays with ``LBD_CHAOS_SEED=S pytest
tests/k8s/test_controller_chaos.py``).

Prints one line per run, then the pass count, the slowest time-to-settle and the seeds that
failed; the last line is one JSON object. Never asserts: the exit status is 1 if a run failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lbd.lab.control_plane import Sweeper  # noqa: E402
from tests.k8s.controller_chaos import OPS, run_chaos  # noqa: E402
from tests.k8s.controller_support import (  # noqa: E402
    ApiServer,
    real_control_plane,
    real_lab,
    real_tokens,
    start_lab,
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--ops", type=int, default=OPS)
    ap.add_argument("--seed", type=int, action="append", default=[], help="replay these seeds")
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep each run's controller logs (and, with LBD_CHAOS_DEBUG=1, its history) here",
    )
    ap.add_argument("--control-plane", choices=("stand-in", "real"), default="stand-in")
    args = ap.parse_args()
    seeds = list(args.seed) or [random.SystemRandom().randrange(1, 2**31) for _ in range(args.runs)]
    print(f"seeds: {' '.join(map(str, seeds))}")
    with server_factory(args.control_plane) as servers:
        return run(args, seeds, servers)


@contextlib.contextmanager
def stand_in() -> Iterator[ApiServer]:
    """A fresh stand-in API server for one run."""
    lab = start_lab()
    try:
        yield lab
    finally:
        lab.stop()


@contextlib.contextmanager
def server_factory(control_plane: str) -> Iterator[Callable[[], ContextManager[ApiServer]]]:
    """For each run, a context that gives a clean API server of the kind asked for."""
    if control_plane == "stand-in":
        yield stand_in
        return
    plane = real_control_plane().start()
    print(f"real control plane {plane.version.get('gitVersion')} in {plane.startup_seconds:.1f}s")
    try:
        sweeper, tokens = Sweeper(plane.admin), real_tokens(plane)
        yield lambda: real_lab(plane, sweeper, tokens)
    finally:
        plane.stop()


def run(
    args: argparse.Namespace, seeds: list[int], servers: Callable[[], ContextManager[ApiServer]]
) -> int:
    results = []
    started = time.monotonic()
    for seed in seeds:
        with servers() as lab:
            with tempfile.TemporaryDirectory(prefix="lbd-chaos-") as tmp:
                where = Path(tmp)
                if args.keep is not None:
                    where = args.keep / f"seed-{seed}"
                    where.mkdir(parents=True, exist_ok=True)
                try:
                    result = run_chaos(lab, seed, where, ops=args.ops)
                except Exception as exc:  # a crash of the scenario is a failed run too
                    from tests.k8s.controller_chaos import ChaosResult

                    result = ChaosResult(seed=seed, ops=args.ops, problems=[f"crashed: {exc!r}"])
        results.append(result)
        print(result.summary(), flush=True)
        shown = result.problems[:5] + [
            p for p in result.problems[5:] if " state: " in p or " holds " in p
        ]
        for problem in shown:
            print(f"    {problem}", flush=True)
    passed = [r for r in results if r.passed]
    settles = [r.settle_seconds for r in results if r.settle_seconds is not None]
    failed = [r.seed for r in results if not r.passed]
    slowest = max(settles) if settles else None
    print(f"passed {len(passed)} of {len(results)} in {time.monotonic() - started:.0f}s")
    print(f"slowest time to settle: {slowest if slowest is None else round(slowest, 2)}s")
    print(f"failed seeds: {' '.join(map(str, failed)) or 'none'}")
    print(
        json.dumps(
            {
                "runs": len(results),
                "passed": len(passed),
                "ops_per_run": args.ops,
                "slowest_settle_seconds": None if slowest is None else round(slowest, 3),
                "median_settle_seconds": round(sorted(settles)[len(settles) // 2], 3)
                if settles
                else None,
                "failed_seeds": failed,
                "control_plane": args.control_plane,
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

"""Chaos benchmark: the chaos scenario of ``tests/k8s/controller_chaos.py`` on many seeds.

    .venv/bin/python tests/bench/bench_chaos.py [--runs 20] [--ops 2000] [--seed S ...] [--keep DIR]

Each run starts a fresh lab API server and two ``lbd controller --leader-elect`` processes,
drives the seeded workload with faults and leader kills, and checks every invariant (including
"settled within 2 s of the workload going quiet"). Seeds are fresh unless given with ``--seed``
(each is printed, so a failure replays with ``LBD_CHAOS_SEED=S pytest
tests/k8s/test_controller_chaos.py``).

Prints one line per run, then the pass count, the slowest time-to-settle and the seeds that
failed; the last line is one JSON object. Never asserts: the exit status is 1 if a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.k8s.controller_chaos import OPS, run_chaos  # noqa: E402
from tests.k8s.controller_support import start_lab  # noqa: E402


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
    args = ap.parse_args()
    seeds = list(args.seed) or [random.SystemRandom().randrange(1, 2**31) for _ in range(args.runs)]
    print(f"seeds: {' '.join(map(str, seeds))}")
    results = []
    started = time.monotonic()
    for seed in seeds:
        lab = start_lab()
        try:
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
        finally:
            lab.stop()
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
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

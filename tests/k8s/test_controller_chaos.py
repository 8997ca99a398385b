"""Chaos (see :mod:`tests.k8s.controller_chaos` for the workload, the faults and the
invariants): a fresh seed on every run (printed; ``LBD_CHAOS_SEED`` replays it) and the fixed
regression seed. ``tests/bench/bench_chaos.py`` runs twenty seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.k8s.controller_chaos import REGRESSION_SEED, chaos_seed, run_chaos
from tests.k8s.controller_support import ApiServer

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("which", ["fresh", "regression"])
def test_chaos(lab: ApiServer, tmp_path: Path, which: str) -> None:
    seed = chaos_seed() if which == "fresh" else REGRESSION_SEED
    print(f"chaos seed {seed} (replay: LBD_CHAOS_SEED={seed})")
    result = run_chaos(lab, seed, tmp_path)
    print(result.summary())
    assert result.passed, f"LBD_CHAOS_SEED={seed}\n" + "\n".join(result.problems[:20])

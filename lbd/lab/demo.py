"""``lbd lab demo`` (being written)."""

from __future__ import annotations

from pathlib import Path


def run_demo(*, prefix: str, nodes: int, lab_dir: Path | None, keep: bool) -> int:
    raise NotImplementedError

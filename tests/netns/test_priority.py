"""The hot threads ask for a real-time priority, and only for themselves."""

from __future__ import annotations

import os
import threading

import pytest

from lbd.net.priority import raise_thread_priority


def in_thread(prio: int | None) -> tuple[str, int]:
    out: list[tuple[str, int]] = []

    def run() -> None:
        granted = raise_thread_priority(prio)
        out.append((granted, os.sched_getscheduler(0)))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out[0]


@pytest.mark.needs_root
def test_root_gets_round_robin_for_the_calling_thread_only() -> None:
    assert in_thread(1) == ("rr", os.SCHED_RR)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the test's own thread is untouched


def test_none_leaves_the_thread_alone() -> None:
    assert in_thread(None) == ("none", os.SCHED_OTHER)

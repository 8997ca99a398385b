"""The work queue: dedup, one worker per key, backoff, token bucket, delayed adds."""

from __future__ import annotations

import threading
import time

import pytest

from lbd.runtime.clock import FakeClock
from lbd.runtime.workqueue import (
    DefaultRateLimiter,
    ExponentialBackoff,
    TokenBucket,
    WorkQueue,
)


def test_a_key_added_many_times_is_processed_once():
    q: WorkQueue[str] = WorkQueue(clock=FakeClock())
    for _ in range(5):
        q.add("ns/a")
    q.add("ns/b")
    assert q.get(timeout=0) == "ns/a"
    assert q.get(timeout=0) == "ns/b"
    assert q.get(timeout=0) is None


def test_a_key_in_flight_is_not_handed_out_again_but_requeued_on_done():
    q: WorkQueue[str] = WorkQueue(clock=FakeClock())
    q.add("k")
    assert q.get(timeout=0) == "k"
    q.add("k")  # changed while a worker holds it
    assert q.get(timeout=0) is None, "a second worker must not get the same key"
    q.done("k")
    assert q.get(timeout=0) == "k", "the change seen during processing is processed later"
    q.done("k")
    assert q.pending() == 0


def test_never_two_workers_on_one_key_under_contention():
    q: WorkQueue[int] = WorkQueue()
    active: set[int] = set()
    overlap: list[int] = []
    lock = threading.Lock()
    processed = [0]

    def worker() -> None:
        while True:
            key = q.get(timeout=0.5)
            if key is None:
                return
            with lock:
                if key in active:
                    overlap.append(key)
                active.add(key)
            time.sleep(0.0005)
            with lock:
                active.discard(key)
                processed[0] += 1
            q.done(key)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(2000):
        q.add(i % 7)
    for t in threads:
        t.join()
    assert overlap == []
    assert processed[0] >= 7


def test_add_after_waits_for_the_clock():
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("k", 2.0)
    assert q.get(timeout=0) is None
    clock.advance(1.9)
    assert q.get(timeout=0) is None
    clock.advance(0.2)
    assert q.get(timeout=0) == "k"


def test_earlier_add_after_wins():
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("k", 10.0)
    q.add_after("k", 1.0)
    clock.advance(1.0)
    assert q.get(timeout=0) == "k"
    q.done("k")
    clock.advance(10.0)
    assert q.get(timeout=0) is None, "the superseded later add must not fire again"


def test_blocked_get_is_released_by_advancing_a_fake_clock():
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("k", 5.0)
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=5)))
    t.start()
    clock.advance(5.0)
    t.join(5)
    assert got == ["k"]


def test_per_key_backoff_doubles_and_forget_resets():
    b: ExponentialBackoff[str] = ExponentialBackoff(base=0.01, cap=0.05)
    assert [b.when("k") for _ in range(5)] == pytest.approx([0.01, 0.02, 0.04, 0.05, 0.05])
    assert b.when("other") == pytest.approx(0.01), "backoff is per key"
    assert b.num_requeues("k") == 5
    b.forget("k")
    assert b.when("k") == pytest.approx(0.01)


def test_token_bucket_spreads_a_burst():
    clock = FakeClock()
    bucket = TokenBucket(qps=10, burst=2, clock=clock)
    assert bucket.reserve() == 0
    assert bucket.reserve() == 0
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    clock.advance(10)
    assert bucket.reserve() == 0


def test_rate_limited_add_uses_the_slower_of_backoff_and_bucket():
    clock = FakeClock()
    limiter: DefaultRateLimiter[str] = DefaultRateLimiter(
        base=1.0, cap=100.0, qps=1, burst=1, clock=clock
    )
    q: WorkQueue[str] = WorkQueue(clock=clock, rate_limiter=limiter)
    q.add_rate_limited("a")  # backoff 1 s, bucket free
    q.add_rate_limited("b")  # backoff 1 s, bucket: next token in 1 s
    q.add_rate_limited("a")  # backoff 2 s for a second failure
    clock.advance(1.0)
    assert {q.get(timeout=0), q.get(timeout=0)} == {"a", "b"}
    assert q.num_requeues("a") == 2


def test_invalid_limiter_settings_are_refused():
    with pytest.raises(ValueError, match="base"):
        ExponentialBackoff(base=0)
    with pytest.raises(ValueError, match="qps"):
        TokenBucket(qps=0, burst=1)


def test_shutdown_releases_waiting_workers():
    q: WorkQueue[str] = WorkQueue()
    got: list[str | None] = ["unset"]
    t = threading.Thread(target=lambda: got.__setitem__(0, q.get()))
    t.start()
    q.shutdown()
    t.join(5)
    assert got == [None]
    q.add("k")
    assert q.get(timeout=0) is None

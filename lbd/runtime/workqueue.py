"""A work queue of keys, after client-go's ``util/workqueue``.

API::

    q: WorkQueue[str] = WorkQueue(clock=clock, rate_limiter=DefaultRateLimiter())
    q.add("ns/web")                 # dedup: a key waiting once is waiting once
    q.add_after("ns/web", 2.0)      # delayed add
    q.add_rate_limited("ns/web")    # delayed by the rate limiter (per-key backoff, global bucket)
    key = q.get(timeout=1.0)        # None on timeout or after shutdown
    ... reconcile(key) ...
    q.forget(key)                   # success: reset the key's backoff
    q.done(key)                     # always, in a finally
    q.shutdown(); len(q); q.num_requeues(key)

Guarantees (what makes level-triggered controllers correct):

- *Dedup*: a key added many times before a worker picks it up is processed once.
- *Never twice at once*: a key being processed is not handed to another worker; if it is added
  meanwhile it is marked dirty and queued again when ``done`` is called, so the latest state is
  always seen by a later pass.
- *Per-key exponential backoff* and a *global token bucket* (``DefaultRateLimiter``: the slower of
  the two, as client-go's default controller rate limiter) for keys that failed.
- All timing reads the injected :class:`~lbd.runtime.clock.Clock`; waiting is on a condition
  variable with a short cap so that a :class:`~lbd.runtime.clock.FakeClock` advanced by a test
  releases delayed keys without real waiting.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from lbd.runtime.clock import SYSTEM_CLOCK, Clock

K = TypeVar("K", bound=Hashable)

_POLL_CAP = 0.05
"""Longest real-time wait between looks at the clock while a delayed key is pending."""


class RateLimiter(Protocol[K]):  # type: ignore[misc]
    def when(self, key: K) -> float:
        """Seconds to wait before ``key`` may be retried (and count this failure)."""
        ...

    def forget(self, key: K) -> None: ...

    def num_requeues(self, key: K) -> int: ...


class ExponentialBackoff(Generic[K]):
    """``base * 2**failures``, capped at ``cap``, per key."""

    def __init__(self, base: float = 0.005, cap: float = 300.0) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff: need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._failures: dict[K, int] = {}
        self._lock = threading.Lock()

    def when(self, key: K) -> float:
        with self._lock:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        # 2**n overflows floats only for n > 1000; clamp the exponent well before that.
        return min(self.cap, self.base * float(2 ** min(n, 64)))

    def forget(self, key: K) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        with self._lock:
            return self._failures.get(key, 0)


class TokenBucket:
    """A global token bucket: ``qps`` tokens per second, at most ``burst`` saved up.

    ``reserve()`` takes a token now or books the next free one and returns how long to wait for
    it, so callers are spread out in time rather than refused.
    """

    def __init__(self, qps: float, burst: int, clock: Clock = SYSTEM_CLOCK) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("token bucket: qps must be > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        with self._lock:
            now = self.clock.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.qps


class DefaultRateLimiter(Generic[K]):
    """The slower of a per-key exponential backoff and a global token bucket."""

    def __init__(
        self,
        *,
        base: float = 0.005,
        cap: float = 300.0,
        qps: float = 10.0,
        burst: int = 100,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.backoff: ExponentialBackoff[K] = ExponentialBackoff(base, cap)
        self.bucket = TokenBucket(qps, burst, clock)

    def when(self, key: K) -> float:
        return max(self.backoff.when(key), self.bucket.reserve())

    def forget(self, key: K) -> None:
        self.backoff.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.backoff.num_requeues(key)


class WorkQueue(Generic[K]):
    """FIFO of distinct keys with delayed and rate-limited adds. Thread-safe."""

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        rate_limiter: RateLimiter[K] | None = None,
    ) -> None:
        self.clock = clock
        self.rate_limiter: RateLimiter[K] = rate_limiter or DefaultRateLimiter(clock=clock)
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._delayed_at: dict[K, float] = {}
        self._seq = itertools.count()
        self._shutdown = False

    def __len__(self) -> int:
        """Keys waiting to be handed out (not counting delayed or in-flight ones)."""
        with self._cond:
            return len(self._queue)

    def add(self, key: K) -> None:
        with self._cond:
            if self._shutdown or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutdown:
                return
            at = self.clock.monotonic() + delay
            # Keep only the earliest pending time per key, as client-go does.
            prev = self._delayed_at.get(key)
            if prev is not None and prev <= at:
                return
            self._delayed_at[key] = at
            heapq.heappush(self._delayed, (at, next(self._seq), key))
            self._cond.notify()

    def add_rate_limited(self, key: K) -> None:
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: K) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.rate_limiter.num_requeues(key)

    def _promote_due(self) -> float | None:
        """Move due delayed keys into the queue; return seconds until the next one (or None)."""
        now = self.clock.monotonic()
        while self._delayed:
            at, _seq, key = self._delayed[0]
            if self._delayed_at.get(key) != at:
                heapq.heappop(self._delayed)  # superseded by an earlier add_after
                continue
            if at > now:
                return at - now
            heapq.heappop(self._delayed)
            del self._delayed_at[key]
            if key not in self._dirty:
                self._dirty.add(key)
                if key not in self._processing:
                    self._queue.append(key)
        return None

    def get(self, timeout: float | None = None) -> K | None:
        """The next key, marked in-flight until :meth:`done`; None on timeout or shutdown."""
        deadline = None if timeout is None else SYSTEM_CLOCK.monotonic() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                next_due = self._promote_due()
                if self._queue:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                wait = _POLL_CAP if next_due is not None else None
                if next_due is not None and self.clock is SYSTEM_CLOCK:
                    wait = next_due
                if deadline is not None:
                    left = deadline - SYSTEM_CLOCK.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    @property
    def shutting_down(self) -> bool:
        with self._cond:
            return self._shutdown

    def pending(self) -> int:
        """Keys queued, delayed, or in flight: zero means the queue has nothing left to do."""
        with self._cond:
            return len(self._queue) + len(self._delayed_at) + len(self._processing)

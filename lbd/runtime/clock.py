"""Clocks.

Everything in lbd that measures time (leases, backoff, heartbeats, gratuitous ARP schedules) asks
an injected :class:`Clock` instead of calling :func:`time.monotonic` itself. Production code uses
:class:`MonotonicClock`; tests use :class:`FakeClock`, whose time only moves when the test says so,
which makes timing tests instant and deterministic (client-go's injected clock, kopf's looptime).

Wall-clock time is deliberately absent: durations must never be computed from timestamps another
machine wrote (client-go leaderelection measures a lease's age from when *it* saw it change).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic time source that can also wait."""

    def monotonic(self) -> float:
        """Seconds since an arbitrary, fixed origin; never goes backwards."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds`` of this clock's time."""
        ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic` and :func:`time.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that moves only when :meth:`advance` is called.

    ``sleep`` advances the clock by itself (a sleeping caller is the only thing that happens in a
    single-threaded test), and wakes threads blocked in :meth:`wait_until`.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._cond = threading.Condition()

    def monotonic(self) -> float:
        with self._cond:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        with self._cond:
            self._now += seconds
            self._cond.notify_all()

    def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))

    def wait_until(self, deadline: float, timeout: float = 5.0) -> bool:
        """Block (in real time, at most ``timeout`` s) until fake time reaches ``deadline``."""
        with self._cond:
            return self._cond.wait_for(lambda: self._now >= deadline, timeout=timeout)


SYSTEM_CLOCK: Clock = MonotonicClock()

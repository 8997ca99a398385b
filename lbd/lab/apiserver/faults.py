"""Fault injection: what tests use to make the API server misbehave on purpose.

- :meth:`Faults.fail_next`: the next N matching requests fail with a ``Status`` of the given
  code (500, 429 with ``Retry-After``, 409 ...), optionally only for one verb and/or paths that
  contain a substring.
- :meth:`Faults.add_latency`: every matching request waits that long before it is served.
- outage (driven by the server, see ``LabApiServer.outage``) for T seconds, in one of two
  modes (:class:`OutageMode`): ``REFUSE`` (the process died: open connections, watches included, are
  cut and new ones reset) or ``HANG`` (the network partitioned: requests and watch streams
  stall, and whatever is still waiting is served when the outage ends, unless the client gave
  up first).
- close all watches (``LabApiServer.close_watches``).

Faults are data (:class:`FailRule`, :class:`LatencyRule`); time comes from the injected
:class:`~lbd.runtime.clock.Clock`, so an outage ends by the clock, not by a timer thread.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Any

from lbd.runtime.clock import Clock


@dataclass(frozen=True, slots=True)
class FailRule:
    code: int
    verb: str | None = None  # Kubernetes verb (get, list, watch, create, update, patch, delete)
    path: str | None = None  # substring of the URL path

    def matches(self, verb: str, path: str) -> bool:
        return (self.verb is None or self.verb == verb) and (self.path is None or self.path in path)


@dataclass(frozen=True, slots=True)
class LatencyRule:
    seconds: float
    verb: str | None = None
    path: str | None = None

    def matches(self, verb: str, path: str) -> bool:
        return (self.verb is None or self.verb == verb) and (self.path is None or self.path in path)


_ALLOWED_CODES = (409, 429, 500, 502, 503, 504)


class OutageMode(enum.StrEnum):
    REFUSE = "refuse"
    HANG = "hang"


class Faults:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._fail: list[list[Any]] = []  # [rule, remaining]
        self._latency: list[LatencyRule] = []
        self._outage_until = 0.0
        self.outage_mode = OutageMode.REFUSE
        self.injected = 0

    def fail_next(
        self, count: int, code: int = 500, *, verb: str | None = None, path: str | None = None
    ) -> None:
        if count < 1:
            raise ValueError(f"count: must be >= 1, got {count}")
        if code not in _ALLOWED_CODES:
            raise ValueError(f"code: must be one of {_ALLOWED_CODES}, got {code}")
        with self._lock:
            self._fail.append([FailRule(code, verb, path), count])

    def add_latency(
        self, seconds: float, *, verb: str | None = None, path: str | None = None
    ) -> None:
        if seconds < 0:
            raise ValueError(f"seconds: must be >= 0, got {seconds}")
        with self._lock:
            self._latency.append(LatencyRule(seconds, verb, path))

    def start_outage(self, seconds: float, mode: OutageMode = OutageMode.REFUSE) -> None:
        if seconds <= 0:
            raise ValueError(f"seconds: must be > 0, got {seconds}")
        with self._lock:
            self.outage_mode = OutageMode(mode)
            self._outage_until = self._clock.monotonic() + seconds

    def refusing(self) -> bool:
        return self.outage_mode is OutageMode.REFUSE and self.in_outage()

    def wait_while_hanging(self) -> None:
        """Block while a HANG outage lasts (polling the clock in small steps)."""
        while self.outage_mode is OutageMode.HANG and self.in_outage():
            self._clock.sleep(min(0.05, max(self._outage_until - self._clock.monotonic(), 0.0)))

    def in_outage(self) -> bool:
        return self._clock.monotonic() < self._outage_until

    def reset(self) -> None:
        with self._lock:
            self._fail.clear()
            self._latency.clear()
            self._outage_until = 0.0

    def take_failure(self, verb: str, path: str) -> int | None:
        """The code to fail this request with, consuming one from the first matching rule."""
        if not self._fail:
            return None
        with self._lock:
            for entry in self._fail:
                rule: FailRule = entry[0]
                if rule.matches(verb, path):
                    entry[1] -= 1
                    if entry[1] <= 0:
                        self._fail.remove(entry)
                    self.injected += 1
                    return rule.code
        return None

    def latency(self, verb: str, path: str) -> float:
        if not self._latency:
            return 0.0
        with self._lock:
            return sum(r.seconds for r in self._latency if r.matches(verb, path))

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(seconds)


class FaultCalls:
    """The fault calls tests make, over ``self.faults``: one implementation for the stand-in
    (:class:`~lbd.lab.apiserver.LabApiServer`) and the fault proxy in front of a real
    kube-apiserver (:class:`~lbd.lab.control_plane.FaultProxy`), so one test drives either."""

    faults: Faults

    def fail_next(
        self, count: int, code: int = 500, *, verb: str | None = None, path: str | None = None
    ) -> None:
        """The next ``count`` requests (matching verb / path substring) fail with ``code``."""
        self.faults.fail_next(count, code, verb=verb, path=path)

    def add_latency(
        self, seconds: float, *, verb: str | None = None, path: str | None = None
    ) -> None:
        """Every matching request waits ``seconds`` before it is served."""
        self.faults.add_latency(seconds, verb=verb, path=path)

    def reset_faults(self) -> None:
        """No more failures, latency or outage."""
        self.faults.reset()

"""When to send gratuitous ARP / unsolicited NA: a pure scheduler on timestamps.

A newly owned VIP is announced immediately and then at the offsets of :attr:`GarpPlan.burst`
(0, 0.5, 1, 2 s by default): several copies because a single broadcast can be lost, and spaced
because a switch port or a peer's neighbour table may still be settling right after a failover.
After the burst each VIP is refreshed every :attr:`GarpPlan.refresh_interval` seconds so that
caches that missed the burst converge, but refreshes draw from a token bucket shared by all VIPs
(:attr:`GarpPlan.refresh_rate` frames per second): with 10 000 VIPs the effective refresh period
stretches instead of flooding the segment. Burst announcements are never rate limited: they are
what makes failover fast, and they only happen on ownership changes.

The caller owns the clock: it passes ``now`` (from the injected :class:`lbd.runtime.clock.Clock`)
to :meth:`GarpScheduler.due` and sleeps until :meth:`GarpScheduler.next_wakeup`.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass


@dataclass(frozen=True)
class GarpPlan:
    burst: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    # MetalLB re-announces every 1.1 s forever (its issue #172); lbd relies on the burst and keeps
    # a slow refresh for caches that missed it.
    refresh_interval: float = 60.0
    refresh_rate: float = 100.0  # refresh announcements per second, all VIPs together
    refresh_bucket: float = 100.0  # tokens the bucket holds

    def __post_init__(self) -> None:
        if (
            not self.burst
            or any(b < 0 for b in self.burst)
            or list(self.burst) != sorted(self.burst)
        ):
            raise ValueError("GarpPlan.burst: must be non-empty, non-negative and ascending")
        if self.refresh_interval <= 0:
            raise ValueError("GarpPlan.refresh_interval: must be > 0")
        if self.refresh_rate <= 0 or self.refresh_bucket < 1:
            raise ValueError("GarpPlan.refresh_rate/refresh_bucket: must be > 0 / >= 1")


class GarpScheduler:
    """Which VIPs to announce now. Not thread-safe: one owner (the responder's timer loop).

    Two heaps of ``(due, generation, vip, step)``: burst steps and refreshes, so that a refresh
    waiting for a token never holds back a burst. Removal is lazy: an entry whose generation is
    no longer the VIP's current one is skipped.
    """

    def __init__(self, plan: GarpPlan | None = None) -> None:
        self.plan = plan or GarpPlan()
        self._burst: list[tuple[float, int, str, int]] = []
        self._refresh: list[tuple[float, int, str, int]] = []
        self._generation: dict[str, int] = {}
        self._counter = 0
        self._tokens = self.plan.refresh_bucket
        self._tokens_at: float | None = None

    def __contains__(self, vip: str) -> bool:
        return vip in self._generation

    def __len__(self) -> int:
        return len(self._generation)

    def add(self, vip: str, now: float) -> None:
        """Start (or restart) the burst for ``vip``: it became ours at ``now``."""
        self._counter += 1
        self._generation[vip] = self._counter
        heapq.heappush(self._burst, (now + self.plan.burst[0], self._counter, vip, 0))

    def discard(self, vip: str) -> None:
        """Forget ``vip`` (lost ownership): no further announcement is produced for it."""
        self._generation.pop(vip, None)

    def _refill(self, now: float) -> None:
        if self._tokens_at is not None:
            elapsed = max(0.0, now - self._tokens_at)
            self._tokens = min(
                self.plan.refresh_bucket, self._tokens + elapsed * self.plan.refresh_rate
            )
        self._tokens_at = now

    def _live(self, heap: list[tuple[float, int, str, int]]) -> tuple[float, int, str, int] | None:
        while heap and self._generation.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def due(self, now: float) -> list[str]:
        """VIPs to announce at ``now``: every due burst step, then refreshes as tokens allow."""
        self._refill(now)
        out: list[str] = []
        burst = self.plan.burst
        while (head := self._live(self._burst)) is not None and head[0] <= now:
            at, gen, vip, step = heapq.heappop(self._burst)
            out.append(vip)
            if step + 1 < len(burst):
                start = at - burst[step]
                heapq.heappush(self._burst, (start + burst[step + 1], gen, vip, step + 1))
            else:
                heapq.heappush(self._refresh, (now + self.plan.refresh_interval, gen, vip, 0))
        while (head := self._live(self._refresh)) is not None and head[0] <= now:
            if self._tokens < 1:
                break
            self._tokens -= 1
            _, gen, vip, _ = heapq.heappop(self._refresh)
            out.append(vip)
            heapq.heappush(self._refresh, (now + self.plan.refresh_interval, gen, vip, 0))
        return out

    def next_wakeup(self, now: float) -> float | None:
        """When :meth:`due` may next return something (None = nothing scheduled)."""
        times: list[float] = []
        if (b := self._live(self._burst)) is not None:
            times.append(b[0])
        if (r := self._live(self._refresh)) is not None:
            wait_tokens = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.plan.refresh_rate
            times.append(max(r[0], now + wait_tokens))
        return min(times) if times else None

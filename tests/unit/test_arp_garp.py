"""Gratuitous announcement schedule: burst on takeover, then a slow, rate-limited refresh."""

from __future__ import annotations

import pytest

from lbd.core.garp import GarpPlan, GarpScheduler
from lbd.runtime.clock import FakeClock

Sent = tuple[float, str]


def run(
    s: GarpScheduler, clock: FakeClock, until: float, step: float = 0.05
) -> list[tuple[float, str]]:
    sent: list[tuple[float, str]] = []
    end = clock.monotonic() + until
    while clock.monotonic() <= end:
        sent += [(round(clock.monotonic() - 1000.0, 3), v) for v in s.due(clock.monotonic())]
        clock.advance(step)
    return sent


def test_new_vip_is_announced_at_once_then_at_the_burst_offsets() -> None:
    clock = FakeClock()
    s = GarpScheduler(GarpPlan(refresh_interval=60))
    s.add("198.18.100.7", clock.monotonic())
    assert s.due(clock.monotonic()) == ["198.18.100.7"]  # immediately, no waiting
    assert s.next_wakeup(clock.monotonic()) == pytest.approx(1000.5)
    times = [t for t, _ in run(s, clock, 3.0)]
    assert times == pytest.approx([0.5, 1.0, 2.0], abs=0.06)  # 50 ms polling steps


def test_lost_vip_is_never_announced_again() -> None:
    clock = FakeClock()
    s = GarpScheduler()
    s.add("a", clock.monotonic())
    s.due(clock.monotonic())
    s.discard("a")
    assert run(s, clock, 200.0, step=0.5) == []
    assert s.next_wakeup(clock.monotonic()) is None and "a" not in s


def test_refresh_after_the_burst_every_interval() -> None:
    clock = FakeClock()
    s = GarpScheduler(GarpPlan(burst=(0.0,), refresh_interval=10))
    s.add("a", clock.monotonic())
    times = [t for t, _ in run(s, clock, 25.0, step=0.5)]
    assert times == pytest.approx([0.0, 10.0, 20.0], abs=0.51)


def test_refreshes_of_many_vips_are_rate_limited_across_vips() -> None:
    clock = FakeClock()
    plan = GarpPlan(burst=(0.0,), refresh_interval=1.0, refresh_rate=100, refresh_bucket=10)
    s = GarpScheduler(plan)
    for i in range(1000):
        s.add(f"v{i}", clock.monotonic())
    assert len(s.due(clock.monotonic())) == 1000  # the takeover burst is never limited
    sent = run(s, clock, 5.0, step=0.01)
    refreshes_per_second = len([t for t, _ in sent if 2.0 <= t < 4.0]) / 2.0
    assert refreshes_per_second <= 100 * 1.05 + 10
    assert refreshes_per_second >= 90  # and the bucket is actually used


def test_a_waiting_refresh_does_not_hold_back_a_new_burst() -> None:
    clock = FakeClock()
    plan = GarpPlan(burst=(0.0,), refresh_interval=1.0, refresh_rate=1, refresh_bucket=1)
    s = GarpScheduler(plan)
    for i in range(50):
        s.add(f"v{i}", clock.monotonic())
    s.due(clock.monotonic())
    clock.advance(1.0)
    s.due(clock.monotonic())  # uses the one token; 49 refreshes wait
    s.add("new", clock.monotonic())
    assert s.due(clock.monotonic()) == ["new"]


def test_readding_restarts_the_burst() -> None:
    clock = FakeClock()
    s = GarpScheduler(GarpPlan(burst=(0.0, 1.0)))
    s.add("a", clock.monotonic())
    s.due(clock.monotonic())
    clock.advance(0.7)
    s.add("a", clock.monotonic())
    assert s.due(clock.monotonic()) == ["a"]
    clock.advance(0.4)  # the old burst step at 1.0 must not fire
    assert s.due(clock.monotonic()) == []
    clock.advance(0.6)
    assert s.due(clock.monotonic()) == ["a"]


@pytest.mark.parametrize(
    "kw",
    [{"burst": ()}, {"burst": (1.0, 0.5)}, {"refresh_interval": 0}, {"refresh_rate": 0}],
    ids=["empty burst", "unsorted burst", "zero interval", "zero rate"],
)
def test_bad_plans_are_rejected_naming_the_field(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="GarpPlan"):
        GarpPlan(**kw)  # type: ignore[arg-type]

from __future__ import annotations

import pytest

from lbd.runtime.clock import FakeClock, MonotonicClock


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(start=10.0)
    assert clock.monotonic() == 10.0
    clock.advance(1.5)
    assert clock.monotonic() == 11.5
    clock.sleep(0.5)
    assert clock.monotonic() == 12.0


def test_fake_clock_refuses_to_go_backwards() -> None:
    with pytest.raises(ValueError, match="backwards"):
        FakeClock().advance(-1)


def test_monotonic_clock_never_goes_backwards() -> None:
    clock = MonotonicClock()
    a = clock.monotonic()
    b = clock.monotonic()
    assert b >= a

"""lbd.runtime.signals: SIGTERM and SIGINT stop a program alike, after its log line."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from lbd.runtime.signals import STOP_SIGNALS, stop_event


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
@pytest.mark.usefixtures("restore_handlers")
def test_the_signal_sets_the_event_after_the_callback(sig: signal.Signals) -> None:
    seen: list[tuple[signal.Signals, bool]] = []
    stop = stop_event(lambda got: seen.append((got, stop.is_set())))
    assert not stop.is_set()
    os.kill(os.getpid(), sig)
    assert stop.wait(5)
    assert seen == [(sig, False)]  # the log line comes before anything stops


@pytest.mark.usefixtures("restore_handlers")
def test_without_a_callback_it_only_stops() -> None:
    stop = stop_event()
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.wait(5)

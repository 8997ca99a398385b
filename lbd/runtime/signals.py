"""Stopping a long-running program on SIGTERM or SIGINT.

Kubernetes stops a Pod with SIGTERM (then SIGKILL after the grace period), a person with Ctrl-C:
every ``lbd`` program that runs until stopped (the controller, the speaker, the lab's API
stand-in) treats both alike. The handler only sets an event (and may log): the program's main
thread sees it and shuts down in order, since a signal handler runs between two bytecodes of the
main thread, wherever that is.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_event(on_signal: Callable[[signal.Signals], None] | None = None) -> threading.Event:
    """An event that SIGTERM or SIGINT sets, after calling ``on_signal`` with the signal (for
    a log line). Call from the main thread (Python installs signal handlers only there)."""
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        if on_signal is not None:
            on_signal(signal.Signals(signum))
        stop.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    return stop

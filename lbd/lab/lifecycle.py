"""What the lab's servers share about running: ``start()`` / ``stop()`` and ``with``.

The API stand-in, the fault proxy, the real control plane and the view of it the tests use
(:class:`~lbd.lab.control_plane.RealApiServer`) all run between ``start()`` and ``stop()``;
tests write ``with LabApiServer() as api:``. :class:`Startable` gives each the same context
manager, and :func:`serve_in_thread` runs a socketserver the way the in-process ones do.
"""

from __future__ import annotations

import abc
import socketserver
import threading
from typing import Self


class Startable(abc.ABC):
    """Runs between :meth:`start` (which returns it, ready) and :meth:`stop`; ``with`` does
    both, so a failing test still stops what it started."""

    @abc.abstractmethod
    def start(self) -> Self: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(server: socketserver.BaseServer, name: str) -> threading.Thread:
    """Serve ``server`` in a daemon thread named ``name``, started; :meth:`shutdown` returns
    within 0.1 s (the poll interval)."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
    )
    thread.start()
    return thread

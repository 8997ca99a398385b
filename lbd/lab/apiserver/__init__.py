"""Lab API server: a Kubernetes REST API stand-in that the official client and kubectl use.

Start one in-process with :class:`LabApiServer` (``server.start()``, ``server.url``,
``server.stop()``) or as a process with ``lbd lab apiserver``. See :mod:`.server` for the
public API, :mod:`.api` for the resource semantics it reproduces.

:class:`LabApiServer` is imported on first use (PEP 562): ``lbd`` registers the lab's
subcommands in a checkout, and importing the server with them cost every ``lbd status`` 0.12 s
of its start-up (tests/bench/bench_status.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lbd.lab.apiserver.server import LabApiServer

__all__ = ["LabApiServer"]


def __getattr__(name: str) -> Any:
    if name == "LabApiServer":
        from lbd.lab.apiserver.server import LabApiServer

        return LabApiServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Lab API server: a Kubernetes REST API stand-in that the official client and kubectl use.

Start one in-process with :class:`LabApiServer` (``server.start()``, ``server.url``,
``server.stop()``) or as a process with ``lbd lab apiserver``. See :mod:`.server` for the
public API, :mod:`.api` for the resource semantics it reproduces.
"""

from lbd.lab.apiserver.server import LabApiServer

__all__ = ["LabApiServer"]

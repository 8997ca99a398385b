"""What ``lbd lab up`` waits for before it says the lab is ready, each with a deadline.

Every wait polls an observable condition (a process's state at the supervisor, a health
endpoint inside a namespace, an answer on the client) and raises :class:`NotReadyError` naming
what is not ready and the log to read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lbd.lab.cluster import realplane, supervisor
from lbd.lab.cluster.layout import Layout, Member
from lbd.lab.cluster.netns import call_in_netns


class NotReadyError(RuntimeError):
    """Something the lab needs did not become ready in time; the message says what and where."""


def control_plane(prefix: str, lab_dir: Path, timeout: float) -> dict[str, Any]:
    """The control plane's state once ``lbd lab control-plane`` reports it ready."""
    deadline = time.monotonic() + timeout
    while True:
        state = realplane.read_state(lab_dir)
        if state is not None:
            return state
        proc = supervisor.request(prefix, "status")["processes"]["control-plane"]
        if time.monotonic() > deadline or proc["restarts"] >= 2:
            tail = ""
            with contextlib.suppress(OSError):
                lines = (lab_dir / "logs" / "control-plane.log").read_text().splitlines()
                tail = "\n".join(lines[-10:])
            raise NotReadyError(
                f"control plane not ready after {time.monotonic() - deadline + timeout:.0f} s "
                f"(restarts: {proc['restarts']}); logs/control-plane.log ends:\n{tail}"
            )
        time.sleep(0.1)  # polling a condition with a deadline


def running(prefix: str, names: list[str], timeout: float, settle: float = 0.3) -> None:
    """Wait until every process runs and has not been restarted for ``settle`` seconds."""
    deadline = time.monotonic() + timeout
    stable_since: float | None = None
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        procs = supervisor.request(prefix, "status")["processes"]
        snapshot = {n: (procs[n]["pid"], procs[n]["running"]) for n in names}
        if all(running for _pid, running in snapshot.values()) and snapshot == last:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= settle:
                return
        else:
            stable_since = None
        last = snapshot
        time.sleep(0.05)  # polling the supervisor: a condition with a deadline
    failing = [n for n in names if not procs[n]["running"] or procs[n]["restarts"]]
    raise NotReadyError(
        f"processes not running after {timeout:.0f} s: {', '.join(failing)} "
        "(see the logs directory of the lab)"
    )


def echo(layout: Layout, timeout: float) -> None:
    """Wait until the echo service of every node answers the client (the data path works)."""
    from lbd.lab.cluster.probe import udp_ask

    deadline = time.monotonic() + timeout
    for node in layout.nodes:
        while udp_ask(layout.client.netns, node.ipv4, timeout=0.2) != node.name:
            if time.monotonic() > deadline:
                raise NotReadyError(f"echo on {node.name} does not answer after {timeout:.0f} s")


SPEAKER_HEALTH_PORT = 7473
KUBE_PROXY_HEALTH_PORT = 10256


def http_get(
    netns: str, url_host: str, path: str, port: int = SPEAKER_HEALTH_PORT
) -> tuple[int, str]:
    """GET http://url_host:port/path from inside ``netns`` (a health endpoint)."""
    import http.client

    def get() -> tuple[int, str]:
        conn = http.client.HTTPConnection(url_host, port, timeout=1.0)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    return call_in_netns(netns, get)


def each_node(
    layout: Layout, timeout: float, ready: Callable[[Member], bool], what: str, log: str
) -> None:
    """Wait until ``ready(node)`` holds for every node; :class:`NotReadyError` naming the first node
    that is not, ``what`` it is not, and its log (``logs/<log>-<node>.log``)."""
    deadline = time.monotonic() + timeout
    for node in layout.nodes:
        while not ready(node):
            if time.monotonic() > deadline:
                raise NotReadyError(
                    f"{log} on {node.name} not {what} after {timeout:.0f} s "
                    f"(see logs/{log}-{node.name}.log)"
                )
            time.sleep(0.05)  # polling a condition with a deadline


def health(node: Member, path: str, port: int = SPEAKER_HEALTH_PORT) -> bool:
    try:
        return http_get(node.netns, node.ipv4, path, port)[0] == 200
    except OSError:
        return False


def kube_proxies(layout: Layout, timeout: float) -> None:
    """Wait until every kube-proxy answers ``/healthz`` with 200: it has synced its rules."""
    each_node(
        layout,
        timeout,
        lambda node: health(node, "/healthz", KUBE_PROXY_HEALTH_PORT),
        "healthy",
        "kube-proxy",
    )


def speaker_peers_alive(netns: str, ip: str) -> float | None:
    """The speaker's ``lbd_peers_alive`` (members it sees alive, itself included), or None."""
    try:
        status, body = http_get(netns, ip, "/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    for line in body.splitlines():
        if line.startswith("lbd_peers_alive "):
            return float(line.split()[1])
    return None


def speakers(layout: Layout, timeout: float) -> None:
    """Wait until every speaker is ready and sees every node alive.

    Returning earlier would let a test or the demo create a Service while the speakers are still
    discovering each other, and measure start-up instead of steady state.
    """
    want = float(len(layout.nodes))
    each_node(
        layout,
        timeout,
        lambda node: health(node, "/readyz") and speaker_peers_alive(node.netns, node.ipv4) == want,
        f"ready or not seeing all {len(layout.nodes)} nodes",
        "speaker",
    )

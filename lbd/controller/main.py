"""The controller process: informers, health endpoint, elector, controller; until a signal.

Leadership is wired so that writes stop before the lease can expire: the controller's writer asks
``elector.is_leader()`` before every request, and losing the lease ends the session (the allocator
is dropped); winning it again starts a fresh session that restores from the Services.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import dataclass
from types import FrameType

from lbd import log as lbd_log
from lbd.clihelp import fail, settings
from lbd.controller.controller import Controller, ControllerSettings
from lbd.health import HealthServer, parse_addr
from lbd.k8s.client import ApiError, KubeconfigError, load_kube
from lbd.k8s.elector import ElectionConfig, LeaderElector
from lbd.metrics import ControllerMetrics
from lbd.runtime.signals import stop_event

log = logging.getLogger("lbd.controller")
PROG = "lbd controller"


@dataclass(frozen=True)
class ControllerOptions:
    kubeconfig: str | None = None
    lb_class: str | None = None
    leader_elect: bool = False
    lease_namespace: str = "lbd-system"
    lease_name: str = "lbd-controller"
    identity: str = "lbd-controller"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    health_addr: str = "0.0.0.0:7472"
    workers: int = 8
    resync_period: float = 600.0
    log_level: str = "info"
    speaker_namespace: str | None = None
    speaker_selector: str = "app.kubernetes.io/component=speaker"
    speaker_grace: float = 10.0


def main(opts: ControllerOptions) -> int:
    """Run until a signal; 2 (one line on stderr naming the flag) for a bad flag or no usable
    kubeconfig, 1 for a fatal API error."""
    try:
        election = (
            settings(ElectionConfig, opts, namespace=opts.lease_namespace, name=opts.lease_name)
            if opts.leader_elect
            else None
        )
    except ValueError as exc:  # "lease_duration: must be greater than renew_deadline"
        text = str(exc)
        for field in ("identity", "lease_duration", "renew_deadline", "retry_period"):
            text = text.replace(field, "--" + field.replace("_", "-"))
        return fail(PROG, text)
    if opts.workers < 1:
        return fail(PROG, f"--workers {opts.workers}: must be at least 1")
    if not opts.resync_period > 0:
        return fail(PROG, f"--resync-period {opts.resync_period}: must be more than 0 seconds")
    try:
        parse_addr(opts.health_addr)
    except ValueError:
        return fail(PROG, f"--health-addr {opts.health_addr!r}: expected HOST:PORT")
    try:
        kube = load_kube(opts.kubeconfig)
    except KubeconfigError as exc:
        return fail(PROG, str(exc))
    lbd_log.setup(opts.log_level)
    metrics = ControllerMetrics()
    kube.observer = metrics.api.observe
    stop = stop_event(lambda signum: log.info("signal %d: stopping", signum))
    holder: list[Controller] = []

    def dump(_signum: int, _frame: FrameType | None) -> None:
        # `kill -USR1`: the allocator's state in the log (who waits for what, what is free).
        if holder:
            log.warning("state: %s", json.dumps(holder[0].describe(), default=str))

    signal.signal(signal.SIGUSR1, dump)

    elector: LeaderElector | None = None
    if election is not None:
        elector = LeaderElector(
            kube,
            election,
            on_started_leading=lambda: threading.Thread(
                target=holder[0].start_leading, name="session", daemon=True
            ).start(),
            on_stopped_leading=lambda: holder[0].stop_leading(),  # noqa: PLW0108 (late binding)
        )
    ctl = Controller(
        kube,
        settings(ControllerSettings, opts),
        metrics=metrics,
        may_write=elector.is_leader if elector is not None else (lambda: True),
    )
    holder.append(ctl)
    health = HealthServer(opts.health_addr, readyz=ctl.ready, registry=metrics.registry)
    try:
        health.start()
    except (OSError, ValueError) as exc:
        return fail(PROG, f"--health-addr {opts.health_addr}: {exc}")
    ctl.start()
    log.info(
        "controller started",
        extra={"node": opts.identity},
    )
    try:
        while not ctl.wait_for_sync(timeout=1.0):
            if stop.is_set():
                return 0
        if elector is not None:
            elector_thread = threading.Thread(
                target=elector.run, args=(stop,), name="elector", daemon=True
            )
            elector_thread.start()
            stop.wait()
            elector_thread.join(10)
        else:
            ctl.start_leading()
            stop.wait()
    except ApiError as exc:
        log.error("fatal API error: %s", exc, extra={"error": str(exc)})
        return 1
    finally:
        ctl.stop()
        health.stop()
    return 0

"""The controller turns what the speakers write (ServiceL2Status) into ``lbd.io/Announced``,
on the stand-in and the real kube-apiserver, as its own service account (issue 14, pt 1).

The speakers' side is in tests/unit (who reports) and tests/e2e/test_e2e_announced.py (the
whole lab); here the ServiceL2Status objects are written by hand, as a speaker would, so the
controller's part is seen alone: the condition, the Event once per change, the gauge, and no
write at all when nothing changed (a resync, a restart).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest

from lbd.k8s.client import SERVICEL2STATUSES, ApiError, JsonDict, Kube
from tests.k8s.controller_support import (
    Env,
    condition,
    event_reasons,
    flush,
    get_service,
    seen_pool,
    service,
    wait_addresses,
    wait_for,
)

ANNOUNCED = "lbd.io/Announced"


def speaker_writes(kube: Kube, name: str, **status: Any) -> None:
    """What a speaker writes: the object (no status: a create drops it), then its status."""
    path = SERVICEL2STATUSES.path(namespace="default", name=name)
    try:
        obj = kube.get(path)
    except ApiError as exc:
        if exc.status != 404:
            raise
        obj = kube.create(
            SERVICEL2STATUSES.path(namespace="default"),
            {
                "apiVersion": "lbd.io/v1beta1",
                "kind": "ServiceL2Status",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {},
            },
        )
    obj["status"] = {"serviceName": name, "serviceNamespace": "default", **status}
    kube.replace(f"{path}/status", obj)


def announced(kube: Kube, name: str) -> JsonDict | None:
    return condition(get_service(kube, name), ANNOUNCED)


def wait_announced(kube: Kube, name: str, status: str, reason: str) -> JsonDict:
    def shown() -> JsonDict | None:
        c = announced(kube, name)
        return c if c is not None and (c["status"], c["reason"]) == (status, reason) else None

    wait_for(shown, 10, f"{name}: {ANNOUNCED}={status} {reason}")
    c = shown()
    assert c is not None
    return c


def gauge(env: Env, reason: str) -> float:
    text = generate_latest(env.ctl.metrics.registry).decode()
    line = f'lbd_services_unannounced{{reason="{reason}"}} '
    values = [float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(line)]
    return values[0] if values else float("nan")


def test_a_report_becomes_the_condition_once_and_a_resync_or_restart_writes_nothing(
    env: Env,
) -> None:
    seen_pool(env, "lab", ["198.18.100.0/28"])
    service(env.admin, "web")
    (vip,) = wait_addresses(env.admin, "web")
    flush(env)
    assert announced(env.admin, "web") is None  # no speaker said anything: nothing guessed

    speaker_writes(
        env.admin,
        "web",
        node="n1",
        announced=False,
        reason="NoEligibleNode",
        message="no eligible node (n1: Drained, n2: NotReady)",
        vips=[vip],
    )
    cond = wait_announced(env.admin, "web", "False", "NoEligibleNode")
    assert cond["message"] == "no eligible node (n1: Drained, n2: NotReady)"
    assigned = condition(get_service(env.admin, "web"))
    assert assigned is not None and assigned["reason"] == "Assigned"  # kept
    flush(env)
    assert event_reasons(env.admin, "web").count("NotAnnounced") == 1
    assert gauge(env, "NoEligibleNode") == 1.0

    # steady: a resync of every Service and a new leader write nothing, say nothing
    rv = get_service(env.admin, "web")["metadata"]["resourceVersion"]
    env.ctl.recheck_announced()
    flush(env)
    env.stop_controller(env.ctl)
    env.ctl = env.start_controller(identity="second")
    wait_for(lambda: gauge(env, "NoEligibleNode") == 1.0, 10, "the new leader's gauge")
    flush(env)
    assert get_service(env.admin, "web")["metadata"]["resourceVersion"] == rv
    assert event_reasons(env.admin, "web").count("NotAnnounced") == 1

    # a node takes it: True, naming node and interfaces, a Normal Event, the gauge back to 0
    speaker_writes(
        env.admin,
        "web",
        node="n2",
        announced=True,
        reason="Announced",
        message="announced from n2 on eth0",
        interfaces=[{"name": "eth0"}],
        vips=[vip],
    )
    cond = wait_announced(env.admin, "web", "True", "Announced")
    assert cond["message"] == f"{vip} announced from n2 on eth0"
    flush(env)
    assert event_reasons(env.admin, "web").count("Announced") == 1
    assert gauge(env, "NoEligibleNode") == 0.0


def test_a_new_services_first_report_settles_before_it_is_shown(env: Env) -> None:
    """A report that is gone within a second (an EndpointSlice written just after the
    address) never reaches the Service: no Warning on every new Service."""
    seen_pool(env, "lab", ["198.18.100.0/28"])
    service(env.admin, "fresh")
    (vip,) = wait_addresses(env.admin, "fresh")
    speaker_writes(
        env.admin,
        "fresh",
        node="n1",
        announced=False,
        reason="NoReadyEndpoints",
        message="the Service has no ready endpoint",
        vips=[vip],
    )
    speaker_writes(env.admin, "fresh", node="n1", announced=True, reason="Announced", vips=[vip])
    wait_announced(env.admin, "fresh", "True", "Announced")
    flush(env)
    assert "NotAnnounced" not in event_reasons(env.admin, "fresh")

"""Scenario steps on a running lab, shared by the demo, the end-to-end tests and the benchmark.

Each step waits for an observable condition with a deadline (never a fixed sleep) and raises
:class:`ScenarioError` with what was expected and what was seen, so a failing test or demo step
explains itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from lbd.k8s.client import SERVICEL2STATUSES, SERVICES, ApiError, Kube, load_kube
from lbd.lab.cluster import probe
from lbd.lab.cluster.lab import Lab

T = TypeVar("T")
NAMESPACE = "default"


class ScenarioError(AssertionError):
    """A scenario step did not see what it waited for."""


def poll(fn: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.05) -> T:
    """Call ``fn`` until it returns something truthy; :class:`ScenarioError` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise ScenarioError(
                f"timed out after {timeout:.1f} s waiting for {what} (last: {last})"
            )
        time.sleep(every)  # polling a condition with a deadline


def host_kube(lab: Lab) -> Kube:
    return load_kube(str(lab.host_kubeconfig))


def echo_service(
    name: str,
    *,
    dual_stack: bool = False,
    etp_local: bool = False,
    annotations: dict[str, str] | None = None,
    lb_class: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "selector": {"app": "echo"},
        "ports": [
            {"name": "tcp-echo", "protocol": "TCP", "port": 9000, "targetPort": 9000},
            {"name": "udp-echo", "protocol": "UDP", "port": 9000, "targetPort": 9000},
        ],
    }
    if dual_stack:
        spec["ipFamilyPolicy"] = "RequireDualStack"
        spec["ipFamilies"] = ["IPv4", "IPv6"]
    if etp_local:
        spec["externalTrafficPolicy"] = "Local"
    if lb_class:
        spec["loadBalancerClass"] = lb_class
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations or {}},
        "spec": spec,
    }


def create_echo_service(kube: Kube, name: str, **kwargs: Any) -> dict[str, Any]:
    return kube.create(SERVICES.path(namespace=NAMESPACE), echo_service(name, **kwargs))


def delete_service(kube: Kube, name: str) -> None:
    try:
        kube.delete(SERVICES.path(namespace=NAMESPACE, name=name))
    except ApiError as exc:
        if exc.status != 404:
            raise


def vips_of(kube: Kube, name: str) -> list[str]:
    svc = kube.get(SERVICES.path(namespace=NAMESPACE, name=name))
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [i["ip"] for i in ingress if i.get("ip")]


def wait_for_vips(kube: Kube, name: str, *, count: int = 1, timeout: float = 15.0) -> list[str]:
    """The Service's ingress IPs once it has at least ``count`` of them."""
    return poll(
        lambda: v if len(v := vips_of(kube, name)) >= count else None,
        timeout=timeout,
        what=f"Service {NAMESPACE}/{name} to get {count} address(es) from the controller",
    )


def wait_for_arp(lab: Lab, vip: str, *, timeout: float = 10.0) -> list[str]:
    """MACs answering one ARP request for ``vip`` from the client, once anyone answers."""
    c = lab.data["client"]
    return poll(
        lambda: probe.arp_who_has(c["netns"], c["ifname"], c["mac"], c["ipv4"], vip, wait=0.2),
        timeout=timeout,
        what=f"an ARP reply for {vip}",
        every=0.0,
    )


def ask(lab: Lab, vip: str, *, timeout: float = 0.3) -> str | None:
    return probe.udp_ask(lab.data["client"]["netns"], vip, timeout=timeout)


def wait_for_answer(
    lab: Lab,
    vip: str,
    *,
    timeout: float = 10.0,
    node: str | None = None,
    not_node: str | None = None,
) -> str:
    """The node answering UDP on ``vip`` (optionally: once it is / is not a given node)."""

    def check() -> str | None:
        who = ask(lab, vip)
        if who is None or (node and who != node) or (not_node and who == not_node):
            return None
        return who

    want = f" by {node}" if node else (f" by a node other than {not_node}" if not_node else "")
    return poll(check, timeout=timeout, what=f"a UDP answer from {vip}{want}", every=0.0)


def tcp(lab: Lab, vip: str) -> str:
    return probe.tcp_ask(lab.data["client"]["netns"], vip)


@dataclass(frozen=True)
class Failover:
    """What the client saw when the owner of a VIP was killed."""

    old_owner: str
    new_owner: str
    outage: float  # seconds between the last answer before and the first answer after
    lost: int
    sent: int
    killed_at: float  # time.monotonic() just before ``kill`` ran


def measure_failover(
    lab: Lab,
    vip: str,
    owner: str,
    *,
    kill: Callable[[], None],
    interval: float = 0.01,
    timeout: float = 15.0,
) -> Failover:
    """Probe ``vip`` every ``interval``, run ``kill``, and measure the interruption."""
    with probe.UdpProber(lab.data["client"]["netns"], vip, interval=interval) as prober:
        poll(
            lambda: sum(1 for p in prober.probes() if p.answered_by == owner) >= 10,
            timeout=5.0,
            what=f"{vip} answered by {owner} before the kill",
        )
        killed_at = time.monotonic()
        kill()

        def moved() -> bool:
            return any(
                p.sent > killed_at and p.answered_by not in (None, owner) for p in prober.probes()
            )

        poll(moved, timeout=timeout, what=f"{vip} answered by a node other than {owner}")
        probes = prober.stop()
    outage = probe.longest_outage(probes, after=killed_at)
    after = [p for p in probes if p.sent > killed_at and p.answered_by not in (None, owner)]
    return Failover(
        old_owner=owner,
        new_owner=str(after[0].answered_by),
        outage=outage.seconds,
        lost=outage.lost,
        sent=len(probes),
        killed_at=killed_at,
    )


def announced_by(kube: Kube, name: str) -> str | None:
    """The node the ServiceL2Status of Service ``name`` names (what ``kubectl`` users see)."""
    try:
        obj = kube.get(SERVICEL2STATUSES.path(namespace=NAMESPACE, name=name))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    node = (obj.get("status") or {}).get("node")
    return str(node) if node else None


def wait_announced_by(kube: Kube, name: str, node: str, *, timeout: float = 5.0) -> str | None:
    """Wait until the ServiceL2Status names ``node``; the last node seen (None if none)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = announced_by(kube, name)
        if seen == node or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)  # polling a condition with a deadline

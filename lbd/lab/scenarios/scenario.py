"""Scenario steps on a running lab, shared by the demo, the end-to-end tests and the benchmark.

Each step waits for an observable condition with a deadline (never a fixed sleep) and raises
:class:`ScenarioError` with what was expected and what was seen, so a failing test or demo step
explains itself.

Who *announces* a VIP and who *answers* it are two questions. On the stand-in lab they have one
answer: the owner node's own echo service answers. On the real lab the answer comes from a pod,
which kube-proxy on the owner picks among all ready pods (``externalTrafficPolicy: Cluster``) or
among the owner's own (``Local``). So the owner is asked of ARP (:func:`arp_owner`: which node's
MAC answers for the VIP), and the echo's answer names the pod's node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from lbd.k8s.client import SERVICEL2STATUSES, SERVICES, ApiError, Kube, load_kube
from lbd.lab.cluster import probe
from lbd.lab.cluster.bootstrap import get_or_none
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


WHOAMI_PORT = 9001
HTTP_PORT = 80


def echo_service(
    name: str,
    *,
    dual_stack: bool = False,
    etp_local: bool = False,
    annotations: dict[str, str] | None = None,
    lb_class: str | None = None,
    session_affinity: bool = False,
) -> dict[str, Any]:
    """A LoadBalancer Service for the echo pods: 9000 TCP+UDP (both labs), 9001 TCP and 80
    TCP (answered by the real lab's pods only)."""
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "selector": {"app": "echo"},
        "ports": [
            {"name": "tcp-echo", "protocol": "TCP", "port": 9000, "targetPort": 9000},
            {"name": "udp-echo", "protocol": "UDP", "port": 9000, "targetPort": 9000},
            {"name": "whoami", "protocol": "TCP", "port": WHOAMI_PORT, "targetPort": WHOAMI_PORT},
            {"name": "http", "protocol": "TCP", "port": HTTP_PORT, "targetPort": HTTP_PORT},
        ],
    }
    if dual_stack:
        spec["ipFamilyPolicy"] = "RequireDualStack"
        spec["ipFamilies"] = ["IPv4", "IPv6"]
    if etp_local:
        spec["externalTrafficPolicy"] = "Local"
    if session_affinity:
        spec["sessionAffinity"] = "ClientIP"
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


def node_of_mac(lab: Lab, mac: str) -> str | None:
    for node in lab.data["nodes"]:
        if node["mac"] == mac:
            return str(node["name"])
    return None


def arp_owner(lab: Lab, vip: str, *, timeout: float = 10.0, not_node: str | None = None) -> str:
    """The node whose MAC alone answers ARP for IPv4 ``vip`` (optionally: not ``not_node``)."""

    def check() -> str | None:
        c = lab.data["client"]
        macs = probe.arp_who_has(c["netns"], c["ifname"], c["mac"], c["ipv4"], vip, wait=0.2)
        nodes = [node_of_mac(lab, m) for m in macs]
        if len(nodes) == 1 and nodes[0] is not None and nodes[0] != not_node:
            return nodes[0]
        return None

    what = f"one node{f' other than {not_node}' if not_node else ''} to answer ARP for {vip}"
    return poll(check, timeout=timeout, what=what, every=0.0)


def whoami(lab: Lab, vip: str, *, timeout: float = 2.0) -> tuple[str, str, str]:
    """(node, pod, client address the pod saw) from a real-lab pod's port 9001 via ``vip``."""
    line = probe.tcp_ask(lab.data["client"]["netns"], vip, port=WHOAMI_PORT, timeout=timeout)
    parts = line.split()
    if len(parts) != 3:
        raise ScenarioError(f"{vip}:{WHOAMI_PORT} answered {line!r}, not '<node> <pod> <client>'")
    return parts[0], parts[1], parts[2]


def http_get(lab: Lab, vip: str, *, timeout: float = 2.0) -> str:
    """The page a real-lab pod serves on port 80, fetched by the client through ``vip``."""
    return probe.http_get(lab.data["client"]["netns"], vip, port=HTTP_PORT, timeout=timeout)


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
    new_owner: str  # the node answering ARP for the VIP afterwards
    answered_by: str  # the node of the first answer after the kill (pod's node on the real lab)
    outage: float  # seconds between the last answer before and the first answer after
    lost: int
    sent: int
    killed_at: float  # time.monotonic() just before ``kill`` ran
    answered_share: float  # answered / sent among probes sent in ``window`` after the kill
    window: float
    one_flow_outage: float | None = None  # with ``also_one_flow``: the same, for one UDP flow


def _answered(prober: probe.UdpProber, count: int) -> bool:
    return sum(1 for p in prober.probes() if p.answered_by is not None) >= count


def _moved(prober: probe.UdpProber, killed_at: float, owner: str) -> bool:
    """An answer after a lost probe, both sent after the kill: the gap has been and gone.

    (An answer alone could come from just before the cut took effect: on the real lab a pod on
    another node answers through the old owner, too.)
    """
    lost = False
    for p in prober.probes():
        if p.sent <= killed_at:
            continue
        if p.answered_by is None:
            lost = True
        elif lost and p.answered_by != owner:
            return True
    return False


def measure_failover(
    lab: Lab,
    vip: str,
    owner: str,
    *,
    kill: Callable[[], object],
    interval: float = 0.01,
    timeout: float = 15.0,
    window: float = 0.0,
    fresh_flows: bool = False,
    also_one_flow: bool = False,
) -> Failover:
    """Probe ``vip`` every ``interval``, run ``kill`` (which cuts ``owner`` off), and measure the
    interruption; with ``window``, keep probing that long after the kill and report the share
    of probes answered in it.

    ``fresh_flows`` probes as a client opening a new connection per request would (each request
    its own flow; :class:`~lbd.lab.cluster.probe.UdpProber`); ``also_one_flow`` measures the
    interruption of one long-lived flow beside it (on the real lab kube-proxy keeps that flow on
    one pod, which may be a pod of the dead node until it is dropped from the EndpointSlice).
    Answers before the kill may come from any node (the real lab's pods are everywhere); after
    it, only other nodes can answer, since the killed one is cut off.
    """
    netns = lab.data["client"]["netns"]
    probers = [probe.UdpProber(netns, vip, interval=interval, fresh_flows=fresh_flows)]
    if also_one_flow:
        probers.append(probe.UdpProber(netns, vip, interval=interval))
    for prober in probers:
        prober.start()
    try:
        for prober in probers:
            poll(
                partial(_answered, prober, 10), timeout=5.0, what=f"{vip} answered before the kill"
            )
        killed_at = time.monotonic()
        kill()
        for prober in probers:
            poll(
                partial(_moved, prober, killed_at, owner),
                timeout=timeout,
                what=f"{vip} answered by a node other than {owner}",
            )
        end = killed_at + window
        while time.monotonic() < end:
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))  # probing meanwhile
    finally:
        runs = [prober.stop() for prober in probers]
    probes = runs[0]
    outage = probe.longest_outage(probes, after=killed_at)
    if outage.first_after is None:
        raise ScenarioError(f"{vip}: no answer after the interruption ({outage.lost} lost)")
    first = outage.first_after
    in_window = [p for p in probes if killed_at < p.sent <= killed_at + window]
    share = (
        sum(1 for p in in_window if p.answered_by is not None) / len(in_window)
        if in_window
        else float("nan")
    )
    return Failover(
        old_owner=owner,
        new_owner=arp_owner(lab, vip, not_node=owner) if ":" not in vip else str(first.answered_by),
        answered_by=str(first.answered_by),
        outage=outage.seconds,
        lost=outage.lost,
        sent=len(probes),
        killed_at=killed_at,
        answered_share=share,
        window=window,
        one_flow_outage=(
            probe.longest_outage(runs[1], after=killed_at).seconds if also_one_flow else None
        ),
    )


def announced_by(kube: Kube, name: str) -> str | None:
    """The node the ServiceL2Status of Service ``name`` names (what ``kubectl`` users see)."""
    obj = get_or_none(kube, SERVICEL2STATUSES.path(namespace=NAMESPACE, name=name))
    node = ((obj or {}).get("status") or {}).get("node")
    return str(node) if node else None


def wait_announced_by(kube: Kube, name: str, node: str, *, timeout: float = 5.0) -> str | None:
    """Wait until the ServiceL2Status names ``node``; the last node seen (None if none)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = announced_by(kube, name)
        if seen == node or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)  # polling a condition with a deadline

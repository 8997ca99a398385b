"""Whole real lab: the data path only real kube-proxy and real Pods have.

One real lab (3 nodes, dual-stack pool, 2 echo pods per node) for the module. What the tutorials
describe and lbd must get right on top of it (docs/SPEAKER.md):

- ``externalTrafficPolicy: Local``: announced only from a node with a ready local pod; that pod
  sees the client's own address; the announcement moves when the node's last local pod goes;
- ``externalTrafficPolicy: Cluster``: pods on other nodes answer, and see the announcing node's
  address (kube-proxy masquerades);
- ``sessionAffinity: ClientIP`` keeps a client on one pod;
- a Service without ready endpoints is announced by nobody;
- dual-stack: pods answer on both families;
- kube-proxy's iptables mode (the fallback) serves as well, its rules in the node only.

Tests that change the pods put them back (2 per node) before they end, so each test starts from
the same lab.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from functools import partial

import pytest

from lbd.k8s.client import SERVICES
from lbd.lab.cluster import probe, workloads
from lbd.lab.cluster.lab import Lab, kill_node, restore_node, scale
from lbd.lab.scenarios import scenario

from .conftest import LabFactory

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

PODS = 2
CLIENT = "198.18.0.100"
CLIENT6 = "2001:db8:18::100"


@pytest.fixture(scope="module")
def lab(real_module_lab_factory: LabFactory) -> Lab:
    return real_module_lab_factory(nodes=3, ipv6=True, pods_per_node=PODS)


@pytest.fixture
def pods_restored(lab: Lab) -> Iterator[None]:
    try:
        yield
    finally:
        scale(lab, PODS)


def whoami(lab: Lab, vip: str) -> tuple[str, str, str]:
    """(node, pod, client address seen), once the data path answers (a Service's rules reach
    every kube-proxy up to a second after its status is written)."""

    def ask() -> tuple[str, str, str] | None:
        try:
            return scenario.whoami(lab, vip, timeout=1.0)
        except (OSError, scenario.ScenarioError):
            return None

    return scenario.poll(ask, timeout=15.0, what=f"{vip}:9001 to answer")


def new_service(lab: Lab, name: str, **kwargs: object) -> list[str]:
    kube = scenario.host_kube(lab)
    scenario.create_echo_service(kube, name, **kwargs)
    count = 2 if kwargs.get("dual_stack") else 1
    return scenario.wait_for_vips(kube, name, count=count)


def test_etp_local_pod_sees_the_client_and_the_announcement_follows_the_last_local_pod(
    lab: Lab, pods_restored: None
) -> None:
    (vip,) = new_service(lab, "local", etp_local=True)
    owner = scenario.arp_owner(lab, vip)
    seen = [whoami(lab, vip) for _ in range(10)]
    # no extra hop: a pod on the announcing node, and it sees the client's own address
    assert {node for node, _pod, _client in seen} == {owner}
    assert {client for _node, _pod, client in seen} == {CLIENT}

    scale(lab, 1, [owner])
    assert scenario.arp_owner(lab, vip) == owner  # one local pod left: still announced there
    assert {whoami(lab, vip)[1] for _ in range(5)} == {f"echo-{owner}-1"}

    scale(lab, 0, [owner])
    moved = scenario.arp_owner(lab, vip, not_node=owner, timeout=15.0)
    node, _pod, client = whoami(lab, vip)
    assert (node, client) == (moved, CLIENT)


def test_etp_local_is_announced_only_from_the_node_with_a_ready_pod(
    lab: Lab, pods_restored: None
) -> None:
    scale(lab, 0, ["n1", "n2"])
    scale(lab, 1, ["n3"])
    # the ranking alone would spread these over all three nodes (one of three each)
    vips = [new_service(lab, f"only-n3-{i}", etp_local=True)[0] for i in range(6)]
    c = lab.data["client"]
    n3 = lab.node("n3")["mac"]

    def only_n3(vip: str) -> bool:
        macs = probe.arp_who_has(c["netns"], c["ifname"], c["mac"], c["ipv4"], vip, wait=0.3)
        return macs == [n3]

    for vip in vips:
        scenario.poll(partial(only_n3, vip), timeout=15.0, what=f"only n3 to answer for {vip}")
        assert whoami(lab, vip) == ("n3", "echo-n3-1", CLIENT)


def test_etp_cluster_pods_on_other_nodes_answer_and_see_the_node(lab: Lab) -> None:
    (vip,) = new_service(lab, "cluster")
    owner = scenario.arp_owner(lab, vip)
    seen = [whoami(lab, vip) for _ in range(30)]
    nodes = Counter(node for node, _pod, _client in seen)
    pods = {pod for _node, pod, _client in seen}
    # kube-proxy on the owner spreads connections over the 6 pods of all nodes (the chance
    # that 30 connections all land on the owner's two pods is (1/3)^30)
    assert set(nodes) - {owner}, nodes
    assert len(pods) >= 2
    # and masquerades them: every pod sees the announcing node's address, not the client's
    assert {client for _node, _pod, client in seen} == {lab.node(owner)["ipv4"]}


def test_session_affinity_client_ip_keeps_the_client_on_one_pod(lab: Lab) -> None:
    (vip,) = new_service(lab, "sticky", session_affinity=True)
    pods = {whoami(lab, vip)[1] for _ in range(20)}
    assert len(pods) == 1, pods


def test_service_without_ready_endpoints_is_announced_by_nobody(
    lab: Lab, pods_restored: None
) -> None:
    kube = scenario.host_kube(lab)
    c = lab.data["client"]

    def arp(vip: str) -> list[str]:
        return probe.arp_who_has(c["netns"], c["ifname"], c["mac"], c["ipv4"], vip, wait=0.5)

    svc = scenario.echo_service("nobody")
    svc["spec"]["selector"] = {"app": "nothing-runs-this"}
    kube.create(SERVICES.path(namespace="default"), svc)
    (none_vip,) = scenario.wait_for_vips(kube, "nobody")
    (vip,) = new_service(lab, "emptied")
    owner = scenario.arp_owner(lab, vip)
    assert arp(none_vip) == []

    scale(lab, 0)  # every pod gone: the Service's EndpointSlice is empty
    scenario.poll(lambda: arp(vip) == [], timeout=15.0, what=f"nobody to announce {vip}")
    assert arp(none_vip) == []

    scale(lab, PODS)
    assert scenario.arp_owner(lab, vip, timeout=15.0) == owner


def test_dual_stack_pods_answer_on_both_families(lab: Lab) -> None:
    v4, v6 = sorted(new_service(lab, "dual", dual_stack=True), key=lambda v: ":" in v)
    assert v6.startswith("2001:db8:18::100:")
    node4, _pod4, client4 = whoami(lab, v4)
    node6, _pod6, client6 = whoami(lab, v6)
    assert {node4, node6} <= {"n1", "n2", "n3"}
    owner = scenario.arp_owner(lab, v4)
    # Cluster policy: masqueraded to the owner's address of each family
    assert client4 == lab.node(owner)["ipv4"]
    assert client6 == lab.node(owner)["ipv6"]

    local4, local6 = sorted(
        new_service(lab, "dual-local", dual_stack=True, etp_local=True), key=lambda v: ":" in v
    )
    assert whoami(lab, local4)[2] == CLIENT
    node, _pod, client = whoami(lab, local6)
    assert client == CLIENT6
    assert node == scenario.arp_owner(lab, local4)  # one Service, one owner for both families


def test_kill_node_marks_its_pods_not_ready_after_the_eviction_delay(lab: Lab) -> None:
    (vip,) = new_service(lab, "evict")
    owner = scenario.arp_owner(lab, vip)
    kube = scenario.host_kube(lab)
    started = time.monotonic()
    marked = kill_node(lab, owner, pod_eviction_delay=1.0)
    took = time.monotonic() - started
    try:
        assert took >= 1.0
        assert marked == [f"echo-{owner}-{k}" for k in range(1, PODS + 1)]
        assert not any(workloads.ready_condition(p) for p in workloads.pods_on(kube, owner))
        # the new owner's kube-proxy leaves the dead node's pods out: every connection is
        # answered (with the dead node's 2 of 6 pods still in, 20 in a row would succeed with a
        # chance of (2/3)^20)
        scenario.arp_owner(lab, vip, not_node=owner, timeout=15.0)

        def all_answered() -> bool:
            for _ in range(20):
                try:
                    scenario.whoami(lab, vip, timeout=1.0)
                except (OSError, scenario.ScenarioError):
                    return False
            return True

        scenario.poll(all_answered, timeout=30.0, what=f"20 connections in a row to {vip}")
    finally:
        restore_node(lab, owner)
    scenario.poll(
        lambda: all(workloads.ready_condition(p) for p in workloads.pods_on(kube, owner)),
        timeout=15.0,
        what=f"{owner}'s pods ready again",
    )


def test_scale_command_changes_the_pods_per_node(lab: Lab, pods_restored: None) -> None:
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "lbd", "lab", "scale", "3", "--dir", str(lab.dir)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    kube = scenario.host_kube(lab)
    pods = workloads.pods_on(kube)
    assert len(pods) == 9 and all(workloads.ready_condition(p) for p in pods)
    assert sorted(p["status"]["podIP"] for p in pods if p["spec"]["nodeName"] == "n2") == [
        "198.19.130.11",
        "198.19.130.12",
        "198.19.130.13",
    ]


def test_kube_proxy_in_iptables_mode_serves_too_and_stays_in_the_node(
    real_lab_factory: LabFactory,
) -> None:
    root_before = _iptables_save(None)
    lab = real_lab_factory(nodes=1, pods_per_node=1, kube_proxy_mode="iptables")
    (vip,) = new_service(lab, "ipt")
    assert whoami(lab, vip) == ("n1", "echo-n1-1", lab.node("n1")["ipv4"])
    node_rules = _iptables_save(lab.data["nodes"][0]["netns"])
    assert "KUBE-SERVICES" in node_rules and vip in node_rules
    assert _iptables_save(None) == root_before
    assert "KUBE-" not in root_before


def _iptables_save(netns: str | None) -> str:
    import subprocess

    argv = ["iptables-save", "-t", "nat"]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True).stdout
    # the header and footer carry the time of the dump
    return "\n".join(line for line in out.splitlines() if not line.startswith("#"))

"""Whole lab, failures: the owner node dies; the controller leader dies.

Each test disturbs the lab, so each gets its own lab, on each control plane.
"""

from __future__ import annotations

import pytest

from lbd.lab.cluster import bootstrap, supervisor, workloads
from lbd.lab.cluster.lab import kill_node, restore_node
from lbd.lab.scenarios import scenario

from .conftest import LabFactory

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]


def test_owner_node_killed_traffic_resumes_on_another_node(lab_factory: LabFactory) -> None:
    lab = lab_factory(nodes=3, ipv6=True)
    kube = scenario.host_kube(lab)
    scenario.create_echo_service(kube, "web", dual_stack=True)
    vips = scenario.wait_for_vips(kube, "web", count=2)
    vip = next(v for v in vips if ":" not in v)
    vip6 = next(v for v in vips if ":" in v)
    owner = scenario.arp_owner(lab, vip)
    if lab.real:
        # the real lab's answers come from pods on every node (externalTrafficPolicy Cluster)
        scenario.wait_for_answer(lab, vip)
        scenario.wait_for_answer(lab, vip6)
    else:
        assert scenario.wait_for_answer(lab, vip) == owner
        assert scenario.wait_for_answer(lab, vip6) == owner

    result = scenario.measure_failover(lab, vip, owner, kill=lambda: kill_node(lab, owner))

    assert result.new_owner in {"n1", "n2", "n3"} - {owner}
    new_mac = lab.node(result.new_owner)["mac"]
    assert scenario.wait_for_arp(lab, vip) == [new_mac]
    # The IPv6 VIP (NDP) moves with it: one Service, one owner.
    answered6 = scenario.wait_for_answer(lab, vip6, not_node=owner)
    if not lab.real:
        assert answered6 == result.new_owner
    print(f"failover {owner} -> {result.new_owner}: {result.outage:.3f} s, {result.lost} lost")
    if lab.real:
        kube_pods = workloads.pods_on(kube, owner)
        assert kube_pods and not any(workloads.ready_condition(p) for p in kube_pods)

    restore_node(lab, owner)
    # The ranking is stable: the restored node is the VIP's first choice again.
    scenario.poll(
        lambda: scenario.arp_owner(lab, vip) == owner,
        timeout=15.0,
        what=f"{owner} to answer ARP for {vip} again",
    )
    if not lab.real:
        assert scenario.wait_for_answer(lab, vip, node=owner, timeout=15.0) == owner


def test_controller_leader_killed_new_services_still_get_addresses(
    lab_factory: LabFactory,
) -> None:
    lab = lab_factory(nodes=1)
    kube = scenario.host_kube(lab)
    leader = bootstrap.wait_for_leader(kube)
    process = leader.removeprefix("lbd-")  # identity lbd-controller-N runs as controller-N
    assert process in lab.data["processes"], leader
    supervisor.request(lab.prefix, "stop", names=[process], signal="SIGKILL")

    scenario.create_echo_service(kube, "after-leader-died")
    (vip,) = scenario.wait_for_vips(kube, "after-leader-died", timeout=30.0)
    assert vip.startswith("198.18.100.")
    assert bootstrap.leader(kube) not in (None, leader)

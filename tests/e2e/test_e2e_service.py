"""Whole lab, lbd's own programs: a Service gets an address and the client reaches it.

One lab (3 nodes, dual-stack pool) per control plane for the module: these tests only add
Services, so they do not disturb each other. On the stand-in lab the node that announces a VIP is
also the one that answers; on the real lab a pod answers, on any node unless the Service has
``externalTrafficPolicy: Local``, so the owner is asked of ARP there, and the tests that compare
owners use ``Local`` Services (answered by a pod on the owner).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from lbd.k8s.client import SERVICES
from lbd.lab.cluster import probe
from lbd.lab.cluster.lab import Lab
from lbd.lab.scenarios import scenario

from .conftest import LabFactory

pytestmark = [pytest.mark.needs_root]


@pytest.fixture(scope="module")
def lab(module_lab_factory: LabFactory) -> Lab:
    return module_lab_factory(nodes=3, ipv6=True)


def test_service_gets_an_address_and_the_client_reaches_it(lab: Lab) -> None:
    kube = scenario.host_kube(lab)
    scenario.create_echo_service(kube, "web")
    (vip,) = scenario.wait_for_vips(kube, "web")
    assert vip.startswith("198.18.100.")
    answers = scenario.wait_for_arp(lab, vip)
    macs = {n["mac"]: n["name"] for n in lab.data["nodes"]}
    assert len(answers) == 1 and answers[0] in macs, f"ARP answers for {vip}: {answers}"
    owner = macs[answers[0]]
    if not lab.real:
        assert scenario.wait_for_answer(lab, vip) == owner
        assert scenario.tcp(lab, vip) == owner
        return
    # a pod answers, on any node; curl http://VIP/ as in the tutorials
    assert scenario.wait_for_answer(lab, vip) in set(macs.values())
    page = scenario.poll(lambda: _page(lab, vip), timeout=10.0, what=f"http://{vip}/")
    assert page.startswith("pod echo-n") and "on node n" in page


def _page(lab: Lab, vip: str) -> str | None:
    try:
        return scenario.http_get(lab, vip, timeout=1.0)
    except OSError:
        return None


def test_dual_stack_service_is_reachable_on_both_families(lab: Lab) -> None:
    kube = scenario.host_kube(lab)
    # on the real lab, Local: the pod that answers is on the announcing node
    scenario.create_echo_service(kube, "dual", dual_stack=True, etp_local=lab.real)
    vips = scenario.wait_for_vips(kube, "dual", count=2)
    v4 = [v for v in vips if ":" not in v]
    v6 = [v for v in vips if ":" in v]
    assert len(v4) == 1 and len(v6) == 1
    assert v6[0].startswith("2001:db8:18::100:")
    owner4 = scenario.wait_for_answer(lab, v4[0])
    owner6 = scenario.wait_for_answer(lab, v6[0])
    # All VIPs of one Service are ranked by its first VIP: one node announces both.
    assert owner4 == owner6
    assert probe.tcp_ask(lab.data["client"]["netns"], v6[0]) == owner6
    if lab.real:
        assert scenario.arp_owner(lab, v4[0]) == owner4


def test_a_service_without_endpoints_is_not_announced(lab: Lab) -> None:
    kube = scenario.host_kube(lab)
    svc = scenario.echo_service("noeps")
    svc["spec"]["selector"] = {"app": "nothing-runs-this"}
    kube.create(SERVICES.path(namespace="default"), svc)
    (vip,) = scenario.wait_for_vips(kube, "noeps")
    c = lab.data["client"]
    assert probe.arp_who_has(c["netns"], c["ifname"], c["mac"], c["ipv4"], vip, wait=1.0) == []


def test_fifty_services_spread_over_all_nodes(lab: Lab) -> None:
    kube = scenario.host_kube(lab)
    names = [f"many-{i}" for i in range(50)]
    for name in names:
        # on the real lab, Local: the answer names the announcing node (pods are on all nodes)
        scenario.create_echo_service(kube, name, etp_local=lab.real)
    vips = {name: scenario.wait_for_vips(kube, name, timeout=30.0)[0] for name in names}
    assert len(set(vips.values())) == 50
    owners = Counter(scenario.wait_for_answer(lab, vip, timeout=20.0) for vip in vips.values())
    # Rendezvous ranking spreads VIPs evenly; with 50 VIPs and 3 nodes every node has some
    # (the chance that one has none is about 3 * (2/3)^50, i.e. never).
    assert set(owners) == {"n1", "n2", "n3"}, owners
    assert min(owners.values()) >= 5, owners


def test_lbd_status_and_doctor_name_the_node_that_answers(lab: Lab) -> None:
    """``lbd status`` (issue 15) on a live lab: the owner it shows, read from the speakers'
    ServiceL2Status, is the node whose MAC answers ARP; ``lbd doctor`` finds the Service served."""
    import json
    import subprocess
    import sys

    kube = scenario.host_kube(lab)
    scenario.create_echo_service(kube, "opsview", etp_local=lab.real)
    (vip,) = scenario.wait_for_vips(kube, "opsview")
    owner = scenario.arp_owner(lab, vip)

    def lbd(*args: str) -> tuple[int, dict[str, Any]]:
        res = subprocess.run(
            [sys.executable, "-m", "lbd", *args, "--kubeconfig", str(lab.host_kubeconfig)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert res.returncode in (0, 1), res.stderr
        return res.returncode, json.loads(res.stdout)

    def shown() -> dict[str, Any] | None:
        _, data = lbd("status", "-o", "json")
        row = next(s for s in data["services"] if s["service"] == "default/opsview")
        return data if row["node"] else None

    data = scenario.poll(shown, timeout=10.0, what="a ServiceL2Status for default/opsview")
    row = next(s for s in data["services"] if s["service"] == "default/opsview")
    assert row["addresses"] == [vip]
    assert row["node"] == owner, f"status says {row['node']}, ARP answered by {owner}"
    assert row["addressAssigned"]["reason"] == "Assigned"
    announcing = {s["node"]: s["announces"] for s in data["speakers"]}
    assert "default/opsview" in announcing[owner]
    _, report = lbd("doctor", "-o", "json", "--speaker-metrics", "none")
    served = [
        f
        for f in report["findings"]
        if f["check"] == "ServicesServed" and f["subject"] == "Service default/opsview"
    ]
    assert served == []  # not stuck: it has an address and an owner

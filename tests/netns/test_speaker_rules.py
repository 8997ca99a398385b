"""Eligibility rules end to end: the right node answers ARP after each change to a Node, an
L2Advertisement, a Service or its endpoints (three speakers, see ``test_speaker_lab.py``).

Each test puts back what it changed, so the module shares one lab.
"""

from __future__ import annotations

import time

import pytest

from tests.netns.test_speaker_lab import NS, SpeakerLab, module_lab, wait_for

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

EXCLUDE = "node.kubernetes.io/exclude-from-external-load-balancers"


lab = module_lab("lr")


def service(lab: SpeakerLab, name: str, vip: str, **kw: object) -> tuple[str, str, str]:
    lab.create_service(name, [vip], **kw)  # type: ignore[arg-type]
    first, second, third = lab.ranked(vip)
    return first, second, third


def test_exclusion_label_moves_the_vip_and_removing_it_brings_it_back(lab: SpeakerLab) -> None:
    vip = "198.18.100.51"
    first, second, _ = service(lab, "excl", vip)
    lab.expect_owner(vip, first)
    lab.patch_node(first, {"metadata": {"labels": {EXCLUDE: ""}}})
    lab.expect_owner(vip, second)
    lab.patch_node(first, {"metadata": {"labels": {EXCLUDE: None}}})
    lab.expect_owner(vip, first)


def test_ready_false_excludes_ready_unknown_does_not(lab: SpeakerLab) -> None:
    vip = "198.18.100.52"
    first, second, _ = service(lab, "ready", vip)
    lab.expect_owner(vip, first)
    lab.set_node_status(first, ready="False")
    lab.expect_owner(vip, second)
    # Unknown: the kubelet lost the API server; heartbeats say the node is fine
    lab.set_node_status(first, ready="Unknown")
    lab.expect_owner(vip, first)
    lab.set_node_status(first, ready="True")
    lab.expect_owner(vip, first)


def test_drain_annotation(lab: SpeakerLab) -> None:
    vip = "198.18.100.53"
    first, second, _ = service(lab, "drain", vip)
    lab.expect_owner(vip, first)
    lab.patch_node(first, {"metadata": {"annotations": {"lbd.io/drain": "true"}}})
    lab.expect_owner(vip, second)
    lab.patch_node(first, {"metadata": {"annotations": {"lbd.io/drain": None}}})
    lab.expect_owner(vip, first)


def test_node_selectors_and_interfaces_of_the_advertisement(lab: SpeakerLab) -> None:
    vip = "198.18.100.54"
    first, _, third = service(lab, "adsel", vip)
    lab.expect_owner(vip, first)
    try:
        lab.set_advertisement(
            {"nodeSelectors": [{"matchLabels": {"kubernetes.io/hostname": third}}]}
        )
        lab.expect_owner(vip, third)
        lab.set_advertisement({"interfaces": ["eth7"]})  # no node has it: nobody may announce
        lab.expect_owner(vip, None)
        lab.set_advertisement({"interfaces": ["eth0"]})
        lab.expect_owner(vip, first)
    finally:
        lab.set_advertisement({})
    lab.expect_owner(vip, first)


def test_etp_local_only_nodes_with_local_ready_endpoints(lab: SpeakerLab) -> None:
    vip = "198.18.100.55"
    first, second, third = lab.ranked(vip)
    lab.create_service("local", [vip], etp="Local", endpoints=[third])
    lab.expect_owner(vip, third)
    lab.set_endpoints("local", [second, third])
    lab.expect_owner(vip, second)
    lab.set_endpoints("local", [second, third], ready=False)  # none ready: nobody
    lab.expect_owner(vip, None)
    lab.set_endpoints("local", [first])
    lab.expect_owner(vip, first)


def test_no_endpoints_nobody_answers(lab: SpeakerLab) -> None:
    vip = "198.18.100.56"
    first = lab.ranked(vip)[0]
    lab.create_service("empty", [vip], endpoints=[])
    lab.expect_owner(vip, None)
    lab.set_endpoints("empty", lab.nodes)
    lab.expect_owner(vip, first)


def test_shared_ip_is_announced_from_one_node(lab: SpeakerLab) -> None:
    vip = "198.18.100.57"
    first = lab.ranked(vip)[0]
    lab.create_service("shared-a", [vip])
    lab.create_service("shared-b", [vip])
    lab.expect_owner(vip, first)
    for name in ("shared-a", "shared-b"):
        deadline = time.monotonic() + 10
        while (lab.l2_status(name) or {}).get("status", {}).get("node") != first:
            assert time.monotonic() < deadline, f"{name}: ServiceL2Status not written"
            time.sleep(0.05)


def test_service_deleted_stops_answering_and_status_goes(lab: SpeakerLab) -> None:
    vip = "198.18.100.58"
    first = lab.ranked(vip)[0]
    lab.create_service("gone", [vip])
    lab.expect_owner(vip, first)
    wait_for(lambda: lab.l2_status("gone"), 10, "ServiceL2Status written")
    lab.delete_service("gone")
    lab.expect_owner(vip, None)
    deadline = time.monotonic() + 10
    while lab.l2_status("gone") is not None:
        assert time.monotonic() < deadline, "ServiceL2Status of a deleted Service stays"
        time.sleep(0.05)


def test_foreign_load_balancer_class_is_not_announced(lab: SpeakerLab) -> None:
    vip = "198.18.100.59"
    lab.create_service("foreign", [vip])
    lab.expect_owner(vip, lab.ranked(vip)[0])
    # another implementation's class: never ours (the class is immutable: make a new Service)
    lab.delete_service("foreign")
    lab.expect_owner(vip, None)
    svc = {
        "metadata": {"name": "foreign2", "namespace": NS},
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": "example.com/other",
            "ports": [{"port": 9000, "protocol": "UDP"}],
        },
    }
    lab.k(lab.core.create_namespaced_service, NS, svc)
    lab.k(
        lab.core.patch_namespaced_service_status,
        "foreign2",
        NS,
        {"status": {"loadBalancer": {"ingress": [{"ip": vip}]}}},
    )
    lab.set_endpoints("foreign2", lab.nodes)
    lab.stays(vip, None, seconds=1.0)

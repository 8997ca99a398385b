"""The lab's pure parts: layout, the failover measure, the endpoints and kube-proxy stand-ins."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from lbd.core import arp
from lbd.lab.cluster.lab import LabError, LabOptions, up
from lbd.lab.cluster.layout import LayoutError, plan
from lbd.lab.cluster.probe import Probe, arp_request_frame, longest_outage, parse_arp_reply
from lbd.lab.standins.endpoints import desired_slices
from lbd.lab.standins.kubeproxy import ingress_ips


def test_layout_follows_lab_md_addressing():
    layout = plan("lt1", 3, ipv6_pool=True)
    assert layout.control_plane.ipv4 == "198.18.0.1"
    assert [n.ipv4 for n in layout.nodes] == ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
    assert [n.name for n in layout.nodes] == ["n1", "n2", "n3"]
    assert layout.client.ipv4 == "198.18.0.100"
    assert layout.api_url == "http://198.18.0.1:6443"
    assert layout.namespaces == ("lt1-sw", "lt1-cp", "lt1-n1", "lt1-n2", "lt1-n3", "lt1-c1")


def test_every_address_is_in_the_documentation_ranges_and_unique():
    layout = plan("lt1", 89)
    v4 = [ipaddress.ip_address(m.ipv4) for m in layout.members]
    v6 = [ipaddress.ip_address(m.ipv6) for m in layout.members]
    assert all(a in ipaddress.ip_network("198.18.0.0/15") for a in v4)
    assert all(a in ipaddress.ip_network("2001:db8::/32") for a in v6)
    assert len(set(v4)) == len(set(v6)) == len({m.mac for m in layout.members}) == 91
    assert all(len(ns) <= 15 for ns in layout.namespaces)


def test_mac_embeds_the_ipv4_address_and_is_locally_administered():
    n1 = plan("lt1", 1).nodes[0]
    assert n1.mac == "02:00:c6:12:00:0b"
    assert int(n1.mac[:2], 16) & 0x02


@pytest.mark.parametrize(
    ("prefix", "nodes", "field"),
    [
        ("Upper", 3, "prefix"),
        ("a-b", 3, "prefix"),
        ("waytoolongprefix", 3, "prefix"),
        ("lt1", 0, "nodes"),
        ("lt1", 90, "nodes"),
    ],
    ids=["uppercase prefix", "dash in prefix", "prefix too long", "no nodes", "too many nodes"],
)
def test_bad_parameters_name_the_field(prefix, nodes, field):
    with pytest.raises(LayoutError, match=f"^{field}:"):
        plan(prefix, nodes)


def test_unknown_node_is_a_clear_error():
    with pytest.raises(LayoutError, match="no node named 'n9'"):
        plan("lt1", 2).node("n9")


def test_arp_request_and_reply_round_trip():
    frame = arp_request_frame("02:00:c6:12:00:64", "198.18.0.100", "198.18.100.7")
    assert frame[:6] == b"\xff" * 6
    # The reply the speaker's responder sends for it (lbd.core.arp decides it).
    reply = arp.decide_reply(frame, bytes.fromhex("0200c612000b"), {bytes([198, 18, 100, 7])})
    assert isinstance(reply, bytes)
    assert parse_arp_reply(reply, "198.18.100.7") == "02:00:c6:12:00:0b"
    assert parse_arp_reply(reply, "198.18.100.8") is None
    assert parse_arp_reply(frame, "198.18.100.7") is None  # a request is not an answer


def _probes(pattern: str, interval: float = 0.01) -> list[Probe]:
    return [Probe(i, i * interval, None if c == "." else c) for i, c in enumerate(pattern)]


def test_longest_outage_measures_between_last_and_first_answer():
    out = longest_outage(_probes("aaa....bbb"))
    assert out.seconds == pytest.approx(0.05)
    assert out.lost == 4
    assert out.last_before is not None and out.last_before.answered_by == "a"
    assert out.first_after is not None and out.first_after.answered_by == "b"


def test_longest_outage_picks_the_longest_gap_and_handles_no_gap():
    assert longest_outage(_probes("a.a...a")).lost == 3
    assert longest_outage(_probes("aaaa")).seconds == 0.0


def test_outage_that_never_ends_counts_until_the_last_probe():
    out = longest_outage(_probes("aa...."))
    assert out.first_after is None
    assert out.seconds == pytest.approx(0.04)


def _node(name: str, ip4: str, ip6: str, ready: str = "True") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": ip4},
                {"type": "InternalIP", "address": ip6},
            ],
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


def _svc(name: str, selector: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": selector, "ports": [{"name": "u", "port": 80, "protocol": "UDP"}]}
        | spec,
    }


NODES = [
    _node("n1", "198.18.0.11", "2001:db8:18::11"),
    _node("n2", "198.18.0.12", "2001:db8:18::12", ready="False"),
    _node("n3", "198.18.0.13", "2001:db8:18::13", ready="Unknown"),
]


def test_endpoint_slices_list_ready_nodes_only_on_port_9000():
    slices = desired_slices([_svc("web", {"app": "echo"})], NODES)
    assert list(slices) == ["default/web-ipv4"]
    body = slices["default/web-ipv4"]
    assert body["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
    assert [(e["nodeName"], e["addresses"]) for e in body["endpoints"]] == [("n1", ["198.18.0.11"])]
    assert body["ports"] == [{"name": "u", "port": 9000, "protocol": "UDP"}]


def test_dual_stack_service_gets_one_slice_per_family():
    svc = _svc("dual", {"app": "echo"}, ipFamilyPolicy="RequireDualStack")
    slices = desired_slices([svc], NODES)
    assert sorted(slices) == ["default/dual-ipv4", "default/dual-ipv6"]
    assert slices["default/dual-ipv6"]["addressType"] == "IPv6"
    assert slices["default/dual-ipv6"]["endpoints"][0]["addresses"] == ["2001:db8:18::11"]


@pytest.mark.parametrize(
    "selector",
    [{"app": "web"}, {"app": "echo", "tier": "x"}, {}],
    ids=["other app", "extra label", "no selector"],
)
def test_services_not_selecting_exactly_app_echo_get_no_slices(selector):
    assert desired_slices([_svc("x", selector)], NODES) == {}


def test_kube_proxy_programs_every_load_balancer_ingress_ip_normalized():
    services: list[dict[str, Any]] = [
        {
            "spec": {"type": "LoadBalancer"},
            "status": {
                "loadBalancer": {
                    "ingress": [{"ip": "198.18.100.7"}, {"ip": "2001:db8:18:0:0:0:100:7"}]
                }
            },
        },
        {
            "spec": {"type": "ClusterIP"},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.8"}]}},
        },
        {"spec": {"type": "LoadBalancer"}, "status": {}},
        {
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}, {"hostname": "lb"}]}},
        },
    ]
    assert ingress_ips(services) == {"198.18.100.7", "2001:db8:18::100:7"}


def test_up_refuses_missing_manifests_before_creating_anything(tmp_path: Path) -> None:
    opts = LabOptions(prefix="ltnone", dir=tmp_path / "lab", crds=tmp_path / "no-crds")
    with pytest.raises(LabError, match=r"^crds: .*no-crds is not a directory"):
        up(opts)
    assert not (tmp_path / "lab").exists()

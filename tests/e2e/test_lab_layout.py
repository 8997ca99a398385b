"""The lab's pure parts: layout, the failover measure, the endpoints and kube-proxy stand-ins,
and the real lab's addressing, kube-proxy configuration, pods and process plan."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from lbd.core import arp
from lbd.lab.cluster import kubeproxy, labdir, processes, realplane, workloads
from lbd.lab.cluster.lab import LabError, LabOptions, choose_control_plane, up
from lbd.lab.cluster.layout import (
    MAX_PODS_PER_NODE,
    POD_CIDRS,
    SERVICE_CIDRS,
    LayoutError,
    plan,
)
from lbd.lab.cluster.probe import Probe, arp_request_frame, longest_outage, parse_arp_reply
from lbd.lab.standins.endpoints import desired_slices
from lbd.lab.standins.kubeproxy import ingress_ips


def test_layout_follows_lab_md_addressing():
    layout = plan("lt1", 3, ipv6_pool=True)
    assert layout.control_plane.ipv4 == "198.18.0.1"
    assert [n.ipv4 for n in layout.nodes] == ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
    assert [n.name for n in layout.nodes] == ["n1", "n2", "n3"]
    assert layout.client.ipv4 == "198.18.0.100"
    assert layout.api_url == "https://198.18.0.1:6443"
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


# -- the real lab's pure parts: pod addressing, kube-proxy's configuration, the process plan ------


def test_pod_ranges_and_addresses_stay_in_the_lab_ranges_and_apart():
    layout = plan("lt1", 89)
    seen: set[str] = set()
    for node in layout.nodes:
        v4 = ipaddress.IPv4Network(node.pod_cidrs()[0])
        v6 = ipaddress.IPv6Network(node.pod_cidrs()[1])
        assert v4.subnet_of(ipaddress.IPv4Network(POD_CIDRS[0]))
        assert v6.subnet_of(ipaddress.IPv6Network(POD_CIDRS[1]))
        for slot in (1, 2, MAX_PODS_PER_NODE):
            a4, a6 = node.pod_addresses(slot)
            assert ipaddress.ip_address(a4) in v4 and ipaddress.ip_address(a6) in v6
            assert node.pod_slot(a4) == slot and node.pod_slot(a6) == slot
            seen |= {a4, a6}
    assert len(seen) == 89 * 3 * 2
    nets4 = [ipaddress.IPv4Network(SERVICE_CIDRS[0]), ipaddress.IPv4Network(POD_CIDRS[0])]
    nets6 = [ipaddress.IPv6Network(SERVICE_CIDRS[1]), ipaddress.IPv6Network(POD_CIDRS[1])]
    for net4 in nets4:
        assert net4.subnet_of(ipaddress.IPv4Network("198.18.0.0/15"))
        assert not net4.overlaps(ipaddress.IPv4Network("198.18.0.0/16"))  # the switch segment
    for net6 in nets6:
        assert net6.subnet_of(ipaddress.IPv6Network("2001:db8::/32"))
        assert not net6.overlaps(ipaddress.IPv6Network("2001:db8:18::/64"))
    assert not nets4[0].overlaps(nets4[1]) and not nets6[0].overlaps(nets6[1])


def test_first_pod_of_n1_reads_like_its_name():
    n1 = plan("lt1", 1).nodes[0]
    assert n1.pod_addresses(1) == ("198.19.129.11", "2001:db8:1a:1::11")
    assert n1.pod_netns("lt1", 1) == "lt1-n1p1"
    assert n1.pod_slot("198.19.130.11") is None  # n2's
    assert n1.pod_slot("198.18.0.11") is None


def test_kube_proxy_leaves_global_conntrack_settings_alone(tmp_path: Path) -> None:
    node = plan("lt1", 2).nodes[1]
    cfg = kubeproxy.config(node, tmp_path / "kp.kubeconfig", kubeproxy.Mode.NFTABLES)
    assert cfg["mode"] == "nftables" and cfg["hostnameOverride"] == "n2"
    assert cfg["clusterCIDR"] == ",".join(POD_CIDRS)
    assert cfg["conntrack"]["maxPerCore"] == 0  # nf_conntrack_max is global to the machine
    assert all(v in (0, "0s") for v in cfg["conntrack"].values())


def test_echo_pods_are_bound_to_their_node_and_labelled():
    pod = workloads.echo_pod("n2", 3)
    assert pod["metadata"]["name"] == "echo-n2-3"
    assert pod["metadata"]["labels"]["app"] == "echo"
    assert pod["spec"]["nodeName"] == "n2"
    ports = {(p["containerPort"], p["protocol"]) for p in pod["spec"]["containers"][0]["ports"]}
    assert ports == {(9000, "TCP"), (9000, "UDP"), (9001, "TCP"), (80, "TCP")}


def test_the_lab_kubelet_reports_a_running_ready_pod_and_sees_a_changed_status():
    from lbd.lab.cluster import podnet
    from lbd.lab.standins.kubelet import RunningPod, _reported, pod_status

    node = plan("lt1", 1).nodes[0]
    net = podnet.pod_net("lt1", node, 2)
    running = RunningPod("uid", "echo-n1-2", "default", net, None, None, "t")  # type: ignore[arg-type]
    status = pod_status(running, node)
    assert status["phase"] == "Running"
    assert status["podIP"] == "198.19.129.12"
    assert [i["ip"] for i in status["podIPs"]] == ["198.19.129.12", "2001:db8:1a:1::12"]
    assert status["hostIP"] == "198.18.0.11"
    assert {c["type"] for c in status["conditions"] if c["status"] == "True"} >= {"Ready"}
    marked = dict(status, conditions=[{"type": "Ready", "status": "False"}])
    assert _reported(status) == _reported(dict(status))
    assert _reported(marked) != _reported(status)  # kill-node's mark is put back by the kubelet


def test_real_lab_process_plan_runs_the_kubelet_outside_ip_netns_exec(tmp_path: Path) -> None:
    layout = plan("lt1", 2)
    procs = processes.real(
        layout,
        labdir.LabFiles(tmp_path),
        controllers=2,
        manifests=(tmp_path / "crds",),
        kube_proxy=tmp_path / "kube-proxy",
        assets=tmp_path,
    )
    by_name = {p.name: p for p in procs}
    assert {"control-plane", "forward", "controller-1", "controller-2"} <= set(by_name)
    assert by_name["control-plane"].autostart and by_name["control-plane"].netns == "lt1-cp"
    for node in ("n1", "n2"):
        assert by_name[f"kubelet-{node}"].host_mounts  # it names pod namespaces for everyone
        assert by_name[f"kube-proxy-{node}"].argv[0] == str(tmp_path / "kube-proxy")
        assert by_name[f"kube-proxy-{node}"].netns == f"lt1-{node}"
    assert "endpoints" not in by_name and "echo-n1" not in by_name


def test_without_binaries_the_first_line_says_stand_in_and_how_to_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    choice = choose_control_plane(None)
    assert choice.kind == "stand-in" and choice.assets is None
    assert "make k8s" in choice.line
    with pytest.raises(LabError, match=r"^control-plane: real asked for"):
        choose_control_plane("real")
    with pytest.raises(LabError, match=r"^control-plane: 'kind' is not one of"):
        choose_control_plane("kind")


def test_real_audit_log_reads_as_distinct_records_with_counts(tmp_path: Path) -> None:
    log = realplane.audit_log_path(tmp_path)
    log.parent.mkdir(parents=True)
    user = {"username": "system:serviceaccount:lbd-system:lbd-speaker"}
    events = [
        {"verb": "list", "user": user, "objectRef": {"resource": "services"},
         "responseStatus": {"code": 200}},
        {"verb": "list", "user": user, "objectRef": {"resource": "services"},
         "responseStatus": {"code": 200}},
        {"verb": "patch", "user": user,
         "objectRef": {"resource": "services", "subresource": "status", "namespace": "default"},
         "responseStatus": {"code": 403}},
        {"verb": "get", "user": user, "requestURI": "/version?timeout=5s",
         "responseStatus": {"code": 200}},
    ]  # fmt: skip
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    records = {
        (r.verb, r.resource, r.subresource, r.path): r for r in realplane.audit_records(tmp_path)
    }
    assert records[("list", "services", "", "")].count == 2
    assert not records[("patch", "services", "status", "")].allowed
    assert records[("get", "", "", "/version")].allowed

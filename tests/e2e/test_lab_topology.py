"""The lab's plumbing, without lbd's own programs: topology, processes, up/down, kill/restore.

The tests that take ``lab`` run on both control planes; those about a stand-in run on the
stand-in lab only, and their real counterparts (real kube-proxy's rules, the endpointslice
controller, pods in their own namespaces) on the real lab only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from lbd.k8s.client import ENDPOINTSLICES, NODES, SERVICES, load_kube
from lbd.lab.cluster import kubeproxy, probe, supervisor, topology, workloads
from lbd.lab.cluster.lab import Lab, kill_node, restore_node
from lbd.lab.cluster.layout import plan
from lbd.lab.cluster.netns import call_in_netns, namespaces_with_prefix, pids_in_namespaces
from lbd.lab.scenarios.scenario import poll

from .conftest import assert_nothing_left

pytestmark = pytest.mark.needs_root


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    return poll(condition, timeout=timeout, what=what)


@pytest.fixture
def topo(netns_prefix):
    layout = plan(netns_prefix, 2)
    try:
        topology.build(layout)
        yield layout
    finally:
        topology.destroy(netns_prefix)


def test_namespaces_are_created_and_client_reaches_every_node(topo):
    assert namespaces_with_prefix(topo.prefix) == sorted(topo.namespaces)
    for node in topo.nodes:
        assert probe.ping(topo.client.netns, node.ipv4)
    assert probe.ping(topo.nodes[0].netns, topo.control_plane.ipv4)


def test_nothing_of_the_lab_is_in_the_root_namespace(topo):
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = {link.get("ifname") for link in ipr.get_links()}
    assert not any(topo.prefix in (name or "") for name in names)
    assert not {"br0", "n1", "n2", "cp", "c1"} & names - {None}


def test_arp_for_a_node_is_answered_by_that_node_mac(topo):
    c = topo.client
    n2 = topo.nodes[1]
    assert probe.arp_who_has(c.netns, c.ifname, c.mac, c.ipv4, n2.ipv4) == [n2.mac]


def test_unplugged_node_is_unreachable_until_plugged_back(topo):
    n1 = topo.nodes[0]
    topology.set_switch_port(topo, n1, up=False)
    assert not probe.ping(topo.client.netns, n1.ipv4, timeout=0.3)
    topology.set_switch_port(topo, n1, up=True)
    assert wait_for(lambda: probe.ping(topo.client.netns, n1.ipv4, timeout=0.3), what="ping")


def test_destroy_kills_processes_inside_and_is_idempotent(netns_prefix):
    layout = plan(netns_prefix, 1)
    topology.build(layout)
    try:
        sleeper = subprocess.Popen(["ip", "netns", "exec", layout.nodes[0].netns, "sleep", "600"])
        wait_for(lambda: pids_in_namespaces([layout.nodes[0].netns]), what="sleeper in netns")
    finally:
        removed = topology.destroy(netns_prefix)
    assert sleeper.wait(5) != 0
    assert sorted(removed) == sorted(layout.namespaces)
    assert namespaces_with_prefix(netns_prefix) == []
    assert topology.destroy(netns_prefix) == []


def test_build_refuses_an_existing_prefix(topo):
    with pytest.raises(topology.TopologyError, match="already exist"):
        topology.build(topo)


def test_sysctl_is_set_only_inside_the_namespace(topo):
    path = "/proc/sys/net/ipv6/conf/default/accept_dad"
    inside = call_in_netns(topo.nodes[0].netns, lambda: Path(path).read_text().strip())
    assert inside == "0"


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(nodes=2, ipv6=True, pods_per_node=2)


@pytest.fixture
def stand_in(lab: Lab) -> Lab:
    if lab.real:
        pytest.skip("about a stand-in; the real lab runs the real component")
    return lab


@pytest.fixture
def real(lab: Lab) -> Lab:
    if not lab.real:
        pytest.skip("about a real component; the stand-in lab runs a stand-in for it")
    return lab


def test_up_writes_the_lab_json_contract(lab):
    data = json.loads((lab.dir / "lab.json").read_text())
    assert data["api"]["url"] == "https://198.18.0.1:6443"  # both control planes speak TLS
    assert data["control_plane"]["netns"] == f"{lab.prefix}-cp"
    assert data["control_plane"]["kind"] == ("real" if lab.real else "stand-in")
    assert data["client"]["ipv4"] == "198.18.0.100"
    assert [n["name"] for n in data["nodes"]] == ["n1", "n2"]
    assert data["nodes"][0]["ipv4"] == "198.18.0.11"
    assert data["pools"] == {"ipv4": "198.18.100.0/24", "ipv6": "2001:db8:18::100:0/120"}
    assert (lab.dir / "kubeconfig").exists() and (lab.dir / "logs").is_dir()


def test_nodes_are_registered_ready_with_internal_ips(lab):
    kube = load_kube(str(lab.host_kubeconfig))
    nodes = {n["metadata"]["name"]: n for n in kube.get(NODES.path())["items"]}
    assert set(nodes) == {"n1", "n2"}
    addrs = [a["address"] for a in nodes["n1"]["status"]["addresses"] if a["type"] == "InternalIP"]
    assert addrs == ["198.18.0.11", "2001:db8:18::11"]
    ready = [c for c in nodes["n1"]["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"


def test_lab_kubeconfig_works_from_inside_the_lab(lab):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lbd",
            "lab",
            "exec",
            "--dir",
            str(lab.dir),
            "--node",
            "n1",
            "--",
            sys.executable,
            "-c",
            "import os; from lbd.k8s.client import load_kube, NODES; "
            "print(len(load_kube(os.environ['KUBECONFIG']).get(NODES.path())['items']))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip() == "2"


def test_echo_answers_with_the_node_name_on_each_node(stand_in):
    client = stand_in.data["client"]["netns"]
    for node in stand_in.data["nodes"]:
        assert probe.udp_ask(client, node["ipv4"]) == node["name"]
        assert probe.udp_ask(client, node["ipv6"]) == node["name"]
        assert probe.tcp_ask(client, node["ipv4"]) == node["name"]


def test_each_pod_has_its_namespace_and_answers_from_any_node(real):
    kube = load_kube(str(real.host_kubeconfig))
    pods = workloads.pods_on(kube)
    assert sorted(p["metadata"]["name"] for p in pods) == [
        "echo-n1-1",
        "echo-n1-2",
        "echo-n2-1",
        "echo-n2-2",
    ]
    layout = real.layout
    for pod in pods:
        node = layout.node(pod["spec"]["nodeName"])
        status = pod["status"]
        slot = int(pod["metadata"]["name"].rsplit("-", 1)[1])
        assert [i["ip"] for i in status["podIPs"]] == list(node.pod_addresses(slot))
        assert status["phase"] == "Running" and workloads.ready_condition(pod)
        assert node.pod_netns(real.prefix, slot) in namespaces_with_prefix(real.prefix)
        # routed: from its own node and from the other one, over both families
        for asker in layout.nodes:
            for ip in node.pod_addresses(slot):
                assert probe.udp_ask(asker.netns, ip) == node.name, (asker.name, ip)
        assert probe.tcp_ask(layout.nodes[0].netns, status["podIP"], port=9001).split()[:2] == [
            node.name,
            pod["metadata"]["name"],
        ]


def _service(
    name: str, selector: dict[str, str] | None = None, lb_class: str | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "type": "LoadBalancer",
            "selector": selector or {"app": "echo"},
            "ports": [{"name": "udp", "port": 9000, "protocol": "UDP"}],
            **({"loadBalancerClass": lb_class} if lb_class else {}),
        },
    }


def _foreign_ingress(kube: Any, name: str, ip: str) -> None:
    """A Service of another load-balancer class, its ingress IP set by "someone else": lbd's
    controller leaves it alone, kube-proxy programs it all the same."""
    kube.create(SERVICES.path(namespace="default"), _service(name, lb_class="example.com/other"))
    kube.patch(
        SERVICES.path(namespace="default", name=name, subresource="status"),
        {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}},
    )


def test_kube_proxy_stand_in_puts_ingress_ips_on_lo_of_every_node(stand_in):
    lab = stand_in
    kube = load_kube(str(lab.host_kubeconfig))
    _foreign_ingress(kube, "kp", "198.18.100.200")

    def on_lo(netns: str) -> set[str]:
        from pyroute2 import IPRoute

        def addrs() -> set[str]:
            with IPRoute() as ipr:
                return {a.get("IFA_ADDRESS") for a in ipr.get_addr(index=1)}

        return call_in_netns(netns, addrs)

    def has_vip(netns: str) -> bool:
        return "198.18.100.200" in on_lo(netns)

    def lacks_vip(netns: str) -> bool:
        return not has_vip(netns)

    for node in lab.data["nodes"]:
        ns = str(node["netns"])
        wait_for(partial(has_vip, ns), what="vip on lo")
        arp_ignore = call_in_netns(
            node["netns"],
            lambda: Path("/proc/sys/net/ipv4/conf/all/arp_ignore").read_text().strip(),
        )
        assert arp_ignore == "1"
    kube.delete(SERVICES.path(namespace="default", name="kp"))
    for node in lab.data["nodes"]:
        ns = str(node["netns"])
        wait_for(partial(lacks_vip, ns), what="vip removed")


def test_real_kube_proxy_programs_ingress_ips_in_node_namespaces_only(real):
    kube = load_kube(str(real.host_kubeconfig))
    _foreign_ingress(kube, "kp", "198.18.100.201")

    def programmed(ns: str) -> bool:
        return "198.18.100.201" in kubeproxy.ruleset(ns)

    def gone(ns: str) -> bool:
        return not programmed(ns)

    for node in real.data["nodes"]:
        ns = str(node["netns"])
        assert {"ip kube-proxy", "ip6 kube-proxy"} <= set(kubeproxy.tables(ns))
        wait_for(partial(programmed, ns), what="rules for the IP")
    root = kubeproxy.ruleset(None)
    assert "kube-proxy" not in root and "198.18." not in root
    kube.delete(SERVICES.path(namespace="default", name="kp"))
    for node in real.data["nodes"]:
        ns = str(node["netns"])
        wait_for(partial(gone, ns), what="rules gone")


def _slices(kube: Any, svc: str) -> list[dict[str, Any]]:
    q = {"labelSelector": f"kubernetes.io/service-name={svc}"}
    items: list[dict[str, Any]] = kube.get(ENDPOINTSLICES.path(namespace="default"), query=q)[
        "items"
    ]
    return items


def test_endpoints_stand_in_lists_one_ready_endpoint_per_node(stand_in):
    kube = load_kube(str(stand_in.host_kubeconfig))
    kube.create(SERVICES.path(namespace="default"), _service("eps"))
    kube.create(SERVICES.path(namespace="default"), _service("other", {"app": "web"}))
    found = wait_for(lambda: _slices(kube, "eps"), what="endpointslice")
    eps = found[0]["endpoints"]
    assert sorted((e["nodeName"], e["addresses"][0]) for e in eps) == [
        ("n1", "198.18.0.11"),
        ("n2", "198.18.0.12"),
    ]
    assert all(e["conditions"]["ready"] for e in eps)
    assert _slices(kube, "other") == []


def test_endpointslice_controller_lists_the_ready_pods(real):
    kube = load_kube(str(real.host_kubeconfig))
    kube.create(SERVICES.path(namespace="default"), _service("eps-real"))
    kube.create(SERVICES.path(namespace="default"), _service("other-real", {"app": "web"}))

    def full() -> list[dict[str, Any]] | None:
        items = _slices(kube, "eps-real")
        return items if sum(len(s.get("endpoints") or []) for s in items) == 4 else None

    (slice_,) = wait_for(full, what="an endpointslice with the 4 pods")
    labels = slice_["metadata"]["labels"]
    assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    got = sorted(
        (e["targetRef"]["name"], e["nodeName"], e["addresses"][0], e["conditions"]["ready"])
        for e in slice_["endpoints"]
    )
    assert got == [
        ("echo-n1-1", "n1", "198.19.129.11", True),
        ("echo-n1-2", "n1", "198.19.129.12", True),
        ("echo-n2-1", "n2", "198.19.130.11", True),
        ("echo-n2-2", "n2", "198.19.130.12", True),
    ]
    # a selector no pod matches: a slice without endpoints
    other = wait_for(lambda: _slices(kube, "other-real"), what="the empty slice")
    assert all(not s.get("endpoints") for s in other)


def test_kill_node_cuts_it_off_and_restore_brings_it_back(lab):
    client = lab.data["client"]["netns"]
    n2 = lab.node("n2")
    marked = kill_node(lab, "n2")
    assert not probe.ping(client, n2["ipv4"], timeout=0.3)
    if lab.real:
        # no node-lifecycle controller runs: the lab marks the node's pods not ready itself
        assert marked == ["echo-n2-1", "echo-n2-2"]
        kube = load_kube(str(lab.host_kubeconfig))
        assert not any(workloads.ready_condition(p) for p in workloads.pods_on(kube, "n2"))
        assert all(workloads.ready_condition(p) for p in workloads.pods_on(kube, "n1"))
        assert {n["metadata"]["name"] for n in kube.get(NODES.path())["items"]} == {"n1", "n2"}
    restore_node(lab, "n2")
    assert wait_for(lambda: probe.ping(client, n2["ipv4"], timeout=0.3), what="ping n2")
    if lab.real:
        wait_for(
            lambda: all(workloads.ready_condition(p) for p in workloads.pods_on(kube, "n2")),
            what="n2's pods ready again",
        )


def test_kill_node_works_from_inside_a_lab_namespace(lab: Lab) -> None:
    client = lab.data["client"]["netns"]
    n1 = lab.node("n1")
    for verb in ("kill-node", "restore-node"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "lbd",
                "lab",
                "exec",
                "--dir",
                str(lab.dir),
                "--client",
                "--",
                sys.executable,
                "-m",
                "lbd",
                "lab",
                verb,
                "n1",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        if verb == "kill-node":
            assert not probe.ping(client, n1["ipv4"], timeout=0.3)
            status = supervisor.request(lab.prefix, "status")["processes"]
            assert status.get("speaker-n1", {"running": False})["running"] is False
    wait_for(lambda: probe.ping(client, n1["ipv4"], timeout=0.3), what="ping n1")
    status = supervisor.request(lab.prefix, "status")["processes"]
    if "speaker-n1" in status:  # lab.json always names the live speaker
        assert status["speaker-n1"]["running"]
        assert lab.reload().node("n1")["speaker_pid"] == status["speaker-n1"]["pid"]


def test_supervisor_restarts_a_crashed_process(lab):
    # the process that serves what answers on n1: the echo, or the kubelet running n1's pods
    name = "kubelet-n1" if lab.real else "echo-n1"
    before = supervisor.request(lab.prefix, "status")["processes"][name]["pid"]
    import os
    import signal

    os.kill(before, signal.SIGKILL)

    def restarted() -> bool:
        now = supervisor.request(lab.prefix, "status")["processes"][name]
        return bool(now["running"] and now["pid"] != before)

    wait_for(restarted, what=f"{name} restarted")
    if lab.real:
        # the restarted kubelet adopts the pods' namespaces and serves them again
        pod_ip = lab.layout.node("n1").pod_addresses(1)[0]
        wait_for(
            lambda: probe.udp_ask(lab.data["nodes"][1]["netns"], pod_ip) == "n1",
            what="pod echo-n1-1 answering again",
        )
        assert sorted(n for n in namespaces_with_prefix(lab.prefix) if "n1p" in n) == [
            f"{lab.prefix}-n1p1",
            f"{lab.prefix}-n1p2",
        ]
    else:
        wait_for(
            lambda: probe.udp_ask(lab.data["client"]["netns"], "198.18.0.11") == "n1",
            what="echo answering again",
        )


@pytest.mark.slow
def test_down_leaves_nothing_and_tolerates_a_crashed_supervisor(lab_factory):
    lab = lab_factory(nodes=1, pods_per_node=2)
    import os
    import signal

    os.kill(supervisor.request(lab.prefix, "status")["pid"], signal.SIGKILL)
    from lbd.lab.cluster.lab import down

    root_rules = kubeproxy.ruleset(None)
    report = down(prefix=lab.prefix, lab_dir=lab.dir)
    # switch, control plane, node, client (and on the real lab the node's two pods)
    assert len(report.namespaces) == (6 if lab.real else 4)
    assert_nothing_left(lab.prefix, lab.dir, root_rules)


def _kubectl(lab: Lab) -> str | None:
    if lab.real:
        from lbd.lab.control_plane import find_binaries

        return str(find_binaries().kubectl)
    return shutil.which("kubectl")


def test_kubectl_on_the_host_works_with_the_host_kubeconfig(lab: Lab) -> None:
    kubectl = _kubectl(lab)
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "--kubeconfig", str(lab.host_kubeconfig), "get", "nodes", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.split() == ["node/n1", "node/n2"]


def test_kubectl_version_shows_the_real_server(real: Lab) -> None:
    kubectl = _kubectl(real)
    assert kubectl is not None
    out = subprocess.run(
        [kubectl, "--kubeconfig", str(real.host_kubeconfig), "version", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    server = json.loads(out.stdout)["serverVersion"]
    assert server["gitVersion"].startswith("v1.") and server["major"] == "1"

"""``lbd status`` and ``lbd doctor`` against the API server (the stand-in and the real
kube-apiserver), through a kubeconfig as a user runs them.

The cluster is built for the purpose: a running controller assigns addresses from a pool that
fills up (a Service waits with its reason), a ServiceL2Status and a speaker pod say who
announces what (written as admin, as the speakers and the kubelet would), a VIPConflict Event is
a conflict. ``doctor`` gets one cluster with every finding provoked on purpose, and one where all
is well, so each check is seen failing and passing.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from lbd.cli import kubectl_main, main
from lbd.k8s.client import (
    EVENTS,
    L2ADVERTISEMENTS,
    LEASES,
    NODES,
    SERVICEL2STATUSES,
    SERVICES,
    Kube,
)
from lbd.k8s.meta import rfc3339
from lbd.k8s.snapshot_read import CONFIGMAPS, DAEMONSETS, DEPLOYMENTS, PODS
from lbd.metrics import SpeakerMetrics
from tests.k8s.controller_support import (
    Env,
    kube_for,
    namespace,
    pool,
    service,
    wait_addresses,
    wait_for,
)
from tests.k8s.kubectl_support import Kubectl, kubectl_or_skip

SPEAKER_LABELS = {
    "app.kubernetes.io/name": "lbd",
    "app.kubernetes.io/part-of": "lbd",
    "app.kubernetes.io/component": "speaker",
}


def run_cli(capsys, argv: list[str], entry=main) -> tuple[int, str, str]:
    capsys.readouterr()
    code = entry(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def node(kube: Kube, name: str, ip: str, pod_cidr: str | None = None) -> None:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    if pod_cidr:
        body["spec"] = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}
    kube.create(NODES.path(), body)
    status = {
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "ok",
                "lastHeartbeatTime": rfc3339(),
                "lastTransitionTime": rfc3339(),
            }
        ],
    }
    kube.patch(NODES.path(name=name, subresource="status"), {"status": status})


def speaker_pod(kube: Kube, node_name: str, ip: str, port: int, ready: bool = True) -> None:
    """A speaker pod as the DaemonSet and the kubelet leave it: bound, Running, Ready."""
    name = f"lbd-speaker-{node_name}"
    kube.create(
        PODS.path(namespace="lbd-system"),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "lbd-system", "labels": SPEAKER_LABELS},
            "spec": {
                "nodeName": node_name,
                "hostNetwork": True,
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "speaker",
                        "image": "lbd:test",
                        "ports": [{"name": "metrics", "containerPort": port}],
                    }
                ],
            },
        },
    )
    now = rfc3339()
    kube.patch(
        PODS.path(namespace="lbd-system", name=name, subresource="status"),
        {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "hostIP": ip,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "lastTransitionTime": now,
                    }
                ],
            }
        },
    )


def l2status(kube: Kube, svc: str, node_name: str, vips: list[str], ns: str = "default") -> None:
    kube.create(
        SERVICEL2STATUSES.path(namespace=ns),
        {
            "apiVersion": "lbd.io/v1beta1",
            "kind": "ServiceL2Status",
            "metadata": {"name": svc, "namespace": ns},
            "spec": {},
        },
    )
    kube.patch(
        SERVICEL2STATUSES.path(namespace=ns, name=svc, subresource="status"),
        {
            "status": {
                "node": node_name,
                "serviceName": svc,
                "serviceNamespace": ns,
                "interfaces": [{"name": "eth0"}],
                "vips": vips,
                "since": rfc3339(),
            }
        },
    )


def configmap(kube: Kube, name: str, data: dict[str, str]) -> None:
    """A ConfigMap in kube-system (kube-proxy's, Cilium's)."""
    kube.create(
        CONFIGMAPS.path(namespace="kube-system"),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "kube-system"},
            "data": data,
        },
    )


def advertisement(kube: Kube, name: str, pools: list[str] | None = None) -> None:
    kube.create(
        L2ADVERTISEMENTS.path(),
        {
            "apiVersion": "lbd.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": name},
            "spec": {"ipAddressPools": pools} if pools else {},
        },
    )


def conflict_event(kube: Kube, svc: str, ns: str = "default") -> None:
    now = rfc3339()
    kube.create(
        EVENTS.path(namespace=ns),
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{svc}.vipconflict", "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Service", "namespace": ns, "name": svc},
            "type": "Warning",
            "reason": "VIPConflict",
            "message": "198.18.200.1 answered by 02:00:00:00:00:99 too",
            "source": {"component": "lbd-speaker"},
            "reportingComponent": "lbd-speaker",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 3,
        },
    )


def set_condition(kube: Kube, svc: str, ctype: str, status: str, reason: str, message: str) -> None:
    obj = kube.get(SERVICES.path(namespace="default", name=svc))
    conds = [c for c in obj["status"].get("conditions") or [] if c["type"] != ctype]
    conds.append(
        {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": rfc3339(),
        }
    )
    kube.patch(
        SERVICES.path(namespace="default", name=svc, subresource="status"),
        {"status": {"conditions": conds}},
    )


# --------------------------------------------------------------------------- lbd status


def test_status_shows_pools_services_speakers_and_conflicts(lab, tmp_path, capsys):
    env = Env(lab)
    try:
        kube = env.admin
        kubeconfig = str(lab.write_kubeconfig(tmp_path / "kubeconfig"))
        pool(kube, "small", ["198.18.200.1-198.18.200.2"])
        advertisement(kube, "all")
        node(kube, "n1", "198.18.0.11")
        for name in ("web", "api", "late"):
            service(kube, name)
            if name != "late":  # the third one finds the pool full
                wait_addresses(kube, name)
        web_ip = kube.get(SERVICES.path(namespace="default", name="web"))["status"]["loadBalancer"][
            "ingress"
        ][0]["ip"]
        l2status(kube, "web", "n1", [web_ip])
        speaker_pod(kube, "n1", "198.18.0.11", 7473)
        conflict_event(kube, "web")

        def pool_full() -> Any:
            _code, out, _ = run_cli(capsys, ["status", "--kubeconfig", kubeconfig, "-o", "json"])
            data = json.loads(out)
            small = data["pools"][0]
            if (
                small["families"]
                and small["families"][0]["assigned"] == 2
                and small["waitingServices"]
            ):
                late = next(s for s in data["services"] if s["service"] == "default/late")
                if late["addressAssigned"]:
                    return data
            return None

        data = wait_for(pool_full, timeout=15, what="the pool's status to show it full")
        small = data["pools"][0]
        assert small["name"] == "small"
        assert small["state"] == "Exhausted"
        assert small["families"] == [
            {"family": "IPv4", "assigned": 2, "available": 0, "total": 2, "nearExhaustion": True}
        ]
        assert small["waitingServices"] == 1
        assert data["waitingServices"] == 1
        by_key = {s["service"]: s for s in data["services"]}
        assert set(by_key) == {"default/web", "default/api", "default/late"}
        web, late = by_key["default/web"], by_key["default/late"]
        assert web["addresses"] == [web_ip]
        assert web["pool"] == "small"
        assert web["node"] == "n1"
        assert web["interfaces"] == ["eth0"]
        assert web["addressAssigned"]["reason"] == "Assigned"
        assert web["why"] == ""
        assert late["addresses"] == []
        assert late["addressAssigned"]["status"] == "False"
        assert late["addressAssigned"]["reason"] == "PoolExhausted"
        assert late["why"] == late["addressAssigned"]["message"]
        assert "small" in late["why"]  # the message names the full pool
        assert data["speakers"] == [
            {
                "node": "n1",
                "pod": "lbd-speaker-n1",
                "alive": True,
                "announces": ["default/web"],
                "vips": [web_ip],
            }
        ]
        assert data["conflicts"][0]["reason"] == "VIPConflict"
        assert data["conflicts"][0]["object"] == "Service/default/web"
        assert data["conflicts"][0]["count"] == 3

        # the same report as YAML, and as a table: plain text when not a terminal
        code, out, _ = run_cli(capsys, ["status", "--kubeconfig", kubeconfig, "-o", "yaml"])
        assert code == 0
        assert yaml.safe_load(out) == data
        code, out, _ = run_cli(capsys, ["status", "--kubeconfig", kubeconfig])
        assert code == 0
        assert "\x1b[" not in out
        assert "[####################] 100% 2/2" in out
        late_line = next(line for line in out.splitlines() if line.startswith("default/late"))
        assert "<pending>" in late_line
        assert "PoolExhausted!" in late_line
        assert "SPEAKERS (1 of 1 speaker pods alive)" in out
        assert "VIPConflict" in out
        # kubectl-lbd is the same command
        code, plugin_out, _ = run_cli(capsys, ["status", "--kubeconfig", kubeconfig], kubectl_main)
        assert code == 0
        assert plugin_out == out
    finally:
        for ctl in list(env.controllers):
            env.stop_controller(ctl)


def test_status_says_why_it_cannot_read(tmp_path, capsys):
    missing = tmp_path / "nope"
    code, out, err = run_cli(capsys, ["status", "--kubeconfig", str(missing)])
    assert code == 1
    assert out == ""
    assert "lbd status: cannot load a kubeconfig" in err
    assert str(missing) in err


# --------------------------------------------------------------------------- lbd doctor


class MetricsServer:
    """A speaker's ``/metrics`` on 127.0.0.1: lbd's real SpeakerMetrics registry."""

    def __init__(self, metrics: SpeakerMetrics) -> None:
        body = generate_latest(metrics.registry)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def speaker_metrics(key_id: str, mismatches: int = 0) -> SpeakerMetrics:
    m = SpeakerMetrics()
    m.key_info.labels(key_id=key_id, state="Current").set(1)
    m.heartbeats_dropped_total.labels(reason="Replay").inc(0)
    if mismatches:
        m.heartbeats_dropped_total.labels(reason="KeyMismatch").inc(mismatches)
    return m


@pytest.fixture
def metrics_servers() -> Iterator[list[MetricsServer]]:
    made: list[MetricsServer] = []
    yield made
    for s in made:
        s.close()


def doctor(capsys, kubeconfig: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    argv = ["doctor", "--kubeconfig", kubeconfig, "--speaker-metrics", "direct", *extra]
    code, out, _ = run_cli(capsys, [*argv, "-o", "json"])
    _, table, _ = run_cli(capsys, argv)
    return code, json.loads(out), table


def findings(data: dict[str, Any], check: str) -> dict[str, tuple[str, str]]:
    """``{subject: (verdict, message)}`` of one check."""
    return {
        f["subject"]: (f["verdict"], f["message"]) for f in data["findings"] if f["check"] == check
    }


def test_doctor_finds_each_problem_provoked(lab, tmp_path, capsys, metrics_servers):
    kube = kube_for(lab)
    kubeconfig = str(lab.write_kubeconfig(tmp_path / "kubeconfig"))
    ns = "ops2-doctor"
    namespace(kube, ns)
    # kube-proxy in IPVS mode without strictARP (kubeadm's ConfigMap)
    configmap(
        kube,
        "kube-proxy",
        {
            "config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
            "kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: false\n"
        },
    )
    # Cilium with L2 announcements, kube-vip serving Services, MetalLB and k3s's servicelb
    configmap(kube, "cilium-config", {"enable-l2-announcements": "true"})
    kube.create(
        LEASES.path(namespace="kube-system"),
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "plndr-svcs-lock", "namespace": "kube-system"},
            "spec": {"holderIdentity": "n1"},
        },
    )
    template = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "quay.io/metallb/controller:v0.14.8"}]},
    }
    kube.create(
        DEPLOYMENTS.path(namespace=ns),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "controller", "namespace": ns},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "x"}},
                "template": template,
            },
        },
    )
    svclb_template = {
        "metadata": {"labels": {"app": "svclb-web"}},
        "spec": {
            "nodeSelector": {"no-such-node": "true"},
            "containers": [{"name": "lb", "image": "rancher/klipper-lb:v0.4.9"}],
        },
    }
    kube.create(
        DAEMONSETS.path(namespace=ns),
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "svclb-web", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "svclb-web"}}, "template": svclb_template},
        },
    )
    # nodes: n1 and n2 with speakers holding different keys (n2 drops heartbeats), n3 without
    node(kube, "n1", "127.0.0.1", pod_cidr="10.244.1.0/24")
    node(kube, "n2", "127.0.0.1", pod_cidr="10.244.2.0/24")
    node(kube, "n3", "198.18.0.13", pod_cidr="10.244.3.0/24")
    metrics_servers.append(MetricsServer(speaker_metrics("aaaa1111")))
    metrics_servers.append(MetricsServer(speaker_metrics("bbbb2222", mismatches=7)))
    speaker_pod(kube, "n1", "127.0.0.1", metrics_servers[0].port)
    speaker_pod(kube, "n2", "127.0.0.1", metrics_servers[1].port)
    # pools: one on the pod network, one nothing advertises, one on no node's subnet
    pool(kube, "podnet", ["10.244.2.16/28"])
    pool(kube, "orphan", ["127.0.0.200-127.0.0.201"])
    pool(kube, "faraway", ["198.18.250.0/28"])
    advertisement(kube, "some", ["podnet", "faraway"])
    # a Service the controller never handled, one nobody announces
    service(kube, "nocontroller")
    service(kube, "silent")
    # a pool holding a ClusterIP: inside the service CIDR (read from the ServiceCIDR API on
    # kube-apiserver, inferred from the ClusterIPs in use on the stand-in)
    cluster_ip = kube.get(SERVICES.path(namespace="default", name="silent"))["spec"]["clusterIP"]
    pool(kube, "clusterips", [f"{cluster_ip}/32"])
    kube.patch(
        SERVICES.path(namespace="default", name="silent", subresource="status"),
        {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.250.1", "ipMode": "VIP"}]}}},
    )
    set_condition(kube, "silent", "lbd.io/AddressAssigned", "True", "Assigned", "from faraway")
    set_condition(
        kube, "silent", "lbd.io/Announced", "False", "NoLiveSpeaker", "no live speaker may announce"
    )

    code, data, table = doctor(capsys, kubeconfig)
    assert code == 1
    assert data["summary"]["problem"] >= 10
    proxy = findings(data, "KubeProxyStrictARP")
    assert proxy["ConfigMap kube-system/kube-proxy"][0] == "problem"
    other = findings(data, "OtherLoadBalancer")
    assert other["MetalLB"][0] == "problem" and f"{ns}/controller" in other["MetalLB"][1]
    assert other["k3s servicelb"][0] == "problem"
    assert other["kube-vip"][0] == "problem"
    assert other["Cilium L2 announcements"][0] == "problem"
    nets = findings(data, "PoolOverlapsClusterNetwork")
    assert (
        nets["pool podnet"][0] == "problem" and "pod CIDR 10.244.2.0/24" in nets["pool podnet"][1]
    )
    assert nets["pool orphan"][0] == "ok"
    verdict, message = nets["pool clusterips"]
    assert verdict == "problem"
    assert "service CIDR" in message or f"ClusterIP {cluster_ip}" in message
    assert nets["pool faraway"][0] == "ok", nets["pool faraway"]
    subnet = findings(data, "PoolOnNodeSubnet")
    assert subnet["pool faraway"][0] == "warning" and "inferred" in subnet["pool faraway"][1]
    assert subnet["pool orphan"][0] == "ok"
    # given subnets are known, not inferred: a pool off them is a problem
    _, given, _ = doctor(capsys, kubeconfig, "--node-subnet", "127.0.0.0/8")
    assert findings(given, "PoolOnNodeSubnet")["pool faraway"][0] == "problem"
    assert findings(given, "PoolOnNodeSubnet")["pool orphan"][0] == "ok"
    ads = findings(data, "PoolAdvertised")
    assert ads["pool orphan"][0] == "problem"
    assert ads["pool podnet"] == ("ok", "selected by some")
    speakers = findings(data, "SpeakerOnEveryNode")
    assert set(speakers) == {"node n3"} and speakers["node n3"][0] == "problem"
    keys = findings(data, "MembershipKey")
    assert keys["node n2"][0] == "problem" and "dropped 7 heartbeats" in keys["node n2"][1]
    assert keys["cluster"][0] == "problem"
    assert "aaaa1111" in keys["cluster"][1] and "bbbb2222" in keys["cluster"][1]
    served = findings(data, "ServicesServed")
    assert served["Service default/nocontroller"][0] == "problem"
    assert "no lbd.io/AddressAssigned condition" in served["Service default/nocontroller"][1]
    assert served["Service default/silent"][0] == "problem"
    assert "NoLiveSpeaker" in served["Service default/silent"][1]
    # the table form: one line per finding, each problem with its fix
    assert "PROBLEM  KubeProxyStrictARP" in table
    assert "fix: set ipvs.strictARP: true" in table
    assert (
        table.rstrip()
        .splitlines()[-1]
        .startswith(f"lbd doctor: {data['summary']['problem']} problems")
    )


def test_doctor_passes_a_healthy_cluster(lab, tmp_path, capsys, metrics_servers):
    env = Env(lab)
    try:
        kube = env.admin
        kubeconfig = str(lab.write_kubeconfig(tmp_path / "kubeconfig"))
        configmap(kube, "kube-proxy", {"config.conf": "mode: ipvs\nipvs:\n  strictARP: true\n"})
        node(kube, "n1", "127.0.0.1", pod_cidr="10.244.1.0/24")
        metrics_servers.append(MetricsServer(speaker_metrics("cccc3333")))
        speaker_pod(kube, "n1", "127.0.0.1", metrics_servers[0].port)
        pool(kube, "local", ["127.0.0.100-127.0.0.110"])
        advertisement(kube, "all")
        service(kube, "web")
        ip = wait_for(
            lambda: (
                kube.get(SERVICES.path(namespace="default", name="web"))["status"]
                .get("loadBalancer", {})
                .get("ingress")
            ),
            what="an address",
        )[0]["ip"]
        l2status(kube, "web", "n1", [ip])
        code, data, table = doctor(capsys, kubeconfig)
        bad = [f for f in data["findings"] if f["verdict"] in ("problem", "warning")]
        assert bad == []
        assert code == 0
        assert findings(data, "KubeProxyStrictARP") == {
            "ConfigMap kube-system/kube-proxy": ("ok", "mode ipvs with strictARP")
        }
        assert findings(data, "MembershipKey")["cluster"][0] == "ok"
        assert "cccc3333" in findings(data, "MembershipKey")["cluster"][1]
        assert findings(data, "ServicesServed")["cluster"][0] == "ok"
        assert "lbd doctor: 0 problems, 0 warnings" in table
    finally:
        for ctl in list(env.controllers):
            env.stop_controller(ctl)


# --------------------------------------------------------------------------- kubectl lbd


def test_kubectl_lbd_is_a_kubectl_plugin(lab, tmp_path, capsys):
    """``kubectl lbd status`` with the real kubectl: kubectl finds ``kubectl-lbd`` on the PATH
    (its plugin convention), the plugin reads the same KUBECONFIG, the output is ``lbd``'s."""
    binary = kubectl_or_skip()
    scripts = Path(sys.executable).parent
    assert (scripts / "kubectl-lbd").is_file(), "kubectl-lbd is not installed: run make install"
    kubeconfig = lab.write_kubeconfig(tmp_path / "kubeconfig")
    kube = kube_for(lab)
    pool(kube, "plugin", ["198.18.201.0/30"])
    kubectl = Kubectl(binary, kubeconfig, tmp_path / "home")
    kubectl.env["PATH"] = f"{scripts}:{kubectl.env['PATH']}"
    listed = kubectl.run("plugin", "list")
    assert f"{scripts}/kubectl-lbd" in listed.stdout, listed.stdout + listed.stderr
    res = kubectl.run("lbd", "status", "-o", "json")
    assert res.code == 0, res.stderr
    _, direct, _ = run_cli(capsys, ["status", "--kubeconfig", str(kubeconfig), "-o", "json"])
    assert json.loads(res.stdout) == json.loads(direct)
    assert [p["name"] for p in json.loads(res.stdout)["pools"]] == ["plugin"]
    res = kubectl.run("lbd", "status")
    assert res.code == 0 and res.stdout.startswith("POOLS (0 Services waiting"), res.stderr
    # the README's other plugin commands, as written there
    res = kubectl.run("lbd", "doctor", "-o", "json")
    assert res.code == 1, res.stderr  # no L2Advertisement selects the pool
    assert findings(json.loads(res.stdout), "PoolAdvertised")["pool plugin"][0] == "problem"
    res = kubectl.run("lbd", "migrate", "from-metallb", "--from-cluster", "--check")
    assert res.code == 0, res.stderr
    assert "the cluster serves no metallb.io IPAddressPool" in res.stderr
    usage = kubectl.run("lbd", "--help")
    assert usage.code == 0 and usage.stdout.startswith("usage: kubectl lbd")
    bad = kubectl.run("lbd", "status", "-o", "wide")
    assert bad.code == 2 and "invalid choice: 'wide'" in bad.stderr

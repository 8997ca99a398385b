"""A three-node speaker lab in network namespaces, and the basic announcing tests.

Topology (``tests/netns/conftest.py`` builds the segment): hosts ``cp`` (198.18.0.1, the lab API
server, started in-process on a thread inside that namespace), ``n1``..``n3`` (198.18.0.2-4, one
``lbd speaker`` subprocess each, started with ``ip netns exec``), and ``client`` (198.18.0.5,
where the test talks to the API with the official client and probes the VIPs with ARP/NDP).

The speakers authenticate with the speaker's service-account token and the API server enforces
``deploy/base/rbac.yaml``, so a permission the manifests lack fails these tests.

The test plays the controller: it patches ``status.loadBalancer.ingress`` and the pool
annotation itself. Every node also gets the usual "kube-proxy" stand-in: each VIP on ``lo`` with
``arp_ignore=1``/``arp_announce=2`` (the kernel then never answers ARP for it) and a UDP echo on
port 9000 that answers with the node name.

The other ``test_speaker_*.py`` modules and ``tests/bench/bench_speaker_failover.py`` import
:class:`SpeakerLab` from here. Each speaker logs to ``speaker-NODE.log`` in the lab's directory
(a pytest temporary directory; ``LBD_KEEP_LOGS=1`` prints where).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s

from lbd.core.election import rank
from lbd.lab.apiserver import LabApiServer
from tests.netns.conftest import Segment, build_segment, run
from tests.netns.l2client import arp_ask, ndp_ask

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
LBD = str(ROOT / ".venv/bin/lbd")
SPEAKER_SA = "system:serviceaccount:lbd-system:lbd-speaker"
SPEAKER_TOKEN = "speaker-token-" + uuid.uuid4().hex[:8]
NODES: tuple[str, ...] = ("n1", "n2", "n3")
API_HOST = "198.18.0.1"
API_PORT = 6443
HEALTH = "127.0.0.1:7473"
ECHO_PORT = 9000
NS = "default"
POOL = "lab"
KEY = b"lab-membership-key-0123456789abcdef"
GRP, VER = "lbd.io", "v1beta1"


def wait_for(fn: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``fn`` until it returns something truthy (a 20 ms poll, never a blind sleep)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as exc:  # transient: API call during a fault, probe socket error
            last = exc
        else:
            if last:
                return last  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


class UdpEcho:
    """The kube-proxy stand-in's echo: answers every datagram on port 9000 with the node name."""

    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.stop = threading.Event()
        self.socks: list[socket.socket] = []

    def open(self) -> None:
        """Call inside the node namespace (the sockets stay there)."""
        for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((addr, ECHO_PORT))
            s.settimeout(0.2)
            self.socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s: socket.socket) -> None:
        while not self.stop.is_set():
            try:
                _data, peer = s.recvfrom(2048)
                s.sendto(self.name, peer)
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        for s in self.socks:
            s.close()


class SpeakerLab:
    """The API server, three speakers, a client; helpers to drive and observe them."""

    def __init__(self, prefix: str, workdir: Path, nodes: Sequence[str] = NODES) -> None:
        self.prefix = prefix
        self.workdir = workdir
        self.nodes = tuple(nodes)
        self.created: list[str] = []
        self.seg: Segment | None = None
        self.api: LabApiServer | None = None
        self.admin: k8s.ApiClient | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.echo: dict[str, UdpEcho] = {}
        self.vips_on_lo: set[str] = set()
        self.speaker_args: list[str] = []

    # -- building --------------------------------------------------------------------------
    def up(self, *, speaker_args: Sequence[str] = ()) -> SpeakerLab:
        self.speaker_args = list(speaker_args)
        self.seg = build_segment(self.prefix, ["cp", *self.nodes, "client"], self.created)
        assert self.seg["cp"].ipv4 == API_HOST
        self._start_api()
        (self.workdir / "key").write_bytes(KEY)
        self.api_kubeconfig = self.workdir / "kubeconfig"
        assert self.api is not None
        self.api.write_kubeconfig(self.api_kubeconfig, SPEAKER_TOKEN)
        for n in self.nodes:
            ns = self.seg[n].ns
            run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1")
            run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.all.arp_announce=2")
            echo = UdpEcho(n)
            self.seg.call(n, echo.open)
            self.echo[n] = echo
            self.create_node(n)
        self.create_pool_and_advertisement()
        for n in self.nodes:
            self.start_speaker(n)
        for n in self.nodes:
            wait_for(functools.partial(self.ready, n), 30, f"speaker {n} ready")
        return self

    def _start_api(self) -> None:
        server = LabApiServer(
            host=API_HOST, port=API_PORT, crds_dir=ROOT / "crds", bookmark_interval=0.2
        )
        for ns in ("lbd-system", NS):
            with contextlib.suppress(Exception):
                server.apply_object(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                )
        server.load_rbac(ROOT / "deploy/base/rbac.yaml")
        server.add_token(SPEAKER_TOKEN, SPEAKER_SA)
        assert self.seg is not None
        self.seg.call("cp", server.start)  # the listening socket is created inside cp
        self.api = server
        cfg = k8s.Configuration()
        cfg.host = server.url
        cfg.api_key = {"BearerToken": server.admin_token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        cfg.retries = False
        self.admin = k8s.ApiClient(cfg)

    def down(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            with contextlib.suppress(Exception):
                proc.wait(5)
        for echo in self.echo.values():
            echo.close()
        if self.admin is not None:
            self.admin.close()  # type: ignore[no-untyped-call]
        if self.api is not None:
            self.api.stop()
        for ns in reversed(self.created):
            run("ip", "netns", "del", ns, check=False)

    # -- speakers --------------------------------------------------------------------------
    def start_speaker(self, node: str, *extra: str) -> subprocess.Popen[bytes]:
        assert self.seg is not None
        log = open(self.workdir / f"speaker-{node}.log", "ab")  # noqa: SIM115 - kept by Popen
        cmd = [
            "ip", "netns", "exec", self.seg[node].ns, LBD, "speaker",
            "--node-name", node,
            "--kubeconfig", str(self.api_kubeconfig),
            "--membership-key", str(self.workdir / "key"),
            "--health-addr", HEALTH,
            *self.speaker_args, *extra,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NODE_NAME")}
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        log.close()
        self.procs[node] = proc
        return proc

    def http(self, node: str, path: str, timeout: float = 1.0) -> tuple[int, str]:
        assert self.seg is not None

        def get() -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://{HEALTH}{path}", timeout=timeout) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        return self.seg.call(node, get)

    def ready(self, node: str) -> bool:
        try:
            return self.http(node, "/readyz")[0] == 200
        except OSError:
            return False

    def metrics(self, node: str) -> str:
        return self.http(node, "/metrics")[1]

    def kill(self, node: str, sig: int = signal.SIGKILL) -> None:
        self.procs[node].send_signal(sig)

    def cut(self, node: str) -> None:
        """The owner node dies: its link goes down and its speaker is SIGKILLed."""
        assert self.seg is not None
        self.seg.link(node, False)
        self.kill(node)
        self.procs[node].wait(5)

    def restore(self, node: str) -> None:
        assert self.seg is not None
        self.seg.link(node, True)
        self.start_speaker(node)
        wait_for(lambda: self.ready(node), 30, f"speaker {node} ready again")

    # -- the API, through the official client, from the client namespace ---------------------
    def k(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run an API call on a thread inside the client namespace (where the API is reachable)."""
        assert self.seg is not None
        return self.seg.call("client", fn, *args, **kwargs)

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.admin)

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.admin)

    def create_node(self, name: str) -> None:
        assert self.seg is not None
        self.k(
            self.core.create_node,
            {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}},
        )
        self.set_node_status(name, ready="True")

    def set_node_status(self, name: str, *, ready: str) -> None:
        assert self.seg is not None
        h = self.seg[name]
        status = {
            "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady"}],
            "addresses": [
                {"type": "InternalIP", "address": h.ipv4},
                {"type": "Hostname", "address": name},
            ],
        }
        self.k(self.core.patch_node_status, name, {"status": status})

    def patch_node(self, name: str, body: dict[str, Any]) -> None:
        self.k(self.core.patch_node, name, body)

    def create_pool_and_advertisement(self) -> None:
        pool = {
            "apiVersion": "lbd.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": POOL},
            "spec": {"addresses": ["198.18.100.0/24", "2001:db8::100:0/120"]},
        }
        self.k(
            self.custom.create_cluster_custom_object, "lbd.io", "v1beta1", "ipaddresspools", pool
        )
        self.set_advertisement({})

    def set_advertisement(self, spec: dict[str, Any], name: str = "l2") -> None:
        body: dict[str, Any] = {
            "apiVersion": "lbd.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": name},
            "spec": spec,
        }
        api = self.custom
        try:
            cur: Any = self.k(
                api.get_cluster_custom_object, "lbd.io", "v1beta1", "l2advertisements", name
            )
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
            self.k(api.create_cluster_custom_object, "lbd.io", "v1beta1", "l2advertisements", body)
            return
        body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
        self.k(
            api.replace_cluster_custom_object, "lbd.io", "v1beta1", "l2advertisements", name, body
        )

    def create_service(
        self,
        name: str,
        vips: Sequence[str],
        *,
        endpoints: Sequence[str] | None = None,
        etp: str = "Cluster",
        labels: dict[str, str] | None = None,
        on_lo: bool = True,
    ) -> None:
        """A LoadBalancer Service holding ``vips`` (we play the controller) + its endpoints.

        ``on_lo=False`` skips the kube-proxy stand-in's addresses (for bulk filler Services
        that nobody sends traffic to)."""
        families = ["IPv6" if ":" in v else "IPv4" for v in vips]
        svc = {
            "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
            "spec": {
                "type": "LoadBalancer",
                "externalTrafficPolicy": etp,
                "ipFamilies": families,
                "ipFamilyPolicy": "PreferDualStack" if len(vips) > 1 else "SingleStack",
                "ports": [{"name": "echo", "port": ECHO_PORT, "protocol": "UDP"}],
                "selector": {"app": name},
            },
        }
        self.k(self.core.create_namespaced_service, NS, svc)
        self.k(
            self.core.patch_namespaced_service,
            name,
            NS,
            {"metadata": {"annotations": {"lbd.io/ip-allocated-from-pool": POOL}}},
        )
        self.k(
            self.core.patch_namespaced_service_status,
            name,
            NS,
            {"status": {"loadBalancer": {"ingress": [{"ip": v, "ipMode": "VIP"} for v in vips]}}},
        )
        for vip in vips if on_lo else ():
            self.vip_on_lo(vip)
        self.set_endpoints(name, list(self.nodes) if endpoints is None else endpoints)

    def set_endpoints(self, service: str, nodes: Sequence[str], *, ready: bool = True) -> None:
        assert self.seg is not None
        seg = self.seg
        body: dict[str, Any] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service}-lab",
                "namespace": NS,
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [seg[n].ipv4], "nodeName": n, "conditions": {"ready": ready}}
                for n in nodes
            ],
            "ports": [{"name": "echo", "port": ECHO_PORT, "protocol": "UDP"}],
        }
        api = k8s.DiscoveryV1Api(self.admin)
        try:
            cur: Any = self.k(api.read_namespaced_endpoint_slice, f"{service}-lab", NS)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
            self.k(api.create_namespaced_endpoint_slice, NS, body)
            return
        body["metadata"]["resourceVersion"] = cur.metadata.resource_version
        self.k(api.replace_namespaced_endpoint_slice, f"{service}-lab", NS, body)

    def delete_service(self, name: str) -> None:
        self.k(self.core.delete_namespaced_service, name, NS)

    def vip_on_lo(self, vip: str) -> None:
        """kube-proxy (IPVS, strictARP) puts every VIP on a local interface of every node."""
        if vip in self.vips_on_lo:
            return
        assert self.seg is not None
        plen = 128 if ":" in vip else 32
        for n in self.nodes:
            self.seg.ip(n, "addr", "add", f"{vip}/{plen}", "dev", "lo")
        self.vips_on_lo.add(vip)

    def l2_status(self, name: str) -> Any:
        try:
            obj: Any = self.k(
                self.custom.get_namespaced_custom_object,
                "lbd.io", "v1beta1", NS, "servicel2statuses", name,
            )  # fmt: skip
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def events(self, reason: str, service: str | None = None) -> list[Any]:
        items = self.k(self.core.list_namespaced_event, NS).items
        return [
            e
            for e in items
            if e.reason == reason and (service is None or e.involved_object.name == service)
        ]

    # -- probing ---------------------------------------------------------------------------
    def who_answers(self, vip: str, timeout: float = 0.2) -> set[str]:
        """Node names whose MAC answered an ARP request / Neighbor Solicitation for ``vip``."""
        assert self.seg is not None
        c = self.seg["client"]
        if ":" in vip:
            macs = self.seg.call("client", ndp_ask, "eth0", c.mac, c.ipv6, vip, timeout)
        else:
            macs = self.seg.call("client", arp_ask, "eth0", c.mac, c.ipv4, vip, timeout)
        by_mac = {self.seg[n].mac: n for n in self.nodes}
        return {by_mac.get(m, mac_str(m)) for m in macs}

    def expect_owner(self, vip: str, owner: str | None, timeout: float = 10.0) -> None:
        """Wait until exactly ``owner`` (None: nobody) answers for ``vip``, twice in a row."""
        want = set() if owner is None else {owner}

        def settled() -> bool:
            return self.who_answers(vip) == want and self.who_answers(vip) == want

        try:
            wait_for(settled, timeout, f"{vip} answered by {want}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; now answering: {self.who_answers(vip)}") from None

    def stays(self, vip: str, owner: str | None, seconds: float) -> None:
        """Assert that exactly ``owner`` (None: nobody) answers for ``vip`` for ``seconds``."""
        want = set() if owner is None else {owner}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert self.who_answers(vip) == want

    def ranked(self, vip: str, nodes: Sequence[str] | None = None) -> list[str]:
        return rank(vip, self.nodes if nodes is None else nodes)

    def vip_owned_by(self, node: str, family: int = 4, start: int = 10) -> str:
        """The first lab VIP whose ranking puts ``node`` first (to spread deterministically)."""
        for i in range(start, 250):
            vip = f"198.18.100.{i}" if family == 4 else f"2001:db8::100:{i:x}"
            if self.ranked(vip)[0] == node:
                return str(ipaddress.ip_address(vip))
        raise AssertionError(f"no VIP ranks {node} first")


@contextlib.contextmanager
def speaker_lab(prefix: str, tmp: Path, **kw: Any) -> Iterator[SpeakerLab]:
    lab = SpeakerLab(prefix, tmp)
    try:
        lab.up(**kw)
        yield lab
    finally:
        lab.down()
        if os.environ.get("LBD_KEEP_LOGS"):
            print(f"speaker logs in {tmp}")


def module_lab(prefix: str) -> Any:
    """A module-scoped ``lab`` fixture: one lab per test module (building it takes seconds).

    ``prefix`` (2-4 letters, one per module) starts the names of the lab's namespaces, followed
    by a random part, so that modules and concurrent runs never share a namespace.
    """

    @pytest.fixture(scope="module")
    def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeakerLab]:
        with speaker_lab(prefix + uuid.uuid4().hex[:5], tmp_path_factory.mktemp(prefix)) as lab:
            yield lab

    return lab


# --------------------------------------------------------------------------------------------
# tests: basic announcing (one lab for the module: building it costs a few seconds)

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]


lab = module_lab("ls")


def test_exactly_the_elected_owner_answers_arp(lab: SpeakerLab) -> None:
    vip = "198.18.100.7"
    lab.create_service("web", [vip])
    owner = lab.ranked(vip)[0]
    lab.expect_owner(vip, owner)
    status: Any = wait_for(
        lambda: (
            (lab.l2_status("web") or {}).get("status", {}).get("node") == owner
            and lab.l2_status("web")
        ),
        10,
        "ServiceL2Status",
    )
    assert status["status"]["vips"] == [vip]
    assert status["status"]["interfaces"] == [{"name": "eth0"}]
    assert status["metadata"]["labels"] == {
        "lbd.io/node": owner,
        "lbd.io/service-name": "web",
        "lbd.io/service-namespace": NS,
    }
    assert status["metadata"]["ownerReferences"][0]["name"] == "web"
    [event] = wait_for(lambda: lab.events("NodeAssigned", "web"), 10, "NodeAssigned")
    assert event.message == f"announcing {vip} from {owner} on eth0"
    assert (
        f'lbd_speaker_announced{{node="{owner}",service="{NS}/web",vip="{vip}"}} 1.0'
        in lab.metrics(owner)
    )
    for other in set(lab.nodes) - {owner}:
        assert f'vip="{vip}"' not in lab.metrics(other)


def test_exactly_the_elected_owner_answers_ndp(lab: SpeakerLab) -> None:
    vip6 = "2001:db8::100:7"
    lab.create_service("web6", [vip6])
    lab.expect_owner(vip6, lab.ranked(vip6)[0])


def test_vips_of_several_services_spread_over_all_nodes(lab: SpeakerLab) -> None:
    vips = {n: lab.vip_owned_by(n, start=20) for n in lab.nodes}
    for i, vip in enumerate(sorted(vips.values())):
        lab.create_service(f"spread{i}", [vip])
    for n, vip in vips.items():
        lab.expect_owner(vip, n)


def test_health_endpoints(lab: SpeakerLab) -> None:
    for n in lab.nodes:
        assert lab.http(n, "/healthz")[0] == 200
        assert lab.http(n, "/readyz")[0] == 200
        assert "lbd_peers_alive 3.0" in lab.metrics(n)


def test_steady_state_makes_no_api_writes(lab: SpeakerLab) -> None:
    vip = "198.18.100.8"
    lab.create_service("steady", [vip])
    owner = lab.ranked(vip)[0]
    lab.expect_owner(vip, owner)
    status = wait_for(lambda: lab.l2_status("steady"), 10, "ServiceL2Status")
    wait_for(lambda: lab.events("NodeAssigned", "steady"), 10, "NodeAssigned")
    rv = status["metadata"]["resourceVersion"]
    events = len(lab.k(lab.core.list_namespaced_event, NS).items)
    # changes that make every speaker recompute every decision, but move nothing
    for i in range(5):
        lab.patch_node(owner, {"metadata": {"labels": {"lab/touch": str(i)}}})
    lab.stays(vip, owner, seconds=1.5)
    assert lab.l2_status("steady")["metadata"]["resourceVersion"] == rv
    assert len(lab.k(lab.core.list_namespaced_event, NS).items) == events


def test_dual_stack_service_is_announced_from_one_node(lab: SpeakerLab) -> None:
    vip4, vip6 = "198.18.100.9", "2001:db8::100:9"
    lab.create_service("dual", [vip4, vip6])
    owner = lab.ranked(vip4)[0]  # the first VIP is the ranking key for all of them
    assert lab.ranked(vip6)[0] != owner  # (ranked alone, the IPv6 VIP would go elsewhere)
    lab.expect_owner(vip4, owner)
    lab.expect_owner(vip6, owner)
    status = wait_for(
        lambda: (s := lab.l2_status("dual")) and s.get("status", {}).get("vips") and s,
        10,
        "ServiceL2Status",
    )
    assert status["status"]["vips"] == [vip4, vip6]

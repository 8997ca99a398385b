"""``lbd lab up/down/kill-node/restore-node``: one lab, from nothing to ready and back.

``up`` (:func:`up`) in order:

1. plan the layout (:mod:`.layout`) and build the namespaces (:mod:`.topology`);
2. write credentials into the lab directory: one bearer token per identity (lab admin, the
   controller's and the speaker's service accounts, so the RBAC in ``deploy/`` is really
   enforced), kubeconfigs for each, and the speakers' membership key;
3. write ``plan.json`` (every process) and ``lab.json``, start the supervisor, which starts the
   API server and the host forwarder at once;
4. wait for the API, then create what a real cluster would already have (namespace
   ``lbd-system``, the membership Secret, the Node objects, since there is no kubelet) and the
   sample IPAddressPool + L2Advertisement;
5. start the controllers, the endpoints stand-in and, per node, the speaker, the kube-proxy
   stand-in and the echo service; wait until they run.

``down`` works from the lab directory or from the prefix alone, so it also cleans up after a
crash of anything, including the supervisor.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lbd.lab.apiserver.tls import TlsFiles, make_self_signed
from lbd.lab.cluster import supervisor, topology
from lbd.lab.cluster.layout import API_IPV4, API_PORT, POOL4, POOL6, Layout, Member, plan
from lbd.lab.cluster.netns import call_in_netns, kill_all, pids_with_marker
from lbd.lab.cluster.supervisor import ProcSpec, SupervisorError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
SYSTEM_NAMESPACE = "lbd-system"
CONTROLLER_SA = f"system:serviceaccount:{SYSTEM_NAMESPACE}:lbd-controller"
SPEAKER_SA = f"system:serviceaccount:{SYSTEM_NAMESPACE}:lbd-speaker"

Progress = Callable[[str], None]


class LabError(RuntimeError):
    """The lab could not be brought up or operated; the message says what and where."""


def default_dir(prefix: str) -> Path:
    return Path.cwd() / ".lab" / prefix


@dataclass(frozen=True)
class LabOptions:
    """What ``lbd lab up`` was asked for."""

    prefix: str = "lbd"
    nodes: int = 3
    dir: Path | None = None
    ipv6: bool = False
    controllers: int = 2
    crds: Path = REPO_ROOT / "crds"
    rbac: tuple[Path, ...] = (REPO_ROOT / "deploy" / "base" / "rbac.yaml",)
    ready_timeout: float = 60.0
    extra_speaker_args: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Lab:
    """A running lab, as described by its ``lab.json``."""

    dir: Path
    data: dict[str, Any]

    @classmethod
    def load(cls, lab_dir: Path) -> Lab:
        path = lab_dir / supervisor.LAB_FILE
        try:
            return cls(lab_dir, json.loads(path.read_text()))
        except FileNotFoundError:
            raise LabError(f"dir: no lab at {lab_dir} ({path} does not exist)") from None

    @property
    def prefix(self) -> str:
        return str(self.data["prefix"])

    @property
    def layout(self) -> Layout:
        return plan(
            self.prefix, len(self.data["nodes"]), ipv6_pool=bool(self.data["pools"]["ipv6"])
        )

    @property
    def kubeconfig(self) -> Path:
        return Path(self.data["kubeconfig"])

    @property
    def host_kubeconfig(self) -> Path:
        return Path(self.data["kubeconfig_host"])

    def node(self, name: str) -> dict[str, Any]:
        for node in self.data["nodes"]:
            if node["name"] == name:
                return dict(node)
        raise LabError(f"node: no node named {name!r} in lab {self.prefix}")

    def reload(self) -> Lab:
        return Lab.load(self.dir)


def _lbd(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "lbd", *args)


def _kubeconfig(server: str, token: str, user: str, ca_pem: bytes | None = None) -> str:
    cluster: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lab", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}],
            "current-context": "lab",
        }
    )


def _member_json(m: Member) -> dict[str, Any]:
    return {
        "name": m.name,
        "netns": m.netns,
        "ifname": m.ifname,
        "ipv4": m.ipv4,
        "ipv6": m.ipv6,
        "mac": m.mac,
    }


def _process_plan(
    layout: Layout, lab_dir: Path, opts: LabOptions, tokens: dict[str, str]
) -> list[ProcSpec]:
    """Every lab process: the control plane's, then each node's."""
    cp = layout.control_plane.netns
    token_args = ["--admin-token", tokens["admin"]]
    for token, user in (
        (tokens["controller"], CONTROLLER_SA),
        (tokens["speaker"], SPEAKER_SA),
    ):
        token_args += ["--token", f"{token}={user}"]
    rbac_args: list[str] = []
    for path in opts.rbac:
        rbac_args += ["--rbac", str(path)]
    procs = [
        ProcSpec(
            "apiserver",
            _lbd(
                "lab",
                "apiserver",
                "--listen",
                f"{API_IPV4}:{API_PORT}",
                "--crds",
                str(lab_dir / "manifests"),
                "--tls-cert",
                str(lab_dir / "tls" / "tls.crt"),
                "--tls-key",
                str(lab_dir / "tls" / "tls.key"),
                *rbac_args,
                *token_args,
            ),
            netns=cp,
            autostart=True,
        ),
        ProcSpec(
            "forward",
            _lbd(
                "lab",
                "forward",
                # the API server speaks TLS itself: the forwarder passes bytes through
                "--to",
                f"{API_IPV4}:{API_PORT}",
            ),
            netns=cp,
            pass_listener=True,
            autostart=True,
        ),
        ProcSpec(
            "endpoints", _lbd("lab", "endpoints", "--kubeconfig", str(lab_dir / "kubeconfig")), cp
        ),
    ]
    for i in range(1, opts.controllers + 1):
        procs.append(
            ProcSpec(
                f"controller-{i}",
                _lbd(
                    "controller",
                    "--kubeconfig",
                    str(lab_dir / "controller.kubeconfig"),
                    "--leader-elect",
                    # Shorter than the production defaults (15/10/2 s) so that a killed
                    # leader is replaced within seconds in the demo and the tests.
                    "--lease-duration",
                    "6",
                    "--renew-deadline",
                    "4",
                    "--retry-period",
                    "1",
                    "--health-addr",
                    f"127.0.0.1:{7471 + i}",
                ),
                netns=cp,
                env={"POD_NAMESPACE": SYSTEM_NAMESPACE, "POD_NAME": f"lbd-controller-{i}"},
            )
        )
    for node in layout.nodes:
        procs.append(
            ProcSpec(
                f"speaker-{node.name}",
                _lbd(
                    "speaker",
                    "--node-name",
                    node.name,
                    "--kubeconfig",
                    str(lab_dir / "speaker.kubeconfig"),
                    "--membership-key",
                    str(lab_dir / "membership.key"),
                    *opts.extra_speaker_args,
                ),
                netns=node.netns,
                env={"NODE_NAME": node.name},
            )
        )
        procs.append(
            ProcSpec(
                f"kube-proxy-{node.name}",
                _lbd(
                    "lab",
                    "kube-proxy",
                    "--node-name",
                    node.name,
                    "--kubeconfig",
                    str(lab_dir / "kubeconfig"),
                ),
                netns=node.netns,
            )
        )
        procs.append(
            ProcSpec(
                f"echo-{node.name}",
                _lbd("lab", "echo", "--node-name", node.name),
                netns=node.netns,
            )
        )
    return procs


def _write_manifests(out: Path, crds: Path) -> None:
    """What the API server loads at start: the system namespace first, then the CRDs.

    The namespace must exist before the server loads the RBAC of ``deploy/`` (its Role and
    RoleBinding live in ``lbd-system``), as it would on a cluster where ``deploy/`` is applied.
    """
    out.mkdir(parents=True, exist_ok=True)
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        for name in ("default", SYSTEM_NAMESPACE)
    ]
    (out / "00-namespaces.yaml").write_text(yaml.safe_dump_all(namespaces))
    for i, path in enumerate(sorted(crds.glob("*.yaml")), start=10):
        (out / f"{i:02d}-{path.name}").write_text(path.read_text())


def _api_tls(out: Path) -> TlsFiles:
    """The API server's self-signed certificate: valid for its lab address and for 127.0.0.1
    (the host forwarder), so one CA serves the kubeconfigs inside the lab and on the host."""
    made = make_self_signed(API_IPV4)
    out.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(out, out / "tls.crt", out / "tls.key")
    files.cert.write_bytes(made.cert.read_bytes())
    _write_private(files.key, made.key.read_text())
    shutil.rmtree(made.directory, ignore_errors=True)
    return files


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def _lab_json(layout: Layout, lab_dir: Path, procs: list[ProcSpec]) -> dict[str, Any]:
    return {
        "prefix": layout.prefix,
        "dir": str(lab_dir),
        "kubeconfig": str(lab_dir / "kubeconfig"),
        "kubeconfig_host": str(lab_dir / "kubeconfig-host"),
        "api": {"url": layout.api_url, "host_url": None},
        "switch": {"netns": layout.switch_netns, "bridge": "br0"},
        "control_plane": _member_json(layout.control_plane),
        "client": _member_json(layout.client),
        "nodes": [{**_member_json(n), "speaker_pid": None} for n in layout.nodes],
        "pools": {"ipv4": POOL4, "ipv6": POOL6 if layout.ipv6_pool else None},
        "membership_key": str(lab_dir / "membership.key"),
        "logs": str(lab_dir / "logs"),
        "processes": [p.name for p in procs],
        "pids": {},
    }


def up(opts: LabOptions, progress: Progress | None = None) -> Lab:
    """Build and start a lab; on any failure everything made so far is torn down again."""
    say = progress or (lambda _msg: None)
    layout = plan(opts.prefix, opts.nodes, ipv6_pool=opts.ipv6)
    lab_dir = (opts.dir or default_dir(opts.prefix)).resolve()
    if not opts.crds.is_dir():
        raise LabError(f"crds: {opts.crds} is not a directory (the lab runs from a checkout)")
    for path in opts.rbac:
        if not path.is_file():
            raise LabError(f"rbac: {path} does not exist (the lab runs from a checkout)")
    if (lab_dir / supervisor.LAB_FILE).exists():
        raise LabError(
            f"dir: a lab is already recorded in {lab_dir}; run `lbd lab down --dir {lab_dir}`"
        )
    lab_dir.mkdir(parents=True, exist_ok=True)
    (lab_dir / "logs").mkdir(exist_ok=True)
    started = time.monotonic()
    say(f"building topology {layout.prefix}: switch, control plane, {opts.nodes} nodes, client")
    try:
        topology.build(layout)
    except topology.TopologyError:
        raise
    except Exception as exc:
        topology.destroy(layout.prefix)
        raise LabError(f"topology: {exc}") from exc
    try:
        return _start(layout, lab_dir, opts, say, started)
    except BaseException:
        down(prefix=layout.prefix, lab_dir=lab_dir)
        raise


def _start(layout: Layout, lab_dir: Path, opts: LabOptions, say: Progress, started: float) -> Lab:
    tokens = {name: secrets.token_hex(16) for name in ("admin", "controller", "speaker")}
    tls = _api_tls(lab_dir / "tls")
    ca = tls.cert_pem()
    _write_private(
        lab_dir / "kubeconfig", _kubeconfig(layout.api_url, tokens["admin"], "admin", ca_pem=ca)
    )
    for who in ("controller", "speaker"):
        _write_private(
            lab_dir / f"{who}.kubeconfig",
            _kubeconfig(layout.api_url, tokens[who], f"lbd-{who}", ca_pem=ca),
        )
    _write_manifests(lab_dir / "manifests", opts.crds)
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    _write_private(lab_dir / "membership.key", key + "\n")
    procs = _process_plan(layout, lab_dir, opts, tokens)
    (lab_dir / supervisor.PLAN_FILE).write_text(
        json.dumps(
            {"prefix": layout.prefix, "processes": [supervisor.spec_to_json(p) for p in procs]},
            indent=2,
        )
    )
    (lab_dir / supervisor.LAB_FILE).write_text(
        json.dumps(_lab_json(layout, lab_dir, procs), indent=2) + "\n"
    )
    say("starting supervisor, API server and host forwarder")
    supervisor.launch(lab_dir, layout.prefix)
    status = supervisor.request(layout.prefix, "status")
    host_url = f"https://127.0.0.1:{status['forward_port']}"
    _write_private(
        lab_dir / "kubeconfig-host",
        _kubeconfig(host_url, tokens["admin"], "admin", ca_pem=ca),
    )

    from lbd.lab.cluster import bootstrap

    kube = bootstrap.wait_for_api(lab_dir / "kubeconfig-host", timeout=opts.ready_timeout)
    say("creating namespace, membership secret, Node objects, pool and L2Advertisement")
    bootstrap.bootstrap(kube, layout, membership_key=key)
    rest = [p.name for p in procs if not p.autostart]
    say(f"starting {len(rest)} processes: " + ", ".join(rest))
    supervisor.request(layout.prefix, "start", names=rest)
    _wait_running(layout.prefix, [p.name for p in procs], opts.ready_timeout)
    bootstrap.wait_ready(kube, layout, timeout=opts.ready_timeout)
    _wait_echo(layout, opts.ready_timeout)
    _wait_speakers(layout, opts.ready_timeout)
    say(f"{len(layout.nodes)} speakers ready, each sees {len(layout.nodes)} live members")
    if opts.controllers:
        holder = bootstrap.wait_for_leader(kube, timeout=opts.ready_timeout)
        say(f"controller leader: {holder}")
    say(f"lab {layout.prefix} is up in {time.monotonic() - started:.1f} s (dir {lab_dir})")
    return Lab.load(lab_dir)


def _wait_running(prefix: str, names: list[str], timeout: float, settle: float = 0.3) -> None:
    """Wait until every process runs and has not been restarted for ``settle`` seconds."""
    deadline = time.monotonic() + timeout
    stable_since: float | None = None
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        procs = supervisor.request(prefix, "status")["processes"]
        snapshot = {n: (procs[n]["pid"], procs[n]["running"]) for n in names}
        if all(running for _pid, running in snapshot.values()) and snapshot == last:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= settle:
                return
        else:
            stable_since = None
        last = snapshot
        time.sleep(0.05)  # polling the supervisor: a condition with a deadline
    failing = [n for n in names if not procs[n]["running"] or procs[n]["restarts"]]
    raise LabError(
        f"processes not running after {timeout:.0f} s: {', '.join(failing)} "
        "(see the logs directory of the lab)"
    )


def _wait_echo(layout: Layout, timeout: float) -> None:
    """Wait until the echo service of every node answers the client (the data path works)."""
    from lbd.lab.cluster.probe import udp_ask

    deadline = time.monotonic() + timeout
    for node in layout.nodes:
        while udp_ask(layout.client.netns, node.ipv4, timeout=0.2) != node.name:
            if time.monotonic() > deadline:
                raise LabError(f"echo on {node.name} does not answer after {timeout:.0f} s")


SPEAKER_HEALTH_PORT = 7473


def _http_get(netns: str, url_host: str, path: str) -> tuple[int, str]:
    """GET http://url_host:7473/path from inside ``netns`` (the speaker's health endpoint)."""
    import http.client

    def get() -> tuple[int, str]:
        conn = http.client.HTTPConnection(url_host, SPEAKER_HEALTH_PORT, timeout=1.0)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    return call_in_netns(netns, get)


def speaker_peers_alive(netns: str, ip: str) -> float | None:
    """The speaker's ``lbd_peers_alive`` (members it sees alive, itself included), or None."""
    try:
        status, body = _http_get(netns, ip, "/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    for line in body.splitlines():
        if line.startswith("lbd_peers_alive "):
            return float(line.split()[1])
    return None


def _wait_speakers(layout: Layout, timeout: float) -> None:
    """Wait until every speaker is ready and sees every node alive.

    Returning earlier would let a test or the demo create a Service while the speakers are still
    discovering each other, and measure start-up instead of steady state.
    """
    deadline = time.monotonic() + timeout
    want = float(len(layout.nodes))
    for node in layout.nodes:
        while True:
            try:
                ready = _http_get(node.netns, node.ipv4, "/readyz")[0] == 200
            except OSError:
                ready = False
            if ready and speaker_peers_alive(node.netns, node.ipv4) == want:
                break
            if time.monotonic() > deadline:
                raise LabError(
                    f"speaker on {node.name} not ready or not seeing all {len(layout.nodes)} "
                    f"nodes after {timeout:.0f} s (see logs/speaker-{node.name}.log)"
                )
            time.sleep(0.05)  # polling a condition with a deadline


@dataclass(frozen=True)
class DownReport:
    prefix: str
    namespaces: tuple[str, ...]
    killed: int


def down(*, prefix: str | None = None, lab_dir: Path | None = None) -> DownReport:
    """Remove every namespace, link and process of a lab; idempotent; works after a crash."""
    if prefix is None:
        if lab_dir is None:
            raise LabError("down: give --dir or --prefix")
        prefix = Lab.load(lab_dir).prefix
    with contextlib.suppress(SupervisorError, OSError, ValueError):
        supervisor.request(prefix, "shutdown", timeout=10.0)
    killed = 0
    # The supervisor stops its children on shutdown; whatever is left (it crashed, a child
    # ignored SIGTERM) is killed by namespace and by the environment marker.
    namespaces = topology.destroy(prefix)
    deadline = time.monotonic() + 5.0
    while pids := pids_with_marker(f"{supervisor.MARKER_ENV}={prefix}"):
        killed += kill_all(pids, signal.SIGKILL)
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)  # let the kernel reap before looking again
    with contextlib.suppress(FileNotFoundError):
        supervisor.socket_path(prefix).unlink()
    if lab_dir is not None:
        with contextlib.suppress(FileNotFoundError):
            (lab_dir / supervisor.LAB_FILE).unlink()
    return DownReport(prefix, tuple(namespaces), killed)


def find_lab(lab_dir: Path | None) -> Lab:
    """The lab in ``lab_dir``; inside a lab process, ``$LBD_LAB_DIR`` or ``.lab/<only one>``."""
    if lab_dir is not None:
        return Lab.load(lab_dir.resolve())
    env = os.environ.get("LBD_LAB_DIR")
    if env:
        return Lab.load(Path(env))
    candidates = sorted((Path.cwd() / ".lab").glob(f"*/{supervisor.LAB_FILE}"))
    if len(candidates) == 1:
        return Lab.load(candidates[0].parent)
    if not candidates:
        raise LabError("dir: no lab found under ./.lab; give --dir")
    raise LabError(
        "dir: several labs under ./.lab ("
        + ", ".join(c.parent.name for c in candidates)
        + "); give --dir"
    )


def kill_node(lab: Lab, name: str) -> None:
    """Cut node ``name`` off: its switch port down, then SIGKILL its speaker (held down)."""
    layout = lab.layout
    topology.set_switch_port(layout, layout.node(name), up=False)
    supervisor.request(lab.prefix, "stop", names=[f"speaker-{name}"], signal="SIGKILL")


def restore_node(lab: Lab, name: str) -> None:
    """Bring node ``name`` back: switch port up, speaker restarted."""
    layout = lab.layout
    topology.set_switch_port(layout, layout.node(name), up=True)
    supervisor.request(lab.prefix, "start", names=[f"speaker-{name}"])

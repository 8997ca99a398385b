"""``lbd lab up/down/kill-node/restore-node/scale``: one lab, from nothing to ready and back.

Two control planes (docs/LAB.md): the **stand-in** (the API stand-in, and stand-ins for
kube-proxy, the EndpointSlice controller and the pods; starts in seconds, needs nothing built)
and the **real** one (etcd, kube-apiserver, kube-controller-manager, the real kube-proxy in every
node and Pods on the nodes; needs ``make k8s``). :func:`choose_control_plane` picks the real one
when its binaries are found, unless told otherwise.

``up`` (:func:`up`) in order:

1. plan the layout (:mod:`.layout`) and build the namespaces (:mod:`.topology`); on the real lab
   also the pod routes between nodes and kube-proxy's mode (:mod:`.kubeproxy`);
2. write what the processes read into the lab directory: credentials (on the stand-in one bearer
   token per identity; on the real lab the control plane makes its own certificates and the
   ServiceAccount tokens come from TokenRequest once it runs), kubeconfigs, the membership key;
3. write ``plan.json`` (every process, :mod:`.processes`) and ``lab.json``, start the supervisor,
   which starts the API server (the stand-in, or ``lbd lab control-plane``) and the host
   forwarder at once;
4. wait for the API, then create what a real cluster would already have (namespace
   ``lbd-system``, the membership Secret, the Node objects, since there is no kubelet) and the
   sample IPAddressPool + L2Advertisement; on the real lab also the echo Pods;
5. start the other processes and wait until they run and the data path answers: every speaker
   sees every node, a controller leads, and either the echo service answers on every node
   (stand-in) or every pod is Ready and every kube-proxy reports healthy (real).

``down`` works from the lab directory or from the prefix alone, so it also cleans up after a
crash of anything, including the supervisor; it removes the files ``up`` wrote as well.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lbd.lab.cluster import (
    kubeproxy,
    labdir,
    podnet,
    processes,
    readiness,
    supervisor,
    topology,
)
from lbd.lab.cluster.labdir import KUBE_PROXY_SA, LabFiles
from lbd.lab.cluster.layout import (
    POD_CIDRS,
    POOL4,
    POOL6,
    SERVICE_CIDRS,
    Layout,
    Member,
    plan,
)
from lbd.lab.cluster.netns import (
    kill_all,
    namespaces_with_prefix,
    netns_path,
    pids_with_marker,
)
from lbd.lab.cluster.supervisor import ProcSpec, SupervisorError
from lbd.lab.cluster.workloads import DEFAULT_PODS_PER_NODE

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
DEPLOY = REPO_ROOT / "deploy" / "base"
SYSTEM_NAMESPACE = labdir.SYSTEM_NAMESPACE
STAND_IN, REAL = "stand-in", "real"
CONTROL_PLANES = (REAL, STAND_IN)
TOKEN_SECONDS = 7 * 24 * 3600  # as long as the control plane's certificates are valid

Progress = Callable[[str], None]


class LabError(RuntimeError):
    """The lab could not be brought up or operated; the message says what and where."""


def default_dir(prefix: str) -> Path:
    return Path.cwd() / labdir.DEFAULT_PARENT / prefix


@dataclass(frozen=True)
class LabOptions:
    """What ``lbd lab up`` was asked for."""

    prefix: str = "lbd"
    nodes: int = 3
    dir: Path | None = None
    ipv6: bool = False
    controllers: int = 2
    crds: Path = REPO_ROOT / "crds"
    rbac: tuple[Path, ...] = (DEPLOY / "rbac.yaml",)
    ready_timeout: float = 60.0
    extra_speaker_args: tuple[str, ...] = field(default=())
    control_plane: str | None = None  # "real", "stand-in"; None: real when its binaries exist
    pods_per_node: int = DEFAULT_PODS_PER_NODE  # real lab only
    pod_eviction_delay: float = 0.0  # real lab: kill-node marks the node's pods not ready then
    kube_proxy_mode: str | None = None  # real lab: nftables, iptables; None: the first that works


@dataclass(frozen=True)
class ControlPlaneChoice:
    """Which control plane a lab runs, the real binaries when it is the real one, and the line
    that tells the user (the first line ``lbd lab up`` prints)."""

    kind: str
    assets: Path | None
    line: str


def choose_control_plane(requested: str | None) -> ControlPlaneChoice:
    """``requested`` (``real``/``stand-in``), or real when the binaries are found; raises
    :class:`LabError` when ``real`` is asked for and they are missing."""
    from lbd.lab.control_plane import BinariesMissingError, find_binaries
    from lbd.lab.control_plane.binaries import HOW_TO_BUILD

    if requested not in (None, *CONTROL_PLANES):
        raise LabError(f"control-plane: {requested!r} is not one of {', '.join(CONTROL_PLANES)}")
    if requested == STAND_IN:
        return ControlPlaneChoice(
            STAND_IN, None, "control plane: stand-in (the API stand-in and kube-proxy stand-ins)"
        )
    try:
        binaries = find_binaries()
    except BinariesMissingError as exc:
        if requested == REAL:
            raise LabError(f"control-plane: real asked for, but {exc}") from None
        return ControlPlaneChoice(
            STAND_IN,
            None,
            "control plane: stand-in, since the real binaries are not built "
            f"({HOW_TO_BUILD}; then `lbd lab up` runs etcd, kube-apiserver, "
            "kube-controller-manager and kube-proxy)",
        )
    return ControlPlaneChoice(
        REAL,
        binaries.folder,
        f"control plane: real (etcd, kube-apiserver, kube-controller-manager, kube-proxy from "
        f"{binaries.folder}; --control-plane stand-in for the quick stand-in)",
    )


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
    def kind(self) -> str:
        """``real`` or ``stand-in``: which control plane the lab runs."""
        return str(self.data["control_plane"].get("kind", STAND_IN))

    @property
    def real(self) -> bool:
        return self.kind == REAL

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


def _member_json(m: Member) -> dict[str, Any]:
    return {
        "name": m.name,
        "netns": m.netns,
        "ifname": m.ifname,
        "ipv4": m.ipv4,
        "ipv6": m.ipv6,
        "mac": m.mac,
    }


def _lab_json(
    layout: Layout, files: LabFiles, procs: list[ProcSpec], opts: LabOptions, kind: str
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "prefix": layout.prefix,
        "dir": str(files.dir),
        "kubeconfig": str(files.kubeconfig),
        "kubeconfig_host": str(files.dir / "kubeconfig-host"),
        "api": {"url": layout.api_url, "host_url": None},
        "switch": {"netns": layout.switch_netns, "bridge": "br0"},
        "control_plane": {**_member_json(layout.control_plane), "kind": kind},
        "client": _member_json(layout.client),
        "nodes": [{**_member_json(n), "speaker_pid": None} for n in layout.nodes],
        "pools": {"ipv4": POOL4, "ipv6": POOL6 if layout.ipv6_pool else None},
        "membership_key": str(files.membership_key),
        "logs": str(files.dir / "logs"),
        "processes": [p.name for p in procs],
        "pids": {},
    }
    if kind == REAL:
        data["service_cidrs"] = list(SERVICE_CIDRS)
        data["pod_cidrs"] = list(POD_CIDRS)
        data["pods_per_node"] = opts.pods_per_node
        data["pod_eviction_delay"] = opts.pod_eviction_delay
        for node, member in zip(data["nodes"], layout.nodes, strict=True):
            node["pod_cidrs"] = list(member.pod_cidrs())
    return data


def up(opts: LabOptions, progress: Progress | None = None) -> Lab:
    """Build and start a lab; on any failure everything made so far is torn down again."""
    say = progress or (lambda _msg: None)
    choice = choose_control_plane(opts.control_plane)
    layout = plan(opts.prefix, opts.nodes, ipv6_pool=opts.ipv6)
    lab_dir = (opts.dir or default_dir(opts.prefix)).resolve()
    if not opts.crds.is_dir():
        raise LabError(f"crds: {opts.crds} is not a directory (the lab runs from a checkout)")
    for path in opts.rbac:
        if not path.is_file():
            raise LabError(f"rbac: {path} does not exist (the lab runs from a checkout)")
    if opts.pods_per_node < 0:
        raise LabError(f"pods-per-node: {opts.pods_per_node} is negative")
    if opts.pod_eviction_delay < 0:
        raise LabError(f"pod-eviction-delay: {opts.pod_eviction_delay} s is negative")
    mode = kubeproxy.Mode(opts.kube_proxy_mode) if opts.kube_proxy_mode else None
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
        if choice.kind == REAL:
            assert choice.assets is not None
            return _start_real(
                layout,
                LabFiles(lab_dir),
                opts,
                assets=choice.assets,
                want_mode=mode,
                say=say,
                started=started,
            )
        return _start_stand_in(layout, LabFiles(lab_dir), opts, say, started)
    except BaseException:
        down(prefix=layout.prefix, lab_dir=lab_dir, keep_logs=True)
        raise


def _launch(
    layout: Layout, files: LabFiles, procs: list[ProcSpec], opts: LabOptions, kind: str
) -> str:
    """Write ``plan.json`` and ``lab.json``, start the supervisor (which starts the autostart
    processes at once); the host forwarder's URL."""
    (files.dir / supervisor.PLAN_FILE).write_text(
        json.dumps(
            {"prefix": layout.prefix, "processes": [supervisor.spec_to_json(p) for p in procs]},
            indent=2,
        )
    )
    (files.dir / supervisor.LAB_FILE).write_text(
        json.dumps(_lab_json(layout, files, procs, opts, kind), indent=2) + "\n"
    )
    supervisor.launch(files.dir, layout.prefix)
    status = supervisor.request(layout.prefix, "status")
    return f"https://127.0.0.1:{status['forward_port']}"


def _start_stand_in(
    layout: Layout, files: LabFiles, opts: LabOptions, say: Progress, started: float
) -> Lab:
    tokens = {name: secrets.token_hex(16) for name in ("admin", "controller", "speaker")}
    # HTTPS inside the lab too: kubectl sends a bearer token only over TLS (kubernetes/kubectl#744)
    tls = labdir.api_tls(files.tls)
    ca = tls.cert_pem()
    labdir.write_private(
        files.kubeconfig, labdir.kubeconfig(layout.api_url, tokens["admin"], "admin", ca_pem=ca)
    )
    for who in ("controller", "speaker"):
        labdir.write_private(
            files.component_kubeconfig(who),
            labdir.kubeconfig(layout.api_url, tokens[who], f"lbd-{who}", ca_pem=ca),
        )
    labdir.stand_in_manifests(files.manifests, opts.crds)
    key = labdir.membership_key(files)
    procs = processes.stand_in(
        layout,
        files,
        controllers=opts.controllers,
        rbac=opts.rbac,
        tokens=tokens,
        speaker_args=opts.extra_speaker_args,
    )
    say("starting supervisor, API stand-in and host forwarder")
    host_url = _launch(layout, files, procs, opts, STAND_IN)
    labdir.write_private(
        files.dir / "kubeconfig-host",
        labdir.kubeconfig(host_url, tokens["admin"], "admin", ca_pem=ca),
    )

    from lbd.lab.cluster import bootstrap

    kube = bootstrap.wait_for_api(files.dir / "kubeconfig-host", timeout=opts.ready_timeout)
    say("creating namespace, membership secret, Node objects, pool and L2Advertisement")
    bootstrap.bootstrap(kube, layout, membership_key=key)
    rest = [p.name for p in procs if not p.autostart]
    say(f"starting {len(rest)} processes: " + ", ".join(rest))
    supervisor.request(layout.prefix, "start", names=rest)
    readiness.running(layout.prefix, [p.name for p in procs], opts.ready_timeout)
    bootstrap.wait_ready(kube, layout, timeout=opts.ready_timeout)
    readiness.echo(layout, opts.ready_timeout)
    return _finish(kube, layout, files, opts, say=say, started=started)


def _finish(
    kube: Any, layout: Layout, files: LabFiles, opts: LabOptions, *, say: Progress, started: float
) -> Lab:
    from lbd.lab.cluster import bootstrap

    readiness.speakers(layout, opts.ready_timeout)
    say(f"{len(layout.nodes)} speakers ready, each sees {len(layout.nodes)} live members")
    if opts.controllers:
        holder = bootstrap.wait_for_leader(kube, timeout=opts.ready_timeout)
        say(f"controller leader: {holder}")
    say(f"lab {layout.prefix} is up in {time.monotonic() - started:.1f} s (dir {files.dir})")
    return Lab.load(files.dir)


def _service_account_token(kube: Any, namespace: str, name: str) -> str:
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": TOKEN_SECONDS},
    }
    answer = kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body)
    return str(answer["status"]["token"])


def _start_real(
    layout: Layout,
    files: LabFiles,
    opts: LabOptions,
    *,
    assets: Path,
    want_mode: kubeproxy.Mode | None,
    say: Progress,
    started: float,
) -> Lab:
    from lbd.lab.cluster import bootstrap, workloads
    from lbd.lab.control_plane import find_binaries

    binaries = find_binaries()
    if binaries.kube_proxy is None:
        # The real lab's data path is kube-proxy's rules; without the binary there is no lab.
        raise LabError(
            f"kube-proxy is missing from {binaries.folder}: run `make k8s` "
            "(or point KUBEBUILDER_ASSETS at a folder that has it), or use --control-plane stand-in"
        )
    kube_proxy = binaries.kube_proxy
    for node in layout.nodes:
        podnet.prepare_node(node)
        podnet.route_pod_ranges(node, layout.nodes)
    mode, notes = kubeproxy.choose_mode(layout.nodes[0].netns, want_mode)
    for note in notes:
        say(f"kube-proxy: not {note}")
    for node in layout.nodes:
        kubeproxy.write_config(
            files.kube_proxy_config(node.name),
            node,
            files.component_kubeconfig("kube-proxy"),
            mode,
        )
    manifests = (
        opts.crds,
        DEPLOY / "namespace.yaml",
        DEPLOY / "serviceaccounts.yaml",
        *opts.rbac,
        labdir.kube_proxy_rbac(files.manifests),
    )
    key = labdir.membership_key(files)
    procs = processes.real(
        layout,
        files,
        controllers=opts.controllers,
        manifests=manifests,
        kube_proxy=kube_proxy,
        assets=assets,
        speaker_args=opts.extra_speaker_args,
    )
    say("starting supervisor, control plane (etcd, kube-apiserver, kube-controller-manager)")
    host_url = _launch(layout, files, procs, opts, REAL)
    state = readiness.control_plane(layout.prefix, files.dir, opts.ready_timeout)
    say(
        f"control plane Kubernetes {state['version']} (etcd {state['etcd_version']}) ready at "
        f"{state['url']} in {state['startup_seconds']:.1f} s"
    )
    ca_pem = Path(state["ca"]).read_bytes()
    labdir.write_private(
        files.dir / "kubeconfig-host",
        labdir.kubeconfig(host_url, state["admin_token"], "admin", ca_pem=ca_pem),
    )
    kube = bootstrap.wait_for_api(files.dir / "kubeconfig-host", timeout=opts.ready_timeout)
    for who, (namespace, name) in {
        "controller": (SYSTEM_NAMESPACE, "lbd-controller"),
        "speaker": (SYSTEM_NAMESPACE, "lbd-speaker"),
        "kube-proxy": KUBE_PROXY_SA,
    }.items():
        token = _service_account_token(kube, namespace, name)
        labdir.write_private(
            files.component_kubeconfig(who),
            labdir.kubeconfig(state["url"], token, f"{namespace}:{name}", ca_pem=ca_pem),
        )
    say(
        "creating the membership secret, Node objects, pool, L2Advertisement and "
        f"{opts.pods_per_node} echo pods per node"
    )
    bootstrap.bootstrap(kube, layout, membership_key=key, pod_cidrs=True)
    workloads.scale(kube, layout, opts.pods_per_node)
    rest = [p.name for p in procs if not p.autostart]
    say(f"starting {len(rest)} processes: " + ", ".join(rest))
    supervisor.request(layout.prefix, "start", names=rest)
    readiness.running(layout.prefix, [p.name for p in procs], opts.ready_timeout)
    workloads.wait_pods_ready(kube, layout, opts.pods_per_node, timeout=opts.ready_timeout)
    say(f"{opts.pods_per_node * len(layout.nodes)} pods Running and Ready")
    readiness.kube_proxies(layout, opts.ready_timeout)
    say(f"kube-proxy ({mode.value} mode) healthy on every node")
    return _finish(kube, layout, files, opts, say=say, started=started)


@dataclass(frozen=True)
class DownReport:
    prefix: str
    namespaces: tuple[str, ...]
    killed: int


def down(
    *, prefix: str | None = None, lab_dir: Path | None = None, keep_logs: bool = False
) -> DownReport:
    """Remove every namespace, link, process and file of a lab; idempotent; works after a crash.

    ``keep_logs`` leaves ``DIR/logs`` (and the control plane's logs, which move there) for a
    look at what went wrong.
    """
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
        if keep_logs:
            labdir.keep_control_plane_logs(lab_dir)
        labdir.remove(lab_dir, keep_logs=keep_logs)
    return DownReport(prefix, tuple(namespaces), killed)


def find_lab(lab_dir: Path | None) -> Lab:
    """The lab in ``lab_dir``; inside a lab process, ``$LBD_LAB_DIR`` or ``.lab/<only one>``."""
    if lab_dir is not None:
        return Lab.load(lab_dir.resolve())
    env = os.environ.get("LBD_LAB_DIR")
    if env:
        return Lab.load(Path(env))
    candidates = sorted((Path.cwd() / labdir.DEFAULT_PARENT).glob(f"*/{supervisor.LAB_FILE}"))
    if len(candidates) == 1:
        return Lab.load(candidates[0].parent)
    if not candidates:
        raise LabError("dir: no lab found under ./.lab; give --dir")
    raise LabError(
        "dir: several labs under ./.lab ("
        + ", ".join(c.parent.name for c in candidates)
        + "); give --dir"
    )


def _admin(lab: Lab) -> Any:
    """An admin client that works from where this runs: the host's kubeconfig (through the
    forwarder on 127.0.0.1) in the root namespace, the lab's own inside a lab namespace."""
    from lbd.k8s.client import load_kube

    here = os.stat("/proc/self/ns/net").st_ino
    inside = any(
        os.stat(netns_path(name)).st_ino == here for name in namespaces_with_prefix(lab.prefix)
    )
    return load_kube(str(lab.kubeconfig if inside else lab.host_kubeconfig))


def kill_node(
    lab: Lab,
    name: str,
    *,
    pod_eviction_delay: float | None = None,
    say: Progress | None = None,
    on_cut: Callable[[], None] | None = None,
) -> list[str]:
    """Cut node ``name`` off: its switch port down (then ``on_cut()``), then SIGKILL its
    speaker (held down).

    On the real lab, ``pod_eviction_delay`` seconds later (default: the lab's
    ``--pod-eviction-delay``, 0) the node's pods are marked not ready, as the node-lifecycle
    controller would once the node stops reporting; returns the pods marked. The API client and
    the list of pods are made in another thread while the node is cut, so that the cut comes
    first and, with no delay, the marks follow it within the time of the patches themselves.
    """
    layout = lab.layout
    member = layout.node(name)
    if not lab.real:
        _cut(lab, member, on_cut)
        return []
    from lbd.lab.cluster import workloads

    with ThreadPoolExecutor(max_workers=1) as prepare:
        kube_future = prepare.submit(_admin, lab)
        _cut(lab, member, on_cut)
        kube = kube_future.result()
    try:
        delay = pod_eviction_delay
        if delay is None:
            delay = float(lab.data.get("pod_eviction_delay", 0.0))
        if delay > 0:
            if say:
                say(f"marking the pods of {name} not ready in {delay:g} s (pod eviction delay)")
            time.sleep(delay)  # the documented delay itself, not a wait for a condition
            if topology.switch_port_up(layout, member):
                return []  # restored in the meantime: nothing to evict
        return workloads.set_pods_ready(kube, member, False, reason="NodeNotReady")
    finally:
        kube.close()


def _cut(lab: Lab, member: Member, on_cut: Callable[[], None] | None) -> None:
    topology.set_switch_port(lab.layout, member, up=False)
    if on_cut is not None:
        on_cut()
    supervisor.request(lab.prefix, "stop", names=[f"speaker-{member.name}"], signal="SIGKILL")


def restore_node(lab: Lab, name: str) -> list[str]:
    """Bring node ``name`` back: switch port up, speaker restarted; on the real lab its pods
    are marked ready again (what its kubelet reports once it reaches the API server)."""
    layout = lab.layout
    member = layout.node(name)
    topology.set_switch_port(layout, member, up=True)
    supervisor.request(lab.prefix, "start", names=[f"speaker-{name}"])
    if not lab.real:
        return []
    from lbd.lab.cluster import workloads

    kube = _admin(lab)
    try:
        return workloads.set_pods_ready(kube, member, True, reason="")
    finally:
        kube.close()


def scale(lab: Lab, per_node: int, nodes: list[str] | None = None, *, timeout: float = 60.0) -> int:
    """``lbd lab scale``: ``per_node`` echo pods on each of ``nodes`` (default: all), waited
    for until they are ready (or gone); returns how many pods were created or deleted."""
    if not lab.real:
        raise LabError(
            "scale: the stand-in lab has no pods (its echo runs on every node); "
            "use a lab with --control-plane real"
        )
    from lbd.lab.cluster import workloads

    kube = _admin(lab)
    try:
        changed = workloads.scale(kube, lab.layout, per_node, nodes)
        workloads.wait_pods_ready(kube, lab.layout, per_node, timeout=timeout, nodes=nodes)
    finally:
        kube.close()
    return changed

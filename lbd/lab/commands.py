"""``lbd lab up|down|exec|demo|kill-node|restore-node|scale`` and the lab's internal programs.

The internal programs (``supervise``, ``control-plane``, ``kubelet``, ``echo``, ``kube-proxy``,
``endpoints``, ``forward``) are what the lab runs inside its namespaces; they are subcommands so
that every lab process is the same ``lbd`` binary, found the same way. They are left out of
``lbd lab --help`` (added without ``help=``: :mod:`lbd.clihelp`) and stay runnable.

Which lab a command means: ``--dir DIR``, or ``--prefix PREFIX`` (every command that takes one
takes the other), or the only lab under ``./.lab``. ``lab up`` records where a prefix's lab
lives (``/run/lbd-lab/PREFIX.dir``, beside the supervisor's socket), so ``--prefix`` finds a lab
made with ``--dir`` too, and ``lab down --prefix`` removes that lab's record (its ``lab.json``),
so the next ``lab up`` of the same directory does not refuse (issue 14, point 5).

Errors are one line on stderr naming the flag (:func:`lbd.clihelp.fail`): exit code 2 for a bad
flag, 1 when the lab could not do it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lbd.clihelp import add_command, examples, fail

NEEDS_ROOT = (
    "lbd lab needs root: it creates network namespaces, a bridge and veth links, and its speakers "
    "answer ARP/NDP on raw sockets. Nothing is configured outside the lab's own namespaces "
    "(all addresses are from the 198.18.0.0/15 and 2001:db8::/32 documentation ranges), and "
    "`lbd lab down` removes everything. Run it again as root, e.g. `sudo make demo`."
)


def _dir(value: str | None) -> Path | None:
    return Path(value) if value else None


def _record_path(prefix: str) -> Path:
    from lbd.lab.cluster.supervisor import SOCKET_DIR

    return SOCKET_DIR / f"{prefix}.dir"


def _record(prefix: str, lab_dir: Path) -> None:
    """Remember where the lab of ``prefix`` lives (for ``--prefix``)."""
    path = _record_path(prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{lab_dir.resolve()}\n")


def _recorded(prefix: str) -> Path | None:
    try:
        text = _record_path(prefix).read_text().strip()
    except OSError:
        return None
    return Path(text) if text else None


def _forget(prefix: str) -> None:
    with contextlib.suppress(OSError):
        _record_path(prefix).unlink()


def _prefix_dir(prefix: str) -> Path:
    """The directory of the lab of ``prefix``: where ``lab up`` recorded it, else the default."""
    from lbd.lab.cluster.lab import default_dir

    return _recorded(prefix) or default_dir(prefix)


def _where(args: argparse.Namespace) -> str:
    """How the user named the lab (for messages)."""
    if getattr(args, "dir", None):
        return f"--dir {args.dir}"
    if getattr(args, "prefix", None):
        return f"--prefix {args.prefix}"
    return "--dir/--prefix"


def _lab_error(args: argparse.Namespace, exc: Exception) -> str:
    """A lab error with the flag the user typed: ``dir: no lab at ...`` -> ``--prefix P: ...``."""
    text = str(exc)
    if text.startswith("dir: "):
        text = f"{_where(args)}: {text.removeprefix('dir: ')}"
    return text.replace("give --dir", "give --dir or --prefix")


def _find(args: argparse.Namespace) -> Any:
    """The lab ``--dir`` or ``--prefix`` names, else the only one under ./.lab (LabError)."""
    from lbd.lab.cluster.lab import find_lab

    if not args.dir and getattr(args, "prefix", None):
        return find_lab(_prefix_dir(args.prefix))
    return find_lab(_dir(args.dir))


def _refused(prog: str, *checks: tuple[bool, str]) -> int | None:
    """Why a command that needs root does not start: the first failed check of its flags as a
    one-line error, else :data:`NEEDS_ROOT` when not root (exit code 2); None when it may."""
    for ok, message in checks:
        if not ok:
            return fail(prog, message)
    if os.geteuid() != 0:
        print(NEEDS_ROOT, file=sys.stderr)
        return 2
    return None


def _UP_ERRORS() -> tuple[type[Exception], ...]:  # noqa: N802 (a constant, built lazily)
    """What a lab command reports as a one-line error (anything else is a bug: a traceback)."""
    from lbd.lab.cluster.bootstrap import BootstrapError
    from lbd.lab.cluster.kubeproxy import KubeProxyError
    from lbd.lab.cluster.lab import LabError
    from lbd.lab.cluster.layout import LayoutError
    from lbd.lab.cluster.readiness import NotReadyError
    from lbd.lab.cluster.supervisor import SupervisorError
    from lbd.lab.cluster.topology import TopologyError
    from lbd.lab.cluster.workloads import PodsError

    return (
        LabError,
        LayoutError,
        TopologyError,
        BootstrapError,
        SupervisorError,
        KubeProxyError,
        PodsError,
        NotReadyError,
    )


def cmd_up(args: argparse.Namespace) -> int:
    """build the network-namespace lab and start everything

    Build a lab of network namespaces (a switch, a control plane, nodes and an external client) and
    start the control plane, the lbd controllers, the speakers and echo Services. Needs root;
    touches nothing outside its own namespaces.

    examples:
      sudo .venv/bin/lbd lab up
      sudo .venv/bin/lbd lab up --prefix l2 --nodes 4 --ipv6 --control-plane stand-in
    """
    refused = _refused(
        "lbd lab up",
        (args.nodes >= 1, f"--nodes {args.nodes}: a lab needs at least one node"),
        (args.pods_per_node >= 0, f"--pods-per-node {args.pods_per_node}: must be >= 0"),
        (
            args.pod_eviction_delay >= 0,
            f"--pod-eviction-delay {args.pod_eviction_delay}: must be >= 0 seconds",
        ),
    )
    if refused is not None:
        return refused
    from lbd.lab.cluster.lab import LabOptions, choose_control_plane, up

    except_types = _UP_ERRORS()
    try:
        choice = choose_control_plane(args.control_plane)
        print(f"lab: {choice.line}", flush=True)
        opts = LabOptions(
            prefix=args.prefix,
            nodes=args.nodes,
            dir=_dir(args.dir),
            ipv6=args.ipv6,
            control_plane=choice.kind,
            pods_per_node=args.pods_per_node,
            pod_eviction_delay=args.pod_eviction_delay,
            kube_proxy_mode=args.kube_proxy_mode,
        )
        lab = up(opts, progress=lambda msg: print(f"lab: {msg}", flush=True))
    except except_types as exc:
        return fail("lbd lab up", _lab_error(args, exc), 1)
    _record(lab.prefix, lab.dir)
    for member in [lab.data["control_plane"], *lab.data["nodes"], lab.data["client"]]:
        print(
            f"  {member['name']:<4} netns {member['netns']:<14} {member['ipv4']:<14} "
            f"{member['ipv6']:<18} {member['mac']}"
        )
    print(f"lab.json:   {lab.dir / 'lab.json'}")
    print(f"kubeconfig: {lab.kubeconfig} (inside the lab), {lab.host_kubeconfig} (from the host)")
    if lab.real:
        print(
            f"try:       kubectl --kubeconfig {lab.host_kubeconfig} get nodes,pods,endpointslices"
            " -o wide"
        )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """remove every namespace, link, process and file of a lab

    Remove every namespace, link, process and file of a lab, and its record (so the next lab up
    there starts afresh). By --prefix it also cleans up after a crash, when the lab's files are
    gone.

    examples:
      sudo .venv/bin/lbd lab down
      sudo .venv/bin/lbd lab down --prefix l2
    """
    refused = _refused("lbd lab down")
    if refused is not None:
        return refused
    from lbd.lab.cluster.lab import LabError, down, find_lab

    try:
        if args.prefix:
            # By prefix (also after a crash): the directory `lab up` recorded for it, so its
            # record goes too and the next `lab up` there does not refuse.
            lab_dir = _dir(args.dir) or _prefix_dir(args.prefix)
            report = down(
                prefix=args.prefix,
                lab_dir=lab_dir if lab_dir.is_dir() else None,
                keep_logs=args.keep_logs,
            )
        else:
            lab = find_lab(_dir(args.dir))
            report = down(prefix=lab.prefix, lab_dir=lab.dir, keep_logs=args.keep_logs)
    except LabError as exc:
        return fail("lbd lab down", _lab_error(args, exc), 1)
    _forget(report.prefix)
    print(
        f"lab {report.prefix}: removed {len(report.namespaces)} namespaces"
        + (f" ({', '.join(report.namespaces)})" if report.namespaces else "")
    )
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    """run a command inside a lab namespace with KUBECONFIG set

    Run a command in the control plane's namespace (or a node's, or the client's) with KUBECONFIG
    and LBD_LAB_DIR set to the lab's.

    examples:
      sudo .venv/bin/lbd lab exec -- kubectl get svc -A
      sudo .venv/bin/lbd lab exec --prefix l2 --client -- curl -s 198.18.100.0:9000
    """
    from lbd.lab.cluster.lab import LabError

    command = [c for c in args.cmd if c != "--"] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        return fail("lbd lab exec", "COMMAND: give a command after --")
    try:
        lab = _find(args)
        if args.client:
            netns = lab.data["client"]["netns"]
        elif args.node:
            netns = lab.node(args.node)["netns"]
        else:
            netns = lab.data["control_plane"]["netns"]
    except LabError as exc:
        return fail("lbd lab exec", _lab_error(args, exc), 1)
    os.environ["KUBECONFIG"] = str(lab.kubeconfig)
    os.environ["LBD_LAB_DIR"] = str(lab.dir)
    os.execvp("ip", ["ip", "netns", "exec", netns, *command])


def _node_cmd(args: argparse.Namespace, restore: bool) -> int:
    verb = "restore-node" if restore else "kill-node"
    delay = getattr(args, "pod_eviction_delay", None)
    refused = _refused(
        f"lbd lab {verb}",
        (delay is None or delay >= 0, f"--pod-eviction-delay {delay}: must be >= 0 seconds"),
    )
    if refused is not None:
        return refused
    from lbd.lab.cluster.lab import kill_node, restore_node

    errors: tuple[type[Exception], ...] = (*_UP_ERRORS(), OSError)
    try:
        lab = _find(args)
        if restore:
            pods = restore_node(lab, args.name)
            print(f"node {args.name} restored (link up, speaker restarted)")
        else:
            pods = kill_node(
                lab,
                args.name,
                pod_eviction_delay=args.pod_eviction_delay,
                say=lambda msg: print(msg, flush=True),
            )
            print(f"node {args.name} cut off (link down, speaker killed)")
    except errors as exc:
        return fail(f"lbd lab {verb}", _lab_error(args, exc), 1)
    if pods:
        state = "ready" if restore else "not ready"
        print(f"pods marked {state}: {', '.join(pods)}")
    return 0


def cmd_kill_node(args: argparse.Namespace) -> int:
    """cut a node off: link down, speaker killed (real: pods not ready)

    Cut a node off as a power loss would: its link goes down and its speaker is killed; on the real
    control plane its pods are marked not ready.

    examples:
      sudo .venv/bin/lbd lab kill-node n1
      sudo .venv/bin/lbd lab kill-node --prefix l2 n2 --pod-eviction-delay 5
    """
    return _node_cmd(args, restore=False)


def cmd_restore_node(args: argparse.Namespace) -> int:
    """bring a node back: link up, speaker restarted

    Bring a node that kill-node cut off back: link up, speaker restarted, its pods ready again.

    examples:
      sudo .venv/bin/lbd lab restore-node n1
      sudo .venv/bin/lbd lab restore-node --prefix l2 n2
    """
    return _node_cmd(args, restore=True)


def cmd_scale(args: argparse.Namespace) -> int:
    """real control plane: N echo pods per node

    Real control plane: create or delete echo pods until each node (or each --node) runs PODS of
    them, and wait until they are ready.

    examples:
      sudo .venv/bin/lbd lab scale 5
      sudo .venv/bin/lbd lab scale 0 --node n1
    """
    refused = _refused("lbd lab scale", (args.pods >= 0, f"PODS {args.pods}: must be >= 0"))
    if refused is not None:
        return refused
    from lbd.lab.cluster.lab import scale

    try:
        lab = _find(args)
        changed = scale(lab, args.pods, args.node or None)
    except _UP_ERRORS() as exc:
        return fail("lbd lab scale", _lab_error(args, exc), 1)
    where = ", ".join(args.node) if args.node else "every node"
    print(f"{args.pods} echo pods on {where} ({changed} created or deleted), all ready")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """up, then a narrated failover scenario, then down

    Build a lab, show a Service getting an address and a node failing over with the client's view of
    the gap, then remove the lab (unless --keep).

    examples:
      sudo make demo
      sudo .venv/bin/lbd lab demo --keep --nodes 4
    """
    refused = _refused(
        "lbd lab demo",
        (args.nodes >= 2, f"--nodes {args.nodes}: a failover needs at least 2 nodes"),
    )
    if refused is not None:
        return refused
    from lbd.lab.scenarios.demo import run_demo

    return run_demo(
        prefix=args.prefix,
        nodes=args.nodes,
        lab_dir=_dir(args.dir),
        keep=args.keep,
        control_plane=args.control_plane,
    )


def _control_plane_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--control-plane",
        choices=("real", "stand-in"),
        help="real: etcd, kube-apiserver, kube-controller-manager and kube-proxy built by "
        "`make k8s`, with Pods on the nodes; stand-in: the API stand-in and stand-ins for "
        "kube-proxy and the pods (default: real when its binaries are found)",
    )


def _new_lab(p: argparse.ArgumentParser, *, prefix: str) -> None:
    """``--nodes``, ``--dir`` and ``--prefix`` of a lab to build (``up``, ``demo``)."""
    p.add_argument("--nodes", type=int, default=3, metavar="N", help="number of nodes")
    p.add_argument("--dir", metavar="DIR", help="lab directory (default: .lab/PREFIX)")
    p.add_argument("--prefix", default=prefix, help="namespace name prefix")


def _which_lab(p: argparse.ArgumentParser) -> None:
    """``--dir`` or ``--prefix``: which lab (default: the only one under ./.lab)."""
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--dir", metavar="DIR", help="the lab's directory (default: the only lab under ./.lab)"
    )
    which.add_argument(
        "--prefix", metavar="PREFIX", help="the lab's namespace prefix (as given to lab up)"
    )


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = add_command(sub, "up", cmd_up)
    _new_lab(p, prefix="lbd")
    p.add_argument("--ipv6", action="store_true", help="add the IPv6 range to the lab pool")
    _control_plane_arg(p)
    p.add_argument(
        "--pods-per-node",
        type=int,
        default=3,
        metavar="N",
        help="real control plane: echo pods placed on each node (`lbd lab scale` changes it)",
    )
    p.add_argument(
        "--pod-eviction-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="real control plane: kill-node marks the node's pods not ready this long after "
        "cutting it off, as the node-lifecycle controller would",
    )
    p.add_argument(
        "--kube-proxy-mode",
        choices=("nftables", "iptables"),
        help="real control plane: kube-proxy's mode (default: nftables, else iptables)",
    )

    p = add_command(sub, "down", cmd_down)
    p.add_argument("--dir", metavar="DIR", help="the lab's directory")
    p.add_argument(
        "--prefix",
        metavar="PREFIX",
        help="clean up by namespace prefix (also after a crash); with --dir, the files there",
    )
    p.add_argument("--keep-logs", action="store_true", help="leave DIR/logs")

    p = add_command(sub, "exec", cmd_exec)
    _which_lab(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--node", metavar="NAME", help="run on this node (default: the control plane)"
    )
    where.add_argument("--client", action="store_true", help="run on the external client")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="what to run")

    p = add_command(sub, "kill-node", cmd_kill_node)
    p.add_argument("name", metavar="NAME", help="the node (n1, n2, ...)")
    _which_lab(p)
    p.add_argument(
        "--pod-eviction-delay",
        type=float,
        metavar="SECONDS",
        help="real control plane: mark the node's pods not ready after this delay "
        "(default: the lab's --pod-eviction-delay)",
    )

    p = add_command(sub, "restore-node", cmd_restore_node)
    p.add_argument("name", metavar="NAME", help="the node (n1, n2, ...)")
    _which_lab(p)

    p = add_command(sub, "scale", cmd_scale)
    p.add_argument("pods", type=int, metavar="PODS", help="echo pods per node")
    _which_lab(p)
    p.add_argument("--node", action="append", metavar="NAME", help="only this node (repeatable)")

    p = add_command(sub, "demo", cmd_demo)
    _new_lab(p, prefix="lbddemo")
    p.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    _control_plane_arg(p)

    _register_internal(sub)


def _lazy(module: str) -> Callable[[argparse.Namespace], int]:
    """``module.run``, imported only when the command runs (``lbd --help`` stays fast); a
    ``--prefix`` becomes the ``--dir`` of that lab first."""

    def run(args: argparse.Namespace) -> int:
        if getattr(args, "prefix", None) and getattr(args, "dir", None) is None:
            args.dir = _prefix_dir(args.prefix)
        result: int = importlib.import_module(module).run(args)
        return result

    return run


@dataclass(frozen=True)
class _Flag:
    """One ``add_argument`` of an internal command (its flags and keyword arguments), or, with
    ``one_of``, a required group of mutually exclusive ones."""

    flags: tuple[str, ...]
    options: Mapping[str, Any]
    one_of: tuple[_Flag, ...] = ()

    def add_to(self, p: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
        if self.one_of:
            group = p.add_mutually_exclusive_group(required=True)
            for flag in self.one_of:
                flag.add_to(group)
        else:
            p.add_argument(*self.flags, **self.options)


def _flag(*flags: str, **options: Any) -> _Flag:
    return _Flag(flags, options)


_WHICH_LAB = _Flag(
    (),
    {},
    one_of=(
        _flag("--dir", type=Path, metavar="DIR", help="the lab's directory"),
        _flag("--prefix", metavar="PREFIX", help="the lab's namespace prefix"),
    ),
)
_KUBECONFIG = _flag("--kubeconfig", required=True, metavar="FILE", help="kubeconfig file")
_NODE = _flag("--node-name", required=True, metavar="NAME", help="the node")


@dataclass(frozen=True)
class _Internal:
    """A program the lab runs in its namespaces: ``lbd lab NAME`` runs ``module.run``."""

    name: str
    module: str
    what: str
    example: str
    flags: tuple[_Flag, ...]


# The programs the lab runs in its namespaces (not meant to be typed by hand).
_INTERNAL = (
    _Internal(
        "supervise",
        "lbd.lab.cluster.supervisor",
        "Run the lab's process supervisor.",
        "lbd lab supervise --prefix lbd --daemonize",
        (
            _WHICH_LAB,
            _flag("--daemonize", action="store_true", help="fork, start a new session, detach"),
        ),
    ),
    _Internal(
        "control-plane",
        "lbd.lab.cluster.realplane",
        "Run etcd, kube-apiserver and kube-controller-manager.",
        "lbd lab control-plane --dir .lab/lbd --manifest deploy/examples/lab-pool.yaml",
        (
            _WHICH_LAB,
            _flag(
                "--manifest",
                action="append",
                default=[],
                metavar="PATH",
                help="file or folder to apply",
            ),
            _flag(
                "--timeout", type=float, default=120.0, metavar="SECONDS", help="start-up deadline"
            ),
        ),
    ),
    _Internal(
        "kubelet",
        "lbd.lab.standins.kubelet",
        "Run the Pods bound to a node.",
        "lbd lab kubelet --prefix lbd --node-name n1 --kubeconfig .lab/lbd/kubeconfig",
        (_WHICH_LAB, _NODE, _KUBECONFIG),
    ),
    _Internal(
        "echo",
        "lbd.lab.standins.echo",
        "TCP/UDP echo answering with the node name.",
        "lbd lab echo --node-name n1 --port 9000",
        (
            _flag("--node-name", required=True, metavar="NAME", help="name to answer with"),
            _flag("--port", type=int, default=9000, help="TCP and UDP port"),
        ),
    ),
    _Internal(
        "kube-proxy",
        "lbd.lab.standins.kubeproxy",
        "kube-proxy stand-in: VIPs on lo.",
        "lbd lab kube-proxy --node-name n1 --kubeconfig .lab/lbd/kubeconfig",
        (_NODE, _KUBECONFIG),
    ),
    _Internal(
        "speaker-pods",
        "lbd.lab.standins.speakerpods",
        "The speakers' Pods and their readiness.",
        "lbd lab speaker-pods --dir .lab/lbd --kubeconfig .lab/lbd/kubeconfig",
        (
            _flag("--dir", required=True, type=Path, metavar="DIR", help="the lab's directory"),
            _KUBECONFIG,
        ),
    ),
    _Internal(
        "endpoints",
        "lbd.lab.standins.endpoints",
        "EndpointSlices for the echo service.",
        "lbd lab endpoints --kubeconfig .lab/lbd/kubeconfig",
        (_KUBECONFIG,),
    ),
    _Internal(
        "forward",
        "lbd.lab.cluster.forward",
        "Forward a host socket into the lab.",
        "lbd lab forward --fd 3 --to 198.18.0.1:6443",
        (
            _flag("--fd", type=int, required=True, help="inherited listening socket"),
            _flag(
                "--to",
                required=True,
                metavar="ADDR:PORT",
                help="where to connect (in this namespace)",
            ),
            _flag("--tls-cert", metavar="FILE", help="serve TLS on the host side with this"),
            _flag("--tls-key", metavar="FILE", help="... and this key"),
        ),
    ),
)


def _register_internal(sub: argparse._SubParsersAction[Any]) -> None:
    """The lab-internal commands: runnable, described, but not listed by ``lbd lab --help``
    (no ``help=``)."""
    for cmd in _INTERNAL:
        p = sub.add_parser(
            cmd.name,
            description=f"(lab internal: the lab runs it, see docs/LAB.md) {cmd.what}",
            epilog=examples(cmd.example),
        )
        for flag in cmd.flags:
            flag.add_to(p)
        p.set_defaults(func=_lazy(cmd.module))

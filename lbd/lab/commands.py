"""``lbd lab up|down|exec|demo|kill-node|restore-node|scale`` and the lab's internal programs.

The internal programs (``supervise``, ``control-plane``, ``kubelet``, ``echo``, ``kube-proxy``,
``endpoints``, ``forward``) are what the lab runs inside its namespaces; they are subcommands so
that every lab process is the same ``lbd`` binary, found the same way.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

NEEDS_ROOT = (
    "lbd lab needs root: it creates network namespaces, a bridge and veth links, and its speakers "
    "answer ARP/NDP on raw sockets. Nothing is configured outside the lab's own namespaces "
    "(all addresses are from the 198.18.0.0/15 and 2001:db8::/32 documentation ranges), and "
    "`lbd lab down` removes everything. Run it again as root, e.g. `sudo make demo`."
)


def _need_root() -> bool:
    if os.geteuid() != 0:
        print(NEEDS_ROOT, file=sys.stderr)
        return False
    return True


def _dir(value: str | None) -> Path | None:
    return Path(value) if value else None


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
    if not _need_root():
        return 2
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
        print(f"lbd lab up: {exc}", file=sys.stderr)
        return 1
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
    if not _need_root():
        return 2
    from lbd.lab.cluster.lab import LabError, default_dir, down, find_lab

    try:
        if args.prefix:
            lab_dir = _dir(args.dir) or default_dir(args.prefix)
            report = down(
                prefix=args.prefix,
                lab_dir=lab_dir if lab_dir.is_dir() else None,
                keep_logs=args.keep_logs,
            )
        else:
            lab = find_lab(_dir(args.dir))
            report = down(prefix=lab.prefix, lab_dir=lab.dir, keep_logs=args.keep_logs)
    except LabError as exc:
        print(f"lbd lab down: {exc}", file=sys.stderr)
        return 1
    print(
        f"lab {report.prefix}: removed {len(report.namespaces)} namespaces"
        + (f" ({', '.join(report.namespaces)})" if report.namespaces else "")
    )
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from lbd.lab.cluster.lab import LabError, find_lab

    command = [c for c in args.cmd if c != "--"] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        print("lbd lab exec: give a command after --", file=sys.stderr)
        return 2
    try:
        lab = find_lab(_dir(args.dir))
        if args.client:
            netns = lab.data["client"]["netns"]
        elif args.node:
            netns = lab.node(args.node)["netns"]
        else:
            netns = lab.data["control_plane"]["netns"]
    except LabError as exc:
        print(f"lbd lab exec: {exc}", file=sys.stderr)
        return 1
    os.environ["KUBECONFIG"] = str(lab.kubeconfig)
    os.environ["LBD_LAB_DIR"] = str(lab.dir)
    os.execvp("ip", ["ip", "netns", "exec", netns, *command])


def _node_cmd(args: argparse.Namespace, restore: bool) -> int:
    if not _need_root():
        return 2
    from lbd.lab.cluster.lab import find_lab, kill_node, restore_node

    verb = "restore-node" if restore else "kill-node"
    try:
        lab = find_lab(_dir(args.dir))
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
    except (_UP_ERRORS(), OSError) as exc:  # type: ignore[misc]
        print(f"lbd lab {verb}: {exc}", file=sys.stderr)
        return 1
    if pods:
        state = "ready" if restore else "not ready"
        print(f"pods marked {state}: {', '.join(pods)}")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    if not _need_root():
        return 2
    from lbd.lab.cluster.lab import find_lab, scale

    try:
        lab = find_lab(_dir(args.dir))
        changed = scale(lab, args.pods, args.node or None)
    except _UP_ERRORS() as exc:
        print(f"lbd lab scale: {exc}", file=sys.stderr)
        return 1
    where = ", ".join(args.node) if args.node else "every node"
    print(f"{args.pods} echo pods on {where} ({changed} created or deleted), all ready")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if not _need_root():
        return 2
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


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("up", help="build the network-namespace lab and start everything")
    p.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--dir", help="lab directory (default .lab/PREFIX)")
    p.add_argument("--prefix", default="lbd", help="namespace name prefix (default lbd)")
    p.add_argument("--ipv6", action="store_true", help="add the IPv6 range to the lab pool")
    _control_plane_arg(p)
    p.add_argument(
        "--pods-per-node",
        type=int,
        default=3,
        help="real control plane: echo pods placed on each node (default 3; `lbd lab scale`)",
    )
    p.add_argument(
        "--pod-eviction-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="real control plane: kill-node marks the node's pods not ready this long after "
        "cutting it off, as the node-lifecycle controller would (default 0)",
    )
    p.add_argument(
        "--kube-proxy-mode",
        choices=("nftables", "iptables"),
        help="real control plane: kube-proxy's mode (default: nftables, else iptables)",
    )
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="remove every namespace, link, process and file of a lab")
    p.add_argument("--dir", help="lab directory")
    p.add_argument("--prefix", help="clean up by prefix (also after a crash)")
    p.add_argument("--keep-logs", action="store_true", help="leave DIR/logs")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("exec", help="run a command inside a lab namespace with KUBECONFIG set")
    p.add_argument("--dir", help="lab directory")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--node", help="run on this node (default: the control plane)")
    where.add_argument("--client", action="store_true", help="run on the external client")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser(
        "kill-node", help="cut a node off: link down, speaker killed (real: pods not ready)"
    )
    p.add_argument("name")
    p.add_argument("--dir", help="lab directory")
    p.add_argument(
        "--pod-eviction-delay",
        type=float,
        metavar="SECONDS",
        help="real control plane: mark the node's pods not ready after this delay "
        "(default: the lab's --pod-eviction-delay, 0)",
    )
    p.set_defaults(func=lambda a: _node_cmd(a, restore=False))

    p = sub.add_parser("restore-node", help="bring a node back: link up, speaker restarted")
    p.add_argument("name")
    p.add_argument("--dir", help="lab directory")
    p.set_defaults(func=lambda a: _node_cmd(a, restore=True))

    p = sub.add_parser("scale", help="real control plane: N echo pods per node")
    p.add_argument("pods", type=int, help="echo pods per node")
    p.add_argument("--dir", help="lab directory")
    p.add_argument("--node", action="append", help="only this node (repeatable)")
    p.set_defaults(func=cmd_scale)

    p = sub.add_parser("demo", help="up, then a narrated failover scenario, then down")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--dir", help="lab directory (default .lab/PREFIX)")
    p.add_argument("--prefix", default="lbddemo")
    p.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    _control_plane_arg(p)
    p.set_defaults(func=cmd_demo)

    _register_internal(sub)


def _lazy(module: str) -> Callable[[argparse.Namespace], int]:
    """``module.run``, imported only when the command runs (``lbd --help`` stays fast)."""

    def run(args: argparse.Namespace) -> int:
        result: int = importlib.import_module(module).run(args)
        return result

    return run


def _register_internal(sub: argparse._SubParsersAction[Any]) -> None:
    """The programs the lab runs in its namespaces (not meant to be typed by hand)."""
    p = sub.add_parser("supervise", help="(lab internal) run the lab's process supervisor")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--daemonize", action="store_true", help="fork, start a new session, detach")
    p.set_defaults(func=_lazy("lbd.lab.cluster.supervisor"))

    p = sub.add_parser(
        "control-plane", help="(lab internal) etcd, kube-apiserver, kube-controller-manager"
    )
    p.add_argument("--dir", required=True, type=Path, help="lab directory")
    p.add_argument("--manifest", action="append", default=[], help="file or folder to apply")
    p.add_argument("--timeout", type=float, default=120.0, help="start-up deadline (seconds)")
    p.set_defaults(func=_lazy("lbd.lab.cluster.realplane"))

    p = sub.add_parser("kubelet", help="(lab internal) run the Pods bound to a node")
    p.add_argument("--dir", required=True, type=Path, help="lab directory")
    p.add_argument("--node-name", required=True)
    p.add_argument("--kubeconfig", required=True)
    p.set_defaults(func=_lazy("lbd.lab.standins.kubelet"))

    p = sub.add_parser("echo", help="(lab internal) TCP/UDP echo answering with the node name")
    p.add_argument("--node-name", required=True, help="name to answer with")
    p.add_argument("--port", type=int, default=9000)
    p.set_defaults(func=_lazy("lbd.lab.standins.echo"))

    p = sub.add_parser("kube-proxy", help="(lab internal) kube-proxy stand-in: VIPs on lo")
    p.add_argument("--node-name", required=True)
    p.add_argument("--kubeconfig", required=True)
    p.set_defaults(func=_lazy("lbd.lab.standins.kubeproxy"))

    p = sub.add_parser("speaker-pods", help="(lab internal) the speakers' Pods and readiness")
    p.add_argument("--dir", required=True, type=Path, help="lab directory")
    p.add_argument("--kubeconfig", required=True)
    p.set_defaults(func=_lazy("lbd.lab.standins.speakerpods"))

    p = sub.add_parser("endpoints", help="(lab internal) EndpointSlices for the echo service")
    p.add_argument("--kubeconfig", required=True)
    p.set_defaults(func=_lazy("lbd.lab.standins.endpoints"))

    p = sub.add_parser("forward", help="(lab internal) forward a host socket into the lab")
    p.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    p.add_argument("--to", required=True, help="ADDR:PORT to connect to (in this namespace)")
    p.add_argument("--tls-cert", help="serve TLS on the host side with this certificate")
    p.add_argument("--tls-key", help="... and this key")
    p.set_defaults(func=_lazy("lbd.lab.cluster.forward"))

"""``lbd lab up|down|exec|demo|kill-node|restore-node`` and the lab's internal programs.

The internal programs (``supervise``, ``echo``, ``kube-proxy``, ``endpoints``, ``forward``) are
what the lab runs inside its namespaces; they are subcommands so that every lab process is the
same ``lbd`` binary, found the same way.
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


def cmd_up(args: argparse.Namespace) -> int:
    if not _need_root():
        return 2
    from lbd.lab.cluster.bootstrap import BootstrapError
    from lbd.lab.cluster.lab import LabError, LabOptions, up
    from lbd.lab.cluster.layout import LayoutError
    from lbd.lab.cluster.supervisor import SupervisorError
    from lbd.lab.cluster.topology import TopologyError

    opts = LabOptions(prefix=args.prefix, nodes=args.nodes, dir=_dir(args.dir), ipv6=args.ipv6)
    except_types = (LabError, LayoutError, TopologyError, BootstrapError, SupervisorError)
    try:
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
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    if not _need_root():
        return 2
    from lbd.lab.cluster.lab import LabError, default_dir, down, find_lab

    try:
        if args.prefix:
            lab_dir = _dir(args.dir) or default_dir(args.prefix)
            report = down(prefix=args.prefix, lab_dir=lab_dir if lab_dir.is_dir() else None)
        else:
            lab = find_lab(_dir(args.dir))
            report = down(prefix=lab.prefix, lab_dir=lab.dir)
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
    from lbd.lab.cluster.lab import LabError, find_lab, kill_node, restore_node
    from lbd.lab.cluster.layout import LayoutError
    from lbd.lab.cluster.supervisor import SupervisorError

    try:
        lab = find_lab(_dir(args.dir))
        (restore_node if restore else kill_node)(lab, args.name)
    except (LabError, LayoutError, SupervisorError) as exc:
        print(f"lbd lab {'restore' if restore else 'kill'}-node: {exc}", file=sys.stderr)
        return 1
    print(f"node {args.name} {'restored' if restore else 'cut off (link down, speaker killed)'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if not _need_root():
        return 2
    from lbd.lab.scenarios.demo import run_demo

    return run_demo(prefix=args.prefix, nodes=args.nodes, lab_dir=_dir(args.dir), keep=args.keep)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("up", help="build the network-namespace lab and start everything")
    p.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--dir", help="lab directory (default .lab/PREFIX)")
    p.add_argument("--prefix", default="lbd", help="namespace name prefix (default lbd)")
    p.add_argument("--ipv6", action="store_true", help="add the IPv6 range to the lab pool")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="remove every namespace, link and process of a lab")
    p.add_argument("--dir", help="lab directory")
    p.add_argument("--prefix", help="clean up by prefix (also after a crash)")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("exec", help="run a command inside a lab namespace with KUBECONFIG set")
    p.add_argument("--dir", help="lab directory")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--node", help="run on this node (default: the control plane)")
    where.add_argument("--client", action="store_true", help="run on the external client")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("kill-node", help="cut a node off: link down and speaker killed")
    p.add_argument("name")
    p.add_argument("--dir", help="lab directory")
    p.set_defaults(func=lambda a: _node_cmd(a, restore=False))

    p = sub.add_parser("restore-node", help="bring a node back: link up, speaker restarted")
    p.add_argument("name")
    p.add_argument("--dir", help="lab directory")
    p.set_defaults(func=lambda a: _node_cmd(a, restore=True))

    p = sub.add_parser("demo", help="up, then a narrated failover scenario, then down")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--dir", help="lab directory (default .lab/PREFIX)")
    p.add_argument("--prefix", default="lbddemo")
    p.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
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

    p = sub.add_parser("echo", help="(lab internal) TCP/UDP echo answering with the node name")
    p.add_argument("--node-name", required=True, help="name to answer with")
    p.add_argument("--port", type=int, default=9000)
    p.set_defaults(func=_lazy("lbd.lab.standins.echo"))

    p = sub.add_parser("kube-proxy", help="(lab internal) kube-proxy stand-in: VIPs on lo")
    p.add_argument("--node-name", required=True)
    p.add_argument("--kubeconfig", required=True)
    p.set_defaults(func=_lazy("lbd.lab.standins.kubeproxy"))

    p = sub.add_parser("endpoints", help="(lab internal) EndpointSlices for the echo service")
    p.add_argument("--kubeconfig", required=True)
    p.set_defaults(func=_lazy("lbd.lab.standins.endpoints"))

    p = sub.add_parser("forward", help="(lab internal) forward a host socket into the lab")
    p.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    p.add_argument("--to", required=True, help="ADDR:PORT to connect to (in this namespace)")
    p.add_argument("--tls-cert", help="serve TLS on the host side with this certificate")
    p.add_argument("--tls-key", help="... and this key")
    p.set_defaults(func=_lazy("lbd.lab.cluster.forward"))

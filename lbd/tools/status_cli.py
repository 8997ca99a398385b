"""``lbd status``: read the cluster once (:func:`lbd.k8s.snapshot.read_snapshot`), print the
report of :mod:`lbd.tools.status`.

    lbd status [--kubeconfig FILE] [-o table|json|yaml] [--lb-class CLASS]

Colour: the table colours pools near exhaustion only when stdout is a terminal and ``NO_COLOR``
is unset (https://no-color.org), so a pipe or a file gets plain text. Exit code 0 when the
report was printed, 1 when the cluster could not be read (the message says why).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from lbd.clihelp import add_command

PROG = "lbd status"


class ReadError(Exception):
    """The cluster could not be read: the message says which step and why."""


def register(sub: Any) -> None:
    p = add_command(sub, "status", run, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument(
        "--lb-class",
        default=None,
        help="the loadBalancerClass lbd runs with (default: Services without a class)",
    )


def add_common(p: argparse.ArgumentParser) -> None:
    """``--kubeconfig`` and ``-o``, shared by ``status`` and ``doctor``."""
    p.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)",
    )
    p.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "yaml"),
        default="table",
        help="output format (default: table)",
    )


def read(kubeconfig: str | None, *, deep: bool) -> Any:
    """The cluster's :class:`~lbd.k8s.snapshot.Snapshot`, or :class:`ReadError`."""
    from lbd.k8s.client import ApiError, load_kube
    from lbd.k8s.snapshot_read import read_snapshot

    try:
        kube = load_kube(kubeconfig)
    except Exception as exc:  # the kubernetes loader raises its own ConfigException and others
        raise ReadError(f"cannot load a kubeconfig ({kubeconfig or 'default'}): {exc}") from None
    try:
        return read_snapshot(kube, deep=deep)
    except ApiError as exc:
        raise ReadError(f"cannot read the cluster: {exc}") from None
    finally:
        kube.close()


def use_color(out: TextIO) -> bool:
    return out.isatty() and not os.environ.get("NO_COLOR")


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        # msgspec writes the same indented JSON as json.dumps(indent=2, ensure_ascii=False)
        # about ten times faster (0.22 s of a 10 000-Service report, tests/bench/
        # bench_status.py), integers of any size included (an IPv6 pool's free count).
        import msgspec  # here: `lbd --help` runs without dependencies (tests/unit/test_deploy)

        return msgspec.json.format(msgspec.json.encode(data), indent=2).decode() + "\n"
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def run(args: argparse.Namespace) -> int:
    """pools, Services, speakers and conflicts of the cluster at a glance

    Show each IPAddressPool's usage per family and the Services waiting for it, each LoadBalancer
    Service's addresses, owner node and conditions, the speakers and what each announces, and the
    recent conflicts. One list per kind.

    examples:
      lbd status                      # pools, Services, speakers, conflicts
      lbd status -o json | jq '.services[] | select(.why != "")'
      kubectl lbd status              # the same, as a kubectl plugin
    """
    from lbd.k8s.snapshot_read import gc_paused
    from lbd.tools.status import as_data, build_status, render_table

    # One pause of the cyclic GC for the whole command, not only the read: building the report
    # next to the million objects just read set off full collections that cost more than the
    # building itself (0.3 s of 0.35 s, 10 000 Services, tests/bench/bench_status.py).
    with gc_paused():
        try:
            snap = read(args.kubeconfig, deep=False)
        except ReadError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
        report = build_status(snap, args.lb_class)
        if args.output == "table":
            sys.stdout.write(render_table(report, color=use_color(sys.stdout)))
        else:
            sys.stdout.write(dump(as_data(report), args.output))
    return 0

"""``lbd lab ...``: the lab's sub-commands, registered by the product CLI when the lab is present.

:func:`register` adds ``lab`` with the API stand-in's command (``lbd lab apiserver``, internal:
not listed) and the cluster's and scenarios' commands (:mod:`lbd.lab.commands`). ``lbd.cli``
imports this module in one place, optionally: wheels and the container image have no
``lbd.lab`` (docs/LAB.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from lbd.clihelp import add_command
from lbd.lab import commands
from lbd.lab.apiserver import cli as apiserver_cli


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """the lab: API stand-in and network-namespace cluster

    A cluster of network namespaces on this machine, on the real Kubernetes control plane (`make
    k8s`) or the API stand-in, with lbd's controller and speakers, for demos, tests and trying
    failures (docs/LAB.md). Needs root and a checkout.

    examples:
      sudo .venv/bin/lbd lab up && sudo .venv/bin/lbd lab exec -- kubectl get svc -A
      sudo .venv/bin/lbd lab kill-node n1 && sudo .venv/bin/lbd lab down
    """

    def usage(_args: argparse.Namespace) -> int:
        lab.print_help()  # `lbd lab` alone: this help and exit code 2, as `lbd` alone
        return 2

    lab = add_command(sub, "lab", usage, doc=register.__doc__)
    labsub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    apiserver_cli.register(labsub)
    commands.register(labsub)

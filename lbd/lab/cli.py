"""``lbd lab ...``: the lab API server and the network-namespace lab.

The ``lab`` command groups several subcommands contributed by modules listed in
:data:`LAB_COMMAND_MODULES`; each exposes ``register(subparsers)`` like the top-level commands.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

LAB_COMMAND_MODULES: tuple[str, ...] = ("lbd.lab.apiserver.cli", "lbd.lab.commands")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    lab = sub.add_parser("lab", help="the lab API server and the network-namespace lab")
    lab.set_defaults(func=lambda _a: (lab.print_help(), 2)[1])
    labsub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    for name in LAB_COMMAND_MODULES:
        importlib.import_module(name).register(labsub)

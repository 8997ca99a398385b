"""The ``lbd`` command.

One binary, several programs (``controller``, ``speaker``, ``lab`` ...). Each program lives in
its own package and contributes its subcommand through a ``register(subparsers)`` function listed
in :data:`COMMAND_MODULES`; the modules are imported only to register their arguments, so their
heavy dependencies must be imported inside their ``run`` functions, keeping ``lbd --help`` fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from lbd import __version__

# Modules that expose ``register(subparsers: argparse._SubParsersAction) -> None``. Each
# registered parser sets ``func`` (``Callable[[argparse.Namespace], int]``) as its default.
COMMAND_MODULES: tuple[str, ...] = ("lbd.lab.cli", "lbd.controller.cli", "lbd.speaker.cli")


def _version(_: argparse.Namespace) -> int:
    print(f"lbd {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lbd",
        description="lbd: bare-metal LoadBalancer for Kubernetes (controller, speaker, lab).",
    )
    parser.add_argument("--version", action="version", version=f"lbd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = sub.add_parser("version", help="print the version and exit")
    version.set_defaults(func=_version)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return func(args)


if __name__ == "__main__":
    sys.exit(main())

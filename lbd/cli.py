"""The ``lbd`` command.

One binary, several programs (``controller``, ``speaker``, the operator tools ``status``,
``doctor`` and ``migrate``, and ``lab`` in a checkout); ``kubectl-lbd`` is the same binary with
the operator tools only, so that ``kubectl lbd status`` works (:func:`kubectl_main`). Each
program contributes its subcommand through a ``register(subparsers)`` function; its module is
imported only to register arguments, so heavy dependencies are imported inside its ``run``
functions, keeping ``lbd --help`` fast.

The lab (``lbd.lab``) is not part of the product: wheels and the container image leave it out
(docs/LAB.md). :func:`_lab_register` is the one place the product names it, as an optional
import that the import-linter contract "the product never imports the lab" lists as its only
exception; without the lab, ``lbd lab ...`` says plainly that it needs a checkout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from lbd import __version__
from lbd.clihelp import Parser, add_command, examples
from lbd.controller import cli as controller_cli
from lbd.speaker import cli as speaker_cli
from lbd.tools import doctor_cli, migrate_cli, status_cli

Register = Callable[["argparse._SubParsersAction[Any]"], None]

LAB_ABSENT = (
    "lbd lab: the lab is not part of this installation (wheels and the container image leave "
    "lbd/lab out). Lab commands need a checkout of the lbd repository: run `make install` "
    "there, then `.venv/bin/lbd lab ...` (see docs/LAB.md)."
)


def _version(_: argparse.Namespace) -> int:
    """print the version and exit

    Print lbd's version and exit.

    examples:
      lbd version
    """
    print(f"lbd {__version__}")
    return 0


def _lab_register() -> Register | None:
    """``lbd.lab.cli.register`` when the lab is installed (a checkout), else None."""
    try:
        from lbd.lab import cli as lab_cli
    except ModuleNotFoundError as exc:
        # Only the lab's own absence means "no lab": a dependency missing inside it is a bug.
        if exc.name not in ("lbd.lab", "lbd.lab.cli"):
            raise
        return None
    return lab_cli.register


def _lab_absent(_: argparse.Namespace) -> int:
    """lab commands (need a checkout of the repository)

    The lab's commands; this installation has no lab (docs/LAB.md).

    examples:
      git clone ... && cd lbd && make install && .venv/bin/lbd lab --help
    """
    print(LAB_ABSENT, file=sys.stderr)
    return 2


def _register_lab_absent(sub: argparse._SubParsersAction[Any]) -> None:
    p = add_command(sub, "lab", _lab_absent)
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lbd",
        description="lbd: bare-metal LoadBalancer for Kubernetes (controller, speaker, lab).",
        epilog=examples(
            "lbd controller --help",
            "lbd speaker --node-name n1 --membership-key /etc/lbd/membership/key",
        ),
    )
    parser.add_argument("--version", action="version", version=f"lbd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_command(sub, "version", _version)
    controller_cli.register(sub)
    speaker_cli.register(sub)
    status_cli.register(sub)
    doctor_cli.register(sub)
    migrate_cli.register(sub)
    (_lab_register() or _register_lab_absent)(sub)
    return parser


def build_kubectl_parser() -> argparse.ArgumentParser:
    """``kubectl lbd ...``: the operator commands only (kubectl runs ``kubectl-lbd`` from the
    PATH for ``kubectl lbd``, passing the rest of the command line; its plugin convention)."""
    parser = argparse.ArgumentParser(
        prog="kubectl lbd",
        description="lbd's operator commands as a kubectl plugin (the same as `lbd status`, "
        "`lbd doctor`, `lbd migrate`).",
    )
    parser.add_argument("--version", action="version", version=f"lbd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    status_cli.register(sub)
    doctor_cli.register(sub)
    migrate_cli.register(sub)
    return parser


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    """The ``kubectl-lbd`` console script."""
    return main(argv, parser=build_kubectl_parser())


def main(
    argv: Sequence[str] | None = None, *, parser: argparse.ArgumentParser | None = None
) -> int:
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return func(args)


if __name__ == "__main__":
    sys.exit(main())

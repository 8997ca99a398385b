"""Conventions every ``lbd`` command follows (issue 14, point 5).

API::

    parser = Parser(prog="lbd", ...)        # subparsers made from it are Parsers too
    sub.add_parser("x", help=..., description=..., epilog=examples("lbd x --y 1", ...))
    return fail("lbd x", "--flag VALUE: what is wrong")    # one line on stderr, exit code 2

- ``--help`` shows each option's default (as argparse's ``ArgumentDefaultsHelpFormatter`` does,
  but only where there is one worth showing: not for None, False or an empty list, and not when
  the help text already says it), wraps the description, and ends with examples (``epilog``,
  starting ``examples:``, kept line by line).
- A usage error is one line on stderr naming the flag and pointing at ``--help`` (argparse's
  default prints the whole usage block first), exit code 2, as for every other error a command
  reports: a person reads the first line, a script checks the code.
- Commands a person does not type (the lab's own programs) are added without ``help=``, which
  keeps them out of the command list of ``--help`` while they stay runnable.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal, examples kept line by line; ``(default: X)``
    added where it says something."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "(default" in text
            or "%(default)" in text
            or not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or (isinstance(default, list | tuple) and not default)
        ):
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser with :class:`HelpFormatter` and one-line usage errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def examples(*lines: str) -> str:
    """An ``epilog``: ``examples:`` and the lines, indented; a line starting with ``#`` is a
    comment for the line after it."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def fail(prog: str, message: str, code: int = 2) -> int:
    """Report a command-line error as one line on stderr; the exit code to return."""
    print(f"{prog}: {' '.join(message.split())}", file=sys.stderr)
    return code

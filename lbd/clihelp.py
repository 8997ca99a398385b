"""Conventions every ``lbd`` command follows (issue 14, point 5).

API::

    parser = Parser(prog="lbd", ...)        # subparsers made from it are Parsers too
    p = add_command(sub, "x", run)          # texts: run's docstring (below)
    return fail("lbd x", "--flag VALUE: what is wrong")    # one line on stderr, exit code 2

A command's texts are the docstring of the function that runs it, as in click: the first
paragraph is the one-line ``help`` of the command list, the next ones the ``description`` of its
``--help`` (white space folded: the formatter wraps it), and an ``examples:`` paragraph, kept line
by line, the ``epilog``. So the words a user reads stand beside the code they describe, and every
command is added the same way (:func:`add_command`).

- ``--help`` shows each option's default (as argparse's ``ArgumentDefaultsHelpFormatter`` does,
  but only where there is one worth showing: not for None, False or an empty list, and not when
  the help text already says it), wraps the description, and ends with examples (``epilog``,
  starting ``examples:``, kept line by line).
- A usage error is one line on stderr naming the flag and pointing at ``--help`` (argparse's
  default prints the whole usage block first), exit code 2, as for every other error a command
  reports: a person reads the first line, a script checks the code.
- Commands a person does not type (the lab's own programs) are added without ``help=``
  (``add_command(..., internal=True)``: the whole docstring before the examples is the
  description), which keeps them out of the command list of ``--help`` while they stay
  runnable.
- A program's settings are a frozen dataclass whose fields are named as its flags' ``dest``:
  :func:`settings` fills one from the parsed flags, naming only the fields that differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    T = TypeVar("T", bound=DataclassInstance)
else:
    T = TypeVar("T")


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


def command_texts(doc: str, *, internal: bool = False) -> tuple[str | None, str, str]:
    """``(help, description, epilog)`` from a command's docstring (see the module doc); help is
    None for an internal command."""
    body, sep, tail = inspect.cleandoc(doc).partition("\n\nexamples:\n")
    if not sep:
        raise ValueError(f"a command's docstring ends with an examples: paragraph: {doc!r}")
    paragraphs = body.split("\n\n")
    help_text = None if internal else " ".join(paragraphs.pop(0).split())
    return help_text, " ".join(" ".join(paragraphs).split()), "examples:\n" + tail


def add_command(
    sub: argparse._SubParsersAction[Any],
    name: str,
    run: Callable[[argparse.Namespace], int],
    *,
    doc: str | None = None,
    internal: bool = False,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """Add the command ``name`` that runs ``run``, its texts from ``doc`` (default: ``run``'s
    docstring); ``kwargs`` go to ``add_parser`` (e.g. a ``formatter_class``).

    Under ``python -OO`` docstrings are gone: the commands still parse and run, with bare help
    (``tests/unit/test_cli_usage.py`` checks that every command has its texts)."""
    doc = doc or run.__doc__
    help_text: str | None = None if internal else ""
    if doc is not None:
        help_text, kwargs["description"], kwargs["epilog"] = command_texts(doc, internal=internal)
    if help_text is not None:  # argparse lists a sub-command only when help= is given at all
        kwargs["help"] = help_text
    p: argparse.ArgumentParser = sub.add_parser(name, **kwargs)
    p.set_defaults(func=run)
    return p


def add_log_level(p: argparse.ArgumentParser) -> None:
    """``--log-level``, the same for each program that runs until stopped (lbd.log.setup)."""
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log level written",
    )


def fail(prog: str, message: str, code: int = 2) -> int:
    """Report a command-line error as one line on stderr; the exit code to return."""
    print(f"{prog}: {' '.join(message.split())}", file=sys.stderr)
    return code


def settings(cls: type[T], source: object, **given: Any) -> T:
    """A ``cls`` (a dataclass) with each field taken from ``given``, else from the attribute of
    the same name of ``source`` (parsed flags, or other settings), else left at its default."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = given.keys() - names
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    values = {n: getattr(source, n) for n in names - given.keys() if hasattr(source, n)}
    return cls(**values, **given)

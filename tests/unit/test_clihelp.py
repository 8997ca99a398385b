"""lbd.clihelp.settings: a program's settings filled from its parsed flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from lbd.cli import build_parser
from lbd.clihelp import add_command, command_texts, settings
from lbd.controller.controller import ControllerSettings
from lbd.controller.main import ControllerOptions
from lbd.k8s.elector import ElectionConfig


@dataclass(frozen=True)
class Knobs:
    name: str
    port: int = 1
    level: str = "info"


def test_fields_come_from_given_then_the_source_then_the_default() -> None:
    args = argparse.Namespace(name="a", port=2, unrelated=True)
    assert settings(Knobs, args) == Knobs("a", 2, "info")
    assert settings(Knobs, args, port=3) == Knobs("a", 3, "info")


def test_a_given_field_the_dataclass_lacks_is_an_error() -> None:
    with pytest.raises(TypeError, match="Knobs has no field colour"):
        settings(Knobs, argparse.Namespace(name="a"), colour="red")


def test_every_controller_flag_reaches_the_settings_it_belongs_to() -> None:
    """`lbd controller` flags -> ControllerOptions -> ElectionConfig and ControllerSettings: a
    flag whose value does not arrive would silently run with the default."""
    argv = [
        "controller",
        *("--lb-class", "c", "--lease-namespace", "ns", "--lease-name", "ln"),
        *("--identity", "me", "--lease-duration", "30", "--renew-deadline", "20"),
        *("--retry-period", "5", "--workers", "3", "--resync-period", "60"),
        *("--speaker-namespace", "sns", "--speaker-selector", "a=b", "--speaker-grace", "7"),
    ]
    args = build_parser().parse_args(argv)
    opts = settings(ControllerOptions, args)
    assert settings(ElectionConfig, opts, namespace=opts.lease_namespace, name=opts.lease_name) == (
        ElectionConfig("ns", "ln", "me", 30.0, 20.0, 5.0)
    )
    got = settings(ControllerSettings, opts)
    assert (got.lb_class, got.workers, got.resync_period, got.identity) == ("c", 3, 60.0, "me")
    assert (got.speaker_namespace, got.speaker_selector, got.speaker_grace) == ("sns", "a=b", 7.0)


def _doc() -> None:
    """say hello
    to someone

    Says hello to the
    one named.

    Twice if asked.

    examples:
      lbd hello bob    # bob
      lbd hello \\
          --twice
    """


def test_a_docstring_is_help_then_description_then_examples_kept_line_by_line() -> None:
    help_text, description, epilog = command_texts(_doc.__doc__ or "")
    assert help_text == "say hello to someone"
    assert description == "Says hello to the one named. Twice if asked."
    assert epilog == "examples:\n  lbd hello bob    # bob\n  lbd hello \\\n      --twice"
    internal = command_texts(_doc.__doc__ or "", internal=True)
    assert internal[0] is None
    assert internal[1] == "say hello to someone Says hello to the one named. Twice if asked."


def test_a_command_without_examples_is_refused_when_it_is_added() -> None:
    with pytest.raises(ValueError, match="examples: paragraph"):
        command_texts("say hello\n\nSays hello.")


def test_without_docstrings_python_oo_commands_still_parse_and_run() -> None:
    """``python -OO`` strips docstrings: the command is still there, listed, with bare help."""

    def bare(_args: argparse.Namespace) -> int:
        return 7

    bare.__doc__ = None
    parser = argparse.ArgumentParser(prog="lbd")
    sub = parser.add_subparsers(dest="command")
    add_command(sub, "bare", bare).add_argument("--x", default="1")
    add_command(sub, "hidden", bare, internal=True)
    args = parser.parse_args(["bare", "--x", "2"])
    assert (args.func(args), args.x) == (7, "2")
    assert [a.dest for a in sub._choices_actions] == ["bare"]

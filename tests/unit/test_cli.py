from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from lbd import __version__
from lbd.cli import LAB_ABSENT, main


def test_version_subcommand_prints_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"lbd {__version__}"


def test_help_lists_subcommands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lbd", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("version", "controller", "speaker", "lab"):
        assert command in out


def test_no_subcommand_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2


def test_in_a_checkout_lab_has_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["lab", "--help"])
    out = capsys.readouterr().out
    for command in ("up", "down", "demo", "kill-node", "restore-node", "exec", "scale"):
        assert f"\n    {command} " in out or f"\n    {command}\n" in out


# Runs ``lbd`` in a fresh interpreter in which ``lbd.lab`` cannot be imported, as in a wheel or the
# container image; a finder placed first on sys.meta_path refuses the lab and everything below it.
_WITHOUT_LAB = textwrap.dedent(
    """
    import sys

    class NoLab:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "lbd.lab" or name.startswith("lbd.lab."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoLab)
    from lbd.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _lbd_without_lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_LAB, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("args", [("lab",), ("lab", "demo"), ("lab", "up", "--nodes", "2")])
def test_without_the_lab_lab_commands_say_they_need_a_checkout(args: tuple[str, ...]) -> None:
    run = _lbd_without_lab(*args)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == LAB_ABSENT
    assert "checkout" in LAB_ABSENT and "make install" in LAB_ABSENT
    assert "Traceback" not in run.stderr


def test_without_the_lab_the_product_commands_still_work() -> None:
    help_text = _lbd_without_lab("--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "controller" in help_text.stdout and "speaker" in help_text.stdout
    assert "need a checkout" in help_text.stdout
    assert _lbd_without_lab("speaker", "--help").returncode == 0
    version = _lbd_without_lab("version")
    assert version.stdout.strip() == f"lbd {__version__}"

"""Commands a person can use (issue 14, point 5): every ``--help`` has a description, its
defaults and an example; the lab's internal programs are not listed but run; every error is
one line on stderr naming the flag or file, with no traceback, and a documented exit code."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbd.cli import build_parser, main

INTERNAL_LAB = (
    "apiserver",
    "supervise",
    "control-plane",
    "kubelet",
    "echo",
    "kube-proxy",
    "endpoints",
    "forward",
)
PUBLIC_LAB = ("up", "down", "exec", "kill-node", "restore-node", "scale", "demo")


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree, hidden ones too, with its command path."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


ALL = list(commands(build_parser()))


def test_the_tree_is_complete() -> None:
    names = {" ".join(path) for path, _ in ALL}
    for expected in ("controller", "speaker", "version", "migrate from-metallb"):
        assert expected in names
    for name in (*INTERNAL_LAB, *PUBLIC_LAB):
        assert f"lab {name}" in names


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[" ".join(p) or "lbd" for p, _ in ALL])
def test_every_help_has_a_description_defaults_and_an_example(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    text = parser.format_help()
    assert parser.description and len(parser.description) > 20, f"{path}: no description"
    examples = text.split("examples:\n", 1)
    assert len(examples) == 2, f"lbd {' '.join(path)} --help has no examples"
    lines = [ln.strip() for ln in examples[1].splitlines() if ln.strip()]
    runs = [ln for ln in lines if not ln.startswith("#")]
    assert runs, f"{path}: an examples section without a command"
    assert all(("lbd" in ln or "make" in ln) for ln in runs), runs
    for action in parser._actions:
        if not action.option_strings or action.help in (None, argparse.SUPPRESS):
            continue
        assert action.help.strip(), f"{path} {action.option_strings}: no help"
        worth = action.default not in (None, False, [], (), argparse.SUPPRESS)
        if worth:
            rendered = parser._get_formatter()._expand_help(action)
            assert "default" in rendered, f"{path} {action.option_strings} hides its default"


def test_internal_lab_commands_are_hidden_but_run() -> None:
    out = run("lab", "--help").stdout
    head = out.split("options:")[0].splitlines()
    listed = {ln.split()[0] for ln in head if ln.startswith("    ") and ln[4] != " "}
    listed.discard("LAB_COMMAND")
    assert listed == set(PUBLIC_LAB)
    for name in INTERNAL_LAB:
        help_run = run("lab", name, "--help")
        assert help_run.returncode == 0 and "lab internal" in help_run.stdout


def run(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "lbd", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


ROOT_ONLY = os.geteuid() != 0


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    (d / "bad.yaml").write_text("a: [\n")
    (d / "short.key").write_text("short\n")
    (d / "good.key").write_text("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0\n")
    (d / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\n"
        "users: [{name: x, user: {token: t}}]\n"
    )
    (d / "home").mkdir()
    return {p.name: p for p in d.iterdir()} | {"dir": d}


# (argv, what stderr must name, exit code, needs root); {name} is a file of the fixture
BAD = [
    (["controller", "--workers", "x"], "--workers", 2, False),
    (["controller", "--workers", "0", "--kubeconfig", "/nope"], "--workers", 2, False),
    (["controller"], "--kubeconfig", 2, False),
    (["controller", "--kubeconfig", "/nope"], "--kubeconfig /nope", 2, False),
    (["controller", "--kubeconfig", "{bad.yaml}"], "{bad.yaml}", 2, False),
    (
        ["controller", "--leader-elect", "--lease-duration", "1", "--kubeconfig", "/nope"],
        "--lease-duration",
        2,
        False,
    ),
    (
        ["controller", "--health-addr", "nonsense", "--kubeconfig", "{kubeconfig}"],
        "--health-addr",
        2,
        False,
    ),
    (["speaker"], "--node-name", 2, False),
    (["speaker", "--node-name", "n1"], "--membership-key", 2, False),
    (["speaker", "--node-name", "n1", "--membership-key", "/nope"], "/nope", 2, False),
    (
        ["speaker", "--node-name", "n1", "--membership-key", "{short.key}"],
        "--membership-key: {short.key}",
        2,
        False,
    ),
    (
        ["speaker", "--node-name", "n1", "--membership-key-grace", "nan"],
        "--membership-key-grace",
        2,
        False,
    ),
    (
        ["speaker", "--node-name", "n1", "--membership-key", "{good.key}", "--kubeconfig", "/x"],
        "--kubeconfig /x",
        2,
        False,
    ),
    (["speaker", "--heartbeat-interval", "soon"], "--heartbeat-interval", 2, False),
    (["speaker", "--node-name", "n1", "--health-addr", "bad"], "--health-addr", 2, False),
    (
        ["speaker", "--node-name", "n1", "--heartbeat-interval", "0"],
        "--heartbeat-interval",
        2,
        False,
    ),
    (["speaker", "--node-name", "n1", "--dead-after", "0.01"], "--dead-after", 2, False),
    (["migrate", "from-metallb"], "-f/--filename", 2, False),
    (["migrate", "from-metallb", "-f", "/nope.yaml"], "/nope.yaml", 1, False),
    (["migrate", "from-metallb", "-f", "{bad.yaml}"], "{bad.yaml}", 1, False),
    (["migrate", "from-metallb", "--from-cluster", "--kubeconfig", "/nope"], "/nope", 1, False),
    (["nosuch"], "invalid choice", 2, False),
    (["lab", "up", "--nodes", "0"], "--nodes", 2, False),
    (["lab", "up", "--pods-per-node", "-1"], "--pods-per-node", 2, False),
    (["lab", "demo", "--nodes", "1"], "--nodes", 2, False),
    (["lab", "scale", "-1", "--prefix", "clinone"], "PODS", 2, False),
    (["lab", "kill-node", "n1", "--pod-eviction-delay", "-1"], "--pod-eviction-delay", 2, False),
    (["lab", "exec", "--prefix", "clinone", "--", "true"], "--prefix clinone", 1, False),
    (["lab", "exec", "--dir", "{dir}/none", "--", "true"], "--dir {dir}/none", 1, False),
    (["lab", "exec", "--dir", "a", "--prefix", "b", "--", "true"], "--prefix", 2, False),
    (["lab", "kill-node", "--prefix", "clinone", "n1"], "--prefix clinone", 1, True),
    (["lab", "restore-node", "--dir", "{dir}/none", "n1"], "--dir {dir}/none", 1, True),
    (["lab", "scale", "2", "--prefix", "clinone"], "--prefix clinone", 1, True),
    (["lab", "down"], "--prefix", 1, True),
    (["lab", "apiserver", "--listen", "here"], "--listen", 2, False),
    (["lab", "apiserver", "--tls-cert", "/nope", "--tls-key", "/nope"], "--tls-cert", 2, False),
    (["lab", "echo"], "--node-name", 2, False),
]


def environment(files: dict[str, Path]) -> dict[str, str]:
    """No kubeconfig anywhere: not in a cluster, no $KUBECONFIG, an empty home."""
    env = {k: v for k, v in os.environ.items() if k not in NO_ENV}
    env["HOME"] = str(files["home"])
    return env


NO_ENV = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "NODE_NAME", "LBD_LAB_DIR")


def fill(text: str, files: dict[str, Path]) -> str:
    for k, v in files.items():
        text = text.replace("{" + k + "}", str(v))
    return text


@pytest.mark.parametrize(("argv", "names", "code", "root"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_naming_the_flag(
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    names: str,
    code: int,
    root: bool,
) -> None:
    """In-process, for speed (an exception would fail the test with its traceback); the
    subprocess test below checks the same in a real process for a few of them."""
    if root and ROOT_ONLY:
        pytest.skip("needs root (the command checks it first)")
    for key in NO_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(files["home"]))
    monkeypatch.chdir(files["dir"])
    got: int | str | None
    try:
        got = main([fill(a, files) for a in argv])
    except SystemExit as exc:
        got = exc.code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line:\n{err}"
    assert fill(names, files) in err, err
    assert got == code, (got, err)


@pytest.mark.parametrize(
    ("argv", "names", "code"),
    [
        (["controller"], "--kubeconfig", 2),
        (["speaker", "--node-name", "n1", "--membership-key", "/nope"], "--membership-key", 2),
        (["lab", "exec", "--prefix", "clinone", "--", "true"], "--prefix clinone", 1),
        (["controller", "--workers", "x"], "--workers", 2),
    ],
)
def test_as_a_process_no_traceback(
    files: dict[str, Path], argv: list[str], names: str, code: int
) -> None:
    result = run(*argv, cwd=files["dir"], env=environment(files))
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and names in result.stderr, result.stderr
    assert result.returncode == code


@pytest.mark.skipif(ROOT_ONLY, reason="lab down needs root")
def test_lab_down_by_prefix_forgets_a_lab_made_with_dir(tmp_path: Path) -> None:
    """`lab up --dir X --prefix P` then `lab down --prefix P`: X's record goes, so the next
    `lab up --dir X` does not refuse. (No namespace of the made-up prefix exists: down only
    removes the files.)"""
    from lbd.lab import commands
    from lbd.lab.cluster.supervisor import LAB_FILE

    prefix = "clidown"
    lab_dir = tmp_path / "elsewhere"
    lab_dir.mkdir()
    (lab_dir / LAB_FILE).write_text('{"prefix": "clidown"}')
    commands._record(prefix, lab_dir)  # what `lab up` does once the lab runs
    try:
        result = run("lab", "down", "--prefix", prefix, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert not (lab_dir / LAB_FILE).exists()
        assert commands._recorded(prefix) is None
    finally:
        commands._forget(prefix)

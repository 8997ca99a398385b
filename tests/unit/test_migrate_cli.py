"""``lbd migrate from-metallb`` as a person runs it: files in, YAML or files out, the report on
stderr, ``--check`` as a table; unreadable input is one line on stderr and exit 1, never a
traceback; everything else exits 0, whatever it reports."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from lbd.cli import main
from lbd.tools.migrate import from_metallb
from tests.unit.test_migrate import FIXTURES, ROOT, load


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["migrate", "from-metallb", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_stdout_is_exactly_the_converted_objects(capsys):
    code, out, err = run(capsys, "-f", str(FIXTURES / "l2.yaml"))
    assert code == 0
    assert list(yaml.safe_load_all(out)) == list(from_metallb(load("l2.yaml")).objects)
    first, *findings = err.splitlines()
    assert first == (
        "lbd migrate from-metallb: converted 2 IPAddressPools, 2 L2Advertisements; 2 findings"
    )
    assert all(line.startswith("  differs: ") for line in findings)


def test_several_files_a_directory_and_stdin(capsys, monkeypatch, tmp_path):
    (tmp_path / "a.yaml").write_text((FIXTURES / "l2.yaml").read_text())
    (tmp_path / "notes.txt").write_text("not read: not a manifest suffix")
    monkeypatch.setattr(sys, "stdin", io.StringIO((FIXTURES / "pools.yaml").read_text()))
    code, out, err = run(capsys, "-f", str(tmp_path), "-f", "-", "-f", str(FIXTURES / "bgp.yaml"))
    assert code == 0, err
    names = [o["metadata"]["name"] for o in yaml.safe_load_all(out)]
    assert "first-pool" in names and "tenants" in names and "routed" in names
    assert "not converted: BGPPeer metallb-system/router" in err


def test_output_dir_gets_one_file_per_object(capsys, tmp_path):
    out_dir = tmp_path / "lbd-config"
    code, out, err = run(capsys, "-f", str(FIXTURES / "l2-advanced.yaml"), "-o", str(out_dir))
    assert code == 0 and out == ""
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == [
        "ipaddresspool-zone-a.yaml",
        "ipaddresspool-zone-b.yaml",
        "l2advertisement-frontends.yaml",
        "l2advertisement-prefer-edge.yaml",
        "l2advertisement-zone-a-nodes.yaml",
        "l2advertisement-zone-b-eth3.yaml",
    ]
    for name in files:
        (obj,) = yaml.safe_load_all((out_dir / name).read_text())
        assert name == f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        assert f"wrote {out_dir / name}" in err


def test_check_prints_a_table_instead_of_yaml(capsys):
    code, out, _ = run(
        capsys, "-f", str(FIXTURES / "pools.yaml"), "-f", str(FIXTURES / "services.yaml"), "--check"
    )
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["SERVICE", "VERDICT", "METALLB", "LBD", "POOL", "WHY"]
    table = {r.split()[0]: r.split()[1:] for r in rows}
    assert table["team-a/web"][:4] == ["SameAddress", "198.18.30.1", "198.18.30.1", "tenants"]
    assert table["default/waiting"][:3] == ["NewAddress", "<pending>", "198.18.20.1"]


def test_check_without_services_says_so(capsys):
    code, out, err = run(capsys, "-f", str(FIXTURES / "l2.yaml"), "--check")
    assert code == 0 and out.split() == ["SERVICE", "VERDICT", "METALLB", "LBD", "POOL", "WHY"]
    assert "no LoadBalancer Service to check" in err


BAD_FILES = [
    ("missing.yaml", None, "cannot read"),
    ("broken.yaml", "kind: IPAddressPool\n  spec: [\n", "not valid YAML (line 2)"),
    ("scalar.yaml", "just words\n", "document 1: not a Kubernetes object"),
    ("nokind.yaml", "apiVersion: metallb.io/v1beta1\nmetadata: {name: x}\n", "(kind missing)"),
    ("list.yaml", "kind: List\nitems:\n  - 42\n", "document 1[0]: not a Kubernetes object"),
    ("binary.yaml", b"\xff\xfe\x00", "cannot read"),
]


@pytest.mark.parametrize(("name", "content", "words"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_unreadable_input_is_one_line_and_exit_1(capsys, tmp_path, name, content, words):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    code, out, err = run(capsys, "-f", str(FIXTURES / "l2.yaml"), "-f", str(path))
    assert code == 1
    assert out == "", "nothing is converted when part of the input is unreadable"
    assert err.count("\n") == 1 and str(path) in err and words in err, err
    assert "Traceback" not in err


def test_an_unwritable_output_dir_is_one_line_and_exit_1(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "-f", str(FIXTURES / "l2.yaml"), "-o", str(blocker / "sub"))
    assert code == 1 and "cannot write" in err and err.count("\n") == 1


def test_from_cluster_without_a_kubeconfig_is_one_line_and_exit_1(capsys, tmp_path):
    code, _, err = run(capsys, "--from-cluster", "--kubeconfig", str(tmp_path / "nope"))
    assert code == 1 and f"--kubeconfig {tmp_path / 'nope'}: no such file" in err
    assert err.count("\n") == 1


def test_a_source_is_required_and_only_one(capsys):
    for args in ([], ["-f", "x.yaml", "--from-cluster"]):
        with pytest.raises(SystemExit) as exc:
            main(["migrate", "from-metallb", *args])
        assert exc.value.code == 2
    assert "lbd migrate from-metallb" in capsys.readouterr().err


def test_help_has_examples_and_lbd_lists_migrate():
    lbd = [sys.executable, "-m", "lbd"]
    top = subprocess.run([*lbd, "--help"], capture_output=True, text=True, check=True).stdout
    assert "migrate" in top
    sub = subprocess.run(
        [*lbd, "migrate", "from-metallb", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "examples:" in sub and "--from-cluster --check" in sub


def test_findings_never_change_the_exit_code(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n"
        "metadata: {name: p, namespace: metallb-system}\nspec: {addresses: [198.18.0.0/33]}\n"
    )
    code, out, err = run(capsys, "-f", str(path))
    assert code == 0 and out == ""
    assert "invalid: IPAddressPool metallb-system/p spec.addresses[0]" in err


def _readme_samples() -> list[tuple[list[str], bool, str]]:
    """Each ``$ lbd migrate ...`` console block of the README: (argv, with stderr, output)."""
    text = (ROOT / "README.md").read_text()
    samples = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        command, _, output = block.partition("\n")
        while command.endswith("\\"):
            more, _, output = output.partition("\n")
            command = command[:-1] + more
        if command.startswith("$ lbd migrate "):
            argv = shlex.split(command[2:])
            quiet = argv[-1] == "2>/dev/null"
            samples.append((argv[1:-1] if quiet else argv[1:], not quiet, output))
    return samples


README_SAMPLES = _readme_samples()


def test_the_readme_has_samples_of_migrate_and_check():
    assert len(README_SAMPLES) >= 2
    assert any("--check" in argv for argv, _, _ in README_SAMPLES)


@pytest.mark.parametrize(("argv", "with_stderr", "output"), README_SAMPLES)
def test_readme_samples_are_the_real_output(capsys, monkeypatch, argv, with_stderr, output):
    monkeypatch.chdir(ROOT)
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert (out + err if with_stderr else out) == output

"""Every kubectl command the README and docs give, against the stand-in and kube-apiserver.

The documents are read, not copied: :func:`documented_commands` collects each ``kubectl ...`` of
``README.md``, ``deploy/README.md``, ``vagrant/README.md``, ``docs/*.md`` and the comments of
``deploy/examples/*.yaml``, and ``test_every_documented_command_is_run_here`` fails when one of
them has no step below (a new command in the docs needs a step, or a reason why it cannot run).

The steps replay an install as the docs describe it, on a fresh real control plane (etcd,
kube-apiserver, kube-controller-manager of ``make k8s``) and on a fresh stand-in, with the same
real kubectl (v1.36) against both. The real server is the reference: per step the outputs must
match as the step says (the whole output for commands that change things, the header lines and
row names for ``get``, the exit code and output for commands that fail on both). Where a command
needs something the docs assume (a Node to annotate, kube-proxy's ConfigMap), a preparation
step makes it on both servers. Beyond the docs, the forms issue 14 names: ``--sort-by`` on
events, ``create namespace`` (protobuf), ``explain``, ``-o wide``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lbd.lab.apiserver import LabApiServer
from lbd.lab.control_plane import ControlPlane
from tests.k8s.conftest import binaries_or_skip
from tests.k8s.kubectl_support import Kubectl, Result, kubectl_or_skip

ROOT = Path(__file__).resolve().parents[2]
DOCS = (
    ROOT / "README.md",
    ROOT / "deploy" / "README.md",
    ROOT / "vagrant" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
)
EXAMPLES = tuple(sorted((ROOT / "deploy" / "examples").glob("*.yaml")))

pytestmark = [pytest.mark.real_k8s, pytest.mark.slow]


# -- what the docs say ------------------------------------------------------------------------


def _normalize(command: str) -> str:
    command = " ".join(command.replace("\\ ", " ").split())
    for quote in "'\"":  # the closing quote of a command quoted as a whole (ssh -c '...')
        if command.count(quote) % 2:
            command = command.removesuffix(quote)
    command = re.sub(r" --kubeconfig \S+", "", command)
    return command.strip()


def _code_lines(text: str) -> tuple[list[str], str]:
    """Lines of code blocks (fenced or indented, continuations joined) and the prose."""
    code: list[str] = []
    prose: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            prose.append("")
            continue
        if fenced or line.startswith("    "):
            if code and code[-1].endswith("\\"):
                code[-1] = code[-1][:-1] + " " + line.strip()
            else:
                code.append(line)
            prose.append("")
        else:
            prose.append(line)
    return code, "\n".join(prose)


def documented_commands() -> dict[str, list[str]]:
    """Each documented kubectl command (normalized) and where it is written."""
    found: dict[str, list[str]] = {}
    sources: list[tuple[str, list[str]]] = []
    for path in DOCS:
        code, prose = _code_lines(path.read_text())
        spans = [s.replace("\n", " ") for s in re.findall(r"`([^`]+)`", prose)]
        sources.append((str(path.relative_to(ROOT)), code + spans))
    for path in EXAMPLES:
        comments = [ln.lstrip("# ") for ln in path.read_text().splitlines() if ln.startswith("#")]
        sources.append((str(path.relative_to(ROOT)), comments))
    for where, segments in sources:
        for segment in segments:
            for m in re.finditer(r"(?:^|[\s(])(kubectl\b[^|&#`;]*)", segment):
                found.setdefault(_normalize(m.group(1)), []).append(where)
    return found


# -- the steps --------------------------------------------------------------------------------


class Compare(enum.Enum):
    OUTPUT = "the whole output (stdout and stderr) and the exit code"
    TABLE = "the header lines and the NAME of every row"
    HEADERS = "the header lines"
    SAME_ROWS = "the header lines and the rows (no ages or addresses in them)"
    EXPLAIN = "the GROUP, KIND, VERSION, FIELD lines and each field's name and type"
    PREPARE = "nothing: prepares what a later documented command assumes"


@dataclass(frozen=True)
class Step:
    args: tuple[str, ...]
    compare: Compare
    documented: tuple[str, ...] = ()
    stdin: str | None = None
    stdin_from: int | None = None  # a step before (-1: the one before) whose stdout is the input
    edit: tuple[str, str] = ("", "")  # (old, new) applied to that stdout, as `sed` would


def k(*args: str) -> tuple[str, ...]:
    return args


KEY = "bGJkLWxhYi1rZXk="  # stands for "$(openssl rand -base64 32)"
KUBE_PROXY_CM = """
apiVersion: v1
kind: ConfigMap
metadata: {name: kube-proxy, namespace: kube-system}
data:
  config.conf: |
    mode: ipvs
    ipvs:
      strictARP: false
"""
KUBE_PROXY_DS = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: kube-proxy, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: kube-proxy}}
  template:
    metadata: {labels: {k8s-app: kube-proxy}}
    spec: {containers: [{name: kube-proxy, image: registry.k8s.io/kube-proxy:v1.36.3}]}
"""
NODE = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n"
ENDPOINT_SLICE = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-readme
  namespace: default
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: "", port: 8080, protocol: TCP}]
endpoints:
- addresses: [198.18.0.11]
  conditions: {ready: true}
  nodeName: n1
"""
EVENT = """
apiVersion: v1
kind: Event
metadata: {name: echo.readme, namespace: default}
involvedObject: {kind: Service, name: echo, namespace: default}
reason: IPAllocated
message: assigned 172.25.250.50 from pool first-pool
type: Normal
source: {component: lbd-controller}
firstTimestamp: "2026-01-01T00:00:00Z"
lastTimestamp: "2026-01-01T00:00:00Z"
count: 1
"""

STEPS: tuple[Step, ...] = (
    # deploy/README.md and README.md "Install on a cluster"
    Step(k("apply", "-k", "deploy/"), Compare.OUTPUT, ("kubectl apply -k deploy/",)),
    Step(
        k(
            "-n",
            "lbd-system",
            "create",
            "secret",
            "generic",
            "lbd-memberlist",
            f"--from-literal=key={KEY}",
        ),
        Compare.OUTPUT,
        (
            'kubectl -n lbd-system create secret generic lbd-memberlist --from-literal=key="$('
            'openssl rand -base64 32)"',
        ),
    ),
    Step(
        k("-n", "lbd-system", "create", "secret", "generic", "my-key", f"--from-literal=key={KEY}"),
        Compare.OUTPUT,
        ('kubectl create secret generic NAME --from-literal=key="$(openssl rand -base64 32)"',),
    ),
    Step(
        k("-n", "lbd-system", "get", "pods", "-w", "--request-timeout=2s"),
        Compare.OUTPUT,
        ("kubectl -n lbd-system get pods -w",),
    ),
    Step(
        k("apply", "-f", "deploy/base/namespace.yaml"),
        Compare.OUTPUT,
        ("kubectl apply -f deploy/base/namespace.yaml",),
    ),
    Step(k("apply", "-f", "crds/"), Compare.OUTPUT, ("kubectl apply -f crds/",)),
    Step(
        k("apply", "-k", "deploy/monitoring"),
        Compare.OUTPUT,
        ("kubectl apply -k deploy/monitoring",),
    ),
    Step(
        k("apply", "-f", "deploy/examples/first-pool.yaml"),
        Compare.OUTPUT,
        (
            "kubectl apply -f deploy/examples/first-pool.yaml",
            "kubectl apply -f",
        ),
    ),
    Step(
        k("apply", "-f", "deploy/examples/lab-pool.yaml"),
        Compare.OUTPUT,
        ("kubectl apply -f deploy/examples/lab-pool.yaml",),
    ),
    Step(k("get", "ipaddresspools"), Compare.SAME_ROWS, ("kubectl get ipaddresspools",)),
    Step(k("get", "ipaddresspools", "-o", "wide"), Compare.SAME_ROWS),
    Step(k("get", "l2advertisements", "-o", "wide"), Compare.SAME_ROWS),
    Step(k("get", "l2adv"), Compare.SAME_ROWS, ("kubectl get l2adv",)),  # docs/API.md
    # README.md "The network-namespace lab by hand", deploy/examples/service.yaml
    Step(
        k("apply", "-f", "deploy/examples/service.yaml"),
        Compare.OUTPUT,
        ("kubectl apply -f deploy/examples/service.yaml",),
    ),
    Step(k("get", "svc", "echo"), Compare.TABLE, ("kubectl get svc echo",)),
    Step(k("get", "svc", "echo", "-o", "wide"), Compare.TABLE),
    Step(k("delete", "-f", "deploy/examples/service.yaml"), Compare.OUTPUT),
    Step(
        k(
            "create",
            "deployment",
            "echo",
            "--image=registry.k8s.io/e2e-test-images/agnhost:2.39",
            "--",
            "/agnhost",
            "netexec",
            "--http-port=8080",
        ),
        Compare.OUTPUT,
        (
            "kubectl create deployment echo --image=registry.k8s.io/e2e-test-images/agnhost:2.39"
            " -- /agnhost netexec --http-port=8080",
        ),
    ),
    Step(
        k("expose", "deployment", "echo", "--type=LoadBalancer", "--port=80", "--target-port=8080"),
        Compare.OUTPUT,
        ("kubectl expose deployment echo --type=LoadBalancer --port=80 --target-port=8080",),
    ),
    Step(k("get", "service", "echo"), Compare.TABLE, ("kubectl get service echo",)),
    Step(k("get", "servicel2status"), Compare.OUTPUT, ("kubectl get servicel2status",)),
    Step(k("get", "servicel2status", "-A"), Compare.OUTPUT, ("kubectl get servicel2status -A",)),
    Step(k("create", "deployment", "web", "--image=nginx"), Compare.PREPARE),
    Step(
        k("expose", "deployment", "web", "--type=LoadBalancer", "--port=80"),
        Compare.OUTPUT,
        ("kubectl expose deployment web --type=LoadBalancer --port=80",),
    ),
    Step(k("get", "svc"), Compare.TABLE, ("kubectl get svc",)),
    # README.md "Why is my Service not reachable?"
    Step(k("get", "svc", "web", "-o", "yaml"), Compare.PREPARE, ("kubectl get svc web -o yaml",)),
    Step(k("get", "sl2", "-A"), Compare.OUTPUT, ("kubectl get sl2 -A",)),
    Step(k("get", "sl2", "-A", "-o", "wide"), Compare.OUTPUT, ("kubectl get sl2 -A -o wide",)),
    Step(k("-n", "lbd-system", "get", "pods"), Compare.OUTPUT, ("kubectl -n lbd-system get pods",)),
    Step(k("get", "svc,servicel2status"), Compare.TABLE, ("kubectl get svc,servicel2status",)),
    Step(k("get", "svc,ipaddresspools"), Compare.TABLE, ("kubectl get svc,ipaddresspools",)),
    Step(k("get", "deployments", "-o", "wide"), Compare.SAME_ROWS),
    Step(k("-n", "lbd-system", "get", "deploy,ds,pdb,sa,secrets"), Compare.TABLE),
    # (the stand-in has no endpointslice controller: the lab runs one of its own)
    Step(k("apply", "-f", "-"), Compare.PREPARE, stdin=ENDPOINT_SLICE),
    Step(k("get", "endpointslice", "echo-readme"), Compare.SAME_ROWS),
    # events, as the controller writes them; issue 14: --sort-by finds them
    Step(k("apply", "-f", "-"), Compare.PREPARE, stdin=EVENT),
    Step(k("get", "events"), Compare.TABLE),
    Step(
        k("get", "events", "--sort-by=.lastTimestamp"),
        Compare.TABLE,
        ("kubectl get events --sort-by=.lastTimestamp",),
    ),
    Step(k("get", "events", "-A", "--sort-by=.metadata.creationTimestamp"), Compare.TABLE),
    Step(k("get", "events", "-o", "wide"), Compare.TABLE),
    # README.md "Maintenance"
    Step(k("apply", "-f", "-"), Compare.PREPARE, stdin=NODE),
    Step(
        k("annotate", "node", "n1", "lbd.io/drain=true"),
        Compare.OUTPUT,
        ("kubectl annotate node NODE lbd.io/drain=true",),
    ),
    Step(k("get", "nodes"), Compare.TABLE),
    # deploy/README.md: kube-proxy in IPVS mode needs strictARP
    Step(k("apply", "-f", "-"), Compare.PREPARE, stdin=KUBE_PROXY_CM),
    Step(
        k("-n", "kube-system", "get", "configmap", "kube-proxy", "-o", "yaml"),
        Compare.PREPARE,
        ("kubectl -n kube-system get configmap kube-proxy -o yaml",),
    ),
    Step(
        k("apply", "-f", "-", "-n", "kube-system"),
        Compare.OUTPUT,
        ("kubectl apply -f - -n kube-system",),
        stdin_from=-1,
        edit=("strictARP: false", "strictARP: true"),
    ),
    Step(
        k("-n", "kube-system", "get", "configmap", "kube-proxy", "-o", "jsonpath={.data}"),
        Compare.OUTPUT,
    ),
    Step(k("apply", "-f", "-"), Compare.PREPARE, stdin=KUBE_PROXY_DS),
    Step(
        k("-n", "kube-system", "rollout", "restart", "daemonset", "kube-proxy"),
        Compare.OUTPUT,
        ("kubectl -n kube-system rollout restart daemonset kube-proxy",),
    ),
    # vagrant/README.md
    Step(
        k("-n", "lbd-system", "rollout", "restart", "deploy,ds"),
        Compare.OUTPUT,
        ("kubectl -n lbd-system rollout restart deploy,ds",),
    ),
    # issue 14: the forms a user types
    Step(k("create", "namespace", "team-a"), Compare.OUTPUT),
    Step(k("get", "namespace", "team-a"), Compare.TABLE),
    Step(k("-n", "default", "get", "leases"), Compare.HEADERS),
    Step(
        k("get", "nodes,pods,endpointslices", "-o", "wide"),
        Compare.HEADERS,
        ("kubectl get nodes,pods,endpointslices -o wide",),
    ),
    Step(k("get", "pods", "-o", "wide"), Compare.HEADERS, ("kubectl get pods -o wide",)),
    Step(k("explain", "ipaddresspools.spec.serviceAllocation"), Compare.OUTPUT),
    Step(k("explain", "l2advertisements", "--recursive"), Compare.OUTPUT),
    Step(k("explain", "servicel2statuses.status"), Compare.OUTPUT),
    # built-in kinds: the descriptions come from the official client (they are kube-apiserver's
    # of a neighbouring release), the fields and types must be the same
    Step(k("explain", "svc.spec"), Compare.EXPLAIN),
    Step(k("explain", "svc.spec.ports"), Compare.EXPLAIN),
    Step(k("explain", "pods.spec.containers"), Compare.EXPLAIN),
    Step(k("explain", "deployments.spec"), Compare.EXPLAIN),
    Step(k("explain", "namespaces"), Compare.EXPLAIN),
    # README.md: uninstall
    Step(k("delete", "-k", "deploy/"), Compare.OUTPUT, ("kubectl delete -k deploy/",)),
    Step(k("delete", "-f", "crds/"), Compare.OUTPUT, ("kubectl delete -f crds/",)),
    Step(
        k("delete", "namespace", "lbd-system"),
        Compare.OUTPUT,
        ("kubectl delete namespace lbd-system",),
    ),
)
NOT_COMMANDS = {
    "kubectl": "the word, in prose",
    "kubectl apply": "the word, in prose (kubectl apply -f it: first-pool.yaml, run above)",
    "kubectl explain": "the command, in prose: the explain steps above run it",
    "kubectl lbd": "the plugin's name, in prose",
    "kubectl-lbd": "the plugin's file name, in prose",
    "kubectl-NAME": "kubectl's plugin convention, in prose",
    "kubectl NAME": "kubectl's plugin convention, in prose",
}
KEY_COMMANDS = "the key rotation commands: tests/k8s/test_membership_key_commands.py runs them"
ELSEWHERE = {
    "kubectl get --raw /_lab/audit": "the stand-in's own endpoint: tests/e2e/test_e2e_rbac.py",
    # the kubectl-lbd plugin, run through the real kubectl on both servers
    "kubectl plugin list": "tests/k8s/test_operator_tools.py (finds kubectl-lbd)",
    "kubectl lbd status": "tests/k8s/test_operator_tools.py",
    "kubectl lbd doctor -o json": "tests/k8s/test_operator_tools.py",
    "kubectl lbd migrate from-metallb --from-cluster --check": "tests/k8s/test_operator_tools.py",
    "kubectl describe service -n default shop": "lbd doctor's advice, in its output sample",
    "kubectl -n lbd-system get secret lbd-memberlist -o jsonpath='{.data.key}'": KEY_COMMANDS,
    'kubectl -n lbd-system patch secret lbd-memberlist --type merge -p "{\\"data\\":'
    '{\\"key\\":\\"$(openssl rand -base64 32': KEY_COMMANDS,
    'kubectl -n lbd-system patch secret lbd-memberlist --type merge -p "{\\"data\\":'
    '{\\"key\\":\\"$(printf \'%s\\n%s\\n\' "$NEW" "$OLD"': KEY_COMMANDS,
    'kubectl -n lbd-system patch secret lbd-memberlist --type merge -p "{\\"data\\":'
    '{\\"key\\":\\"$(printf \'%s\' "$NEW"': KEY_COMMANDS,
}


# -- running ----------------------------------------------------------------------------------


@dataclass
class Run:
    """What each step printed on each server."""

    real: list[Result] = field(default_factory=list)
    stand_in: list[Result] = field(default_factory=list)


def _drive(kubectl: Kubectl) -> list[Result]:
    results: list[Result] = []
    for i, step in enumerate(STEPS):
        stdin = step.stdin
        if step.stdin_from is not None:
            source = results[i + step.stdin_from].stdout
            stdin = source.replace(*step.edit)
        results.append(kubectl.run(*step.args, stdin=stdin, cwd=ROOT, timeout=120))
    return results


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    binary = kubectl_or_skip()
    binaries = binaries_or_skip()
    work = tmp_path_factory.mktemp("kubectl-readme")
    out = Run()
    with LabApiServer(tls=True) as stand_in:
        stand_in.write_kubeconfig(work / "stand-in.kubeconfig")
        out.stand_in = _drive(Kubectl(binary, work / "stand-in.kubeconfig", work / "stand-in"))
    with ControlPlane(binaries) as plane:
        plane.write_kubeconfig(work / "real.kubeconfig")
        out.real = _drive(Kubectl(binary, work / "real.kubeconfig", work / "real"))
    yield out


# -- comparing --------------------------------------------------------------------------------

_AGE = re.compile(r"^\d+(s|m|h|d|y)(\d+(s|m|h|d))?$")


def _columns(line: str) -> list[str]:
    """The cells of a line as kubectl aligns them (two spaces or more between columns)."""
    return [c for c in re.split(r"\s{2,}", line.strip()) if c]


def _headers(text: str) -> list[list[str]]:
    """The column names of each table (tables of several kinds are separated by blank
    lines); the widths depend on the values, so only the names count."""
    lines = text.splitlines()
    return [_columns(ln) for i, ln in enumerate(lines) if ln and (i == 0 or not lines[i - 1])]


def _names(text: str) -> list[str]:
    """The first column of every row that is not a header."""
    lines = text.splitlines()
    return [ln.split()[0] for i, ln in enumerate(lines) if ln and i > 0 and lines[i - 1] != ""]


def _rows(text: str) -> list[list[str]]:
    """Every line's cells, ages taken out (they differ by design)."""
    return [[c for c in _columns(ln) if not _AGE.match(c)] for ln in text.splitlines()]


def _view(res: Result, compare: Compare) -> object:
    both = res.stdout + res.stderr
    if compare is Compare.OUTPUT:
        return (res.code, both)
    if compare is Compare.TABLE:
        return (res.code, _headers(res.stdout), _names(res.stdout), res.stderr)
    if compare is Compare.HEADERS:
        return (res.code, _headers(res.stdout))
    if compare is Compare.SAME_ROWS:
        return (res.code, _rows(res.stdout), res.stderr)
    if compare is Compare.EXPLAIN:
        lines = res.stdout.splitlines()
        heads = [ln for ln in lines if re.match(r"(GROUP|KIND|VERSION|FIELD):", ln)]
        fields = [ln.split()[:2] for ln in lines if re.match(r"  [a-zA-Z]\S*\t<", ln)]
        return (res.code, heads, fields)
    return res.code


@pytest.mark.parametrize("index", range(len(STEPS)), ids=[" ".join(s.args)[:60] for s in STEPS])
def test_kubectl_prints_what_kube_apiserver_makes_it_print(run: Run, index: int) -> None:
    step = STEPS[index]
    real, stand_in = run.real[index], run.stand_in[index]
    if step.compare is Compare.PREPARE:
        assert (real.code, stand_in.code) == (0, 0), (real, stand_in)
        return
    assert _view(stand_in, step.compare) == _view(real, step.compare), (
        f"kubectl {' '.join(step.args)}: compared {step.compare.value}\n"
        f"--- kube-apiserver (exit {real.code}):\n{real.stdout}{real.stderr}"
        f"--- stand-in (exit {stand_in.code}):\n{stand_in.stdout}{stand_in.stderr}"
    )


def test_every_documented_command_is_run_here() -> None:
    covered = {d for s in STEPS for d in s.documented} | set(NOT_COMMANDS) | set(ELSEWHERE)
    missing = {cmd: where for cmd, where in documented_commands().items() if cmd not in covered}
    assert not missing, f"documented kubectl commands without a step in {__file__}: {missing}"
    assert documented_commands(), "no kubectl command found in the docs: the reader is broken"

"""``lbd lab apiserver`` as a process, driven by the real kubectl (``make k8s`` builds it).

kubectl never sends a bearer token over plain HTTP (kubernetes/kubectl#744), so the RBAC-faithful
setup is ``--tls`` (self-signed, CA in the kubeconfig); ``--anonymous-admin`` is the plain-HTTP
convenience for labs. The same commands against kube-apiserver: ``test_kubectl_readme.py``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.k8s.kubectl_support import Kubectl, kubectl_or_skip

REPO = Path(__file__).resolve().parents[2]

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.lbd.io}
spec:
  group: example.lbd.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
"""

MANIFEST = """
apiVersion: example.lbd.io/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  ports: [{port: 80, name: http}]
"""


class Proc:
    def __init__(self, args: list[str], workdir: Path) -> None:
        self.binary = kubectl_or_skip()
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.log = workdir / "apiserver.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lbd",
                    "lab",
                    "apiserver",
                    "--listen",
                    "127.0.0.1:0",
                    "--kubeconfig-out",
                    str(self.kubeconfig),
                    *args,
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=REPO,
            )
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(self.proc.stdout.readline() if self.proc.stdout else "")
        )
        reader.start()
        reader.join(30)
        if line != ["ready\n"]:
            self.stop()
            raise AssertionError(f"no ready line: {line!r}, stderr: {self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def kubectl(self, *args: str, check: bool = True, config: Path | None = None) -> str:
        runner = Kubectl(self.binary, config or self.kubeconfig, self.workdir / "home")
        if check:
            return runner(*args)
        res = runner.run(*args)
        return res.stdout + res.stderr


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Proc]:
    proc = Proc(["--tls", "--token", "dev=alice,devs"], tmp_path)
    try:
        yield proc
    finally:
        proc.stop()


def test_kubectl_apply_get_delete(tls_server: Proc, tmp_path: Path) -> None:
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "widget.yaml").write_text(WIDGET_CRD)
    assert "created" in tls_server.kubectl("apply", "-f", str(tmp_path / "crds"))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MANIFEST)
    out = tls_server.kubectl("apply", "-f", str(manifest))
    assert "widget.example.lbd.io/w1 created" in out and "service/web created" in out
    assert "unchanged" in tls_server.kubectl("apply", "-f", str(manifest))
    manifest.write_text(MANIFEST.replace("size: 3", "size: 4").replace("port: 80", "port: 81"))
    assert "configured" in tls_server.kubectl("apply", "-f", str(manifest))
    assert tls_server.kubectl("get", "wd", "w1", "-o", "jsonpath={.spec.size}") == "4"
    ports = tls_server.kubectl("get", "svc", "web", "-o", "jsonpath={.spec.ports[*].port}")
    assert ports == "81"
    table = tls_server.kubectl("get", "svc")
    assert "web" in table and "LoadBalancer" in table and "<pending>" in table
    bad = tmp_path / "bad.yaml"
    bad.write_text(MANIFEST.split("---", maxsplit=1)[0].replace("size: 3", "size: 0"))
    assert "spec.size" in tls_server.kubectl("apply", "-f", str(bad), check=False)
    tls_server.kubectl("delete", "-f", str(manifest))
    left = tls_server.kubectl("get", "svc,widgets", "-o", "name")
    assert left.split() == ["service/kubernetes"]  # the API server's own, as on any cluster


def test_kubectl_with_a_token_is_subject_to_rbac(tls_server: Proc, tmp_path: Path) -> None:
    config = yaml.safe_load(tls_server.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "dev"
    dev = tmp_path / "dev-kubeconfig"
    dev.write_text(yaml.safe_dump(config))
    out = tls_server.kubectl("get", "nodes", check=False, config=dev)
    assert 'User "alice" cannot list resource "nodes" in API group "" at the cluster scope' in out


def test_kubectl_applies_the_project_crds(tls_server: Proc) -> None:
    crds = REPO / "crds"
    if not any(crds.glob("*.yaml")):
        pytest.skip("crds/ has no CRDs yet")
    tls_server.kubectl("apply", "-f", str(crds))
    out = tls_server.kubectl("get", "crds", "-o", "name")
    assert "customresourcedefinition.apiextensions.k8s.io/ipaddresspools.lbd.io" in out
    pool = REPO / "deploy" / "examples" / "lab-pool.yaml"
    if pool.is_file():
        tls_server.kubectl("apply", "-f", str(pool))
        assert tls_server.kubectl("get", "ipaddresspools", "-o", "name")


def test_plain_http_with_anonymous_admin(tmp_path: Path) -> None:
    proc = Proc(["--anonymous-admin"], tmp_path)
    try:
        assert "No resources found" in proc.kubectl("get", "configmaps")
        assert "kube-system" in proc.kubectl("get", "namespaces")
    finally:
        proc.stop()


def test_kubectl_applies_the_deploy_manifests(tls_server: Proc) -> None:
    deploy = REPO / "deploy"
    if not (deploy / "kustomization.yaml").is_file():
        pytest.skip("deploy/kustomization.yaml not written yet")
    out = tls_server.kubectl("apply", "-k", str(deploy))
    assert "clusterrolebinding.rbac.authorization.k8s.io/lbd:controller created" in out
    again = tls_server.kubectl("apply", "-k", str(deploy))
    assert "created" not in again
    assert "lbd-controller" in tls_server.kubectl("get", "sa", "-n", "lbd-system")

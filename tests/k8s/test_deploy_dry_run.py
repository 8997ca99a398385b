"""Every manifest lbd ships, validated by the real kube-apiserver (issue 15 pt 6).

The real ``helm template`` (``make helm``) renders the chart with each value set of
tests/unit/test_deploy.py, ``kubectl kustomize`` renders the kustomize base, and the real
``kubectl apply --dry-run=server --validate=strict`` sends every object to the session's real
kube-apiserver: defaulting, schema validation (unknown fields refused, as ``--validate=strict``
asks the server for field validation ``Strict``), admission (lbd's own ValidatingAdmissionPolicies
included) all run, nothing is stored. It runs as the cluster admin, who installs lbd (the deploy
RBAC is what lbd's ServiceAccounts get; tests/k8s/test_rbac.py proves it with the audit log).

The monitoring kinds (ServiceMonitor, PrometheusRule) need the Prometheus operator's CRDs, which
this cluster does not have; they are left out here and checked by promtool and kubernetes-validate
elsewhere. A test with a wrong field shows the dry run refuses what it must.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.controller_support import ROOT
from tests.k8s.kubectl_support import Kubectl, kubectl_or_skip
from tests.unit.test_deploy import (
    CHART,
    HELM_VALUE_SETS,
    MONITORING_KINDS,
    NS,
    run_helm,
)

pytestmark = pytest.mark.real_k8s


@pytest.fixture
def admin_kubectl(real_api, tmp_path) -> Kubectl:
    binary = kubectl_or_skip()
    return Kubectl(binary, real_api.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path / "home")


def _objects(text: str) -> list[dict[str, Any]]:
    return [
        d
        for d in yaml.safe_load_all(text)
        if isinstance(d, dict) and d.get("kind") not in MONITORING_KINDS
    ]


def dry_run(kubectl: Kubectl, objects: list[dict[str, Any]], tmp: Path) -> tuple[int, str, str]:
    manifest = tmp / "manifest.yaml"
    manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    res = kubectl.run(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "--server-side",
        "--force-conflicts",
        "--field-manager=lbd-dry-run",
        "-f",
        str(manifest),
        "-o",
        "name",
    )
    return res.code, res.stdout, res.stderr


def names(objects: list[dict[str, Any]]) -> set[str]:
    """``kubectl -o name`` of each object: ``deployment.apps/lbd-controller``."""
    out = set()
    for o in objects:
        group = o["apiVersion"].split("/")[0] if "/" in o["apiVersion"] else ""
        kind = o["kind"].lower()
        out.add(
            f"{kind}.{group}/{o['metadata']['name']}"
            if group
            else f"{kind}/{o['metadata']['name']}"
        )
    return out


@pytest.mark.parametrize("values", HELM_VALUE_SETS.values(), ids=HELM_VALUE_SETS.keys())
def test_helm_rendering_passes_a_server_side_dry_run(values, admin_kubectl, tmp_path):
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    out = run_helm(
        "template",
        "lbd",
        str(CHART),
        "-n",
        NS,
        "--include-crds",
        "-f",
        str(values_file),
        tmp=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    objects = _objects(out.stdout)
    assert {"CustomResourceDefinition", "Deployment", "DaemonSet"} <= {o["kind"] for o in objects}
    code, stdout, stderr = dry_run(admin_kubectl, objects, tmp_path)
    assert code == 0, stderr
    assert set(stdout.split()) == names(objects)


def test_kustomize_base_passes_a_server_side_dry_run(admin_kubectl, tmp_path):
    rendered = admin_kubectl.run("kustomize", str(ROOT / "deploy"))
    assert rendered.code == 0, rendered.stderr
    objects = _objects(rendered.stdout)
    assert {"Namespace", "Deployment", "DaemonSet", "ClusterRole"} <= {o["kind"] for o in objects}
    code, stdout, stderr = dry_run(admin_kubectl, objects, tmp_path)
    assert code == 0, stderr
    assert set(stdout.split()) == names(objects)
    # a dry run stores nothing
    res = admin_kubectl.run("get", "deployment", "-n", NS, "lbd-controller")
    assert res.code != 0 and "NotFound" in res.stderr


def test_the_dry_run_refuses_a_wrong_field(admin_kubectl, tmp_path):
    rendered = admin_kubectl.run("kustomize", str(ROOT / "deploy"))
    objects = _objects(rendered.stdout)
    broken = copy.deepcopy(next(o for o in objects if o["kind"] == "DaemonSet"))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    code, _, stderr = dry_run(admin_kubectl, [broken], tmp_path)
    assert code != 0
    assert 'containers[name="speaker"].imagePullPolicyy: field not declared in schema' in stderr
    wrong_type = copy.deepcopy(next(o for o in objects if o["kind"] == "Deployment"))
    wrong_type["spec"]["replicas"] = "two"
    code, _, stderr = dry_run(admin_kubectl, [wrong_type], tmp_path)
    assert code != 0 and "replicas" in stderr

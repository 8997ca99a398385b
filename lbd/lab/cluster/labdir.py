"""What a lab keeps in its directory: where each file is, how it is written, and removing
exactly those files again.

``up`` writes credentials (kubeconfigs, the membership key, mode 0600), the manifests the API
server loads, the kube-proxy configurations, ``plan.json`` and ``lab.json``; the real control
plane keeps its certificates, etcd's data and its logs under ``control-plane/``. ``down`` removes
what is listed here and nothing else, so a ``--dir`` that holds other files keeps them, and the
directory itself only when it is left empty.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lbd.lab.apiserver.tls import TlsFiles, make_self_signed
from lbd.lab.cluster import realplane, supervisor
from lbd.lab.cluster.layout import API_IPV4

SYSTEM_NAMESPACE = "lbd-system"
DEFAULT_PARENT = ".lab"  # the default lab directory is ./.lab/<prefix>


@dataclass(frozen=True)
class LabFiles:
    """Where a lab keeps what its processes read."""

    dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    def component_kubeconfig(self, who: str) -> Path:
        return self.dir / f"{who}.kubeconfig"

    @property
    def membership_key(self) -> Path:
        return self.dir / "membership.key"

    @property
    def manifests(self) -> Path:
        return self.dir / "manifests"

    @property
    def tls(self) -> Path:
        return self.dir / "tls"

    def kube_proxy_config(self, node: str) -> Path:
        return self.dir / "kube-proxy" / f"{node}.yaml"


def kubeconfig(server: str, token: str, user: str, ca_pem: bytes | None = None) -> str:
    cluster: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lab", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}],
            "current-context": "lab",
        }
    )


def stand_in_manifests(out: Path, crds: Path) -> None:
    """What the API stand-in loads at start: the system namespace first, then the CRDs.

    The namespace must exist before the server loads the RBAC of ``deploy/`` (its Role and
    RoleBinding live in ``lbd-system``), as it would on a cluster where ``deploy/`` is applied.
    """
    out.mkdir(parents=True, exist_ok=True)
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        for name in ("default", SYSTEM_NAMESPACE)
    ]
    (out / "00-namespaces.yaml").write_text(yaml.safe_dump_all(namespaces))
    for i, path in enumerate(sorted(crds.glob("*.yaml")), start=10):
        (out / f"{i:02d}-{path.name}").write_text(path.read_text())


KUBE_PROXY_SA = ("kube-system", "kube-proxy")


def kube_proxy_rbac(out: Path) -> Path:
    """kube-proxy's ServiceAccount bound to the built-in ``system:node-proxier`` role, as
    kubeadm sets it up."""
    namespace, name = KUBE_PROXY_SA
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "lbd-lab:node-proxier"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:node-proxier",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "kube-proxy-rbac.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def api_tls(out: Path) -> TlsFiles:
    """The stand-in API server's self-signed certificate: valid for its lab address and for
    127.0.0.1 (the host forwarder passes bytes through), so one CA serves the kubeconfigs inside
    the lab and on the host."""
    made = make_self_signed(API_IPV4)
    out.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(out, out / "tls.crt", out / "tls.key")
    files.cert.write_bytes(made.cert.read_bytes())
    write_private(files.key, made.key.read_text())
    shutil.rmtree(made.directory, ignore_errors=True)
    return files


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def membership_key(files: LabFiles) -> str:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    write_private(files.membership_key, key + "\n")
    return key


# What `up` writes into the lab directory (and `down` removes): nothing else is touched, so a
# --dir that holds other files keeps them.
LAB_FILES = (
    supervisor.LAB_FILE,
    "lab.tmp",
    supervisor.PLAN_FILE,
    "kubeconfig",
    "kubeconfig-host",
    "controller.kubeconfig",
    "speaker.kubeconfig",
    "kube-proxy.kubeconfig",
    "membership.key",
)
LAB_DIRS = ("manifests", "tls", "kube-proxy", realplane.WORKDIR)


def remove(lab_dir: Path, *, keep_logs: bool) -> None:
    for name in LAB_FILES:
        with contextlib.suppress(FileNotFoundError):
            (lab_dir / name).unlink()
    for name in (*LAB_DIRS, *(() if keep_logs else ("logs",))):
        shutil.rmtree(lab_dir / name, ignore_errors=True)
    with contextlib.suppress(OSError):
        lab_dir.rmdir()  # only if nothing else is in it
        if lab_dir.parent.name == DEFAULT_PARENT:
            lab_dir.parent.rmdir()  # .lab/ of the default --dir, when no other lab is in it


def keep_control_plane_logs(lab_dir: Path) -> None:
    """Move the control plane's logs (symlinked from ``logs/``) into ``logs/``."""
    source = lab_dir / realplane.WORKDIR / "logs"
    if not source.is_dir():
        return
    for log_file in source.iterdir():
        target = lab_dir / "logs" / log_file.name
        with contextlib.suppress(OSError):
            target.unlink(missing_ok=True)
            shutil.move(str(log_file), target)

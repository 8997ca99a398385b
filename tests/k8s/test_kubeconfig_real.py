"""lbd's own kubeconfig reader (lbd/k8s/kubeconfig.py) against the real kube-apiserver: a token,
a client certificate, a CA that is not the server's, and ``lbd status`` without the official
client imported."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lbd.k8s.client import ApiUnavailableError, load_kube
from lbd.lab.control_plane import ControlPlane
from lbd.lab.control_plane.certs import Pki

ROOT = Path(__file__).resolve().parents[2]


def test_a_token_kubeconfig_lists_without_the_official_client(
    real_plane: ControlPlane, tmp_path: Path
):
    kube = load_kube(str(real_plane.write_kubeconfig(tmp_path / "kc")))
    try:
        assert kube.transport.closer is None  # lbd's reader, not kubernetes.config
        assert kube.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"
    finally:
        kube.close()


def test_a_client_certificate_kubeconfig_authenticates_as_its_user(
    real_plane: ControlPlane, tmp_path: Path
):
    assert real_plane.pki is not None
    cert = real_plane.pki.issue("kubeconfig-test", "kubeconfig-test", ["system:masters"])
    kube = load_kube(str(real_plane.write_kubeconfig(tmp_path / "kc", cert=cert)))
    try:
        assert kube.transport.closer is None
        review = kube.create(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        assert review["status"]["userInfo"]["username"] == "kubeconfig-test"
    finally:
        kube.close()


def test_a_server_the_ca_does_not_vouch_for_is_refused(real_plane: ControlPlane, tmp_path: Path):
    other = Pki(tmp_path / "other", ["127.0.0.1"])
    path = real_plane.write_kubeconfig(tmp_path / "kc")
    text = path.read_text()
    ours = base64.b64encode(real_plane.ca_cert.read_bytes()).decode()
    path.write_text(text.replace(ours, base64.b64encode(other.ca.cert.read_bytes()).decode()))
    kube = load_kube(str(path))
    try:
        assert kube.transport.closer is None
        with pytest.raises(ApiUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
            kube.get("/api/v1/namespaces/default")
    finally:
        kube.close()


def test_lbd_status_does_not_import_the_official_client(real_plane: ControlPlane, tmp_path: Path):
    kubeconfig = real_plane.write_kubeconfig(tmp_path / "kc")
    res = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "lbd",
            "status",
            "--kubeconfig",
            str(kubeconfig),
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=60,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("POOLS (0 Services waiting for an address)\n")
    imported = [line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines()]
    assert "kubernetes" not in imported
    assert "lbd.k8s.kubeconfig" in imported

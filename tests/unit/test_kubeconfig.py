"""Which kubeconfigs lbd reads itself (static credentials) and which go to the official loader.

A kubeconfig read here must give the same server and credentials the official loader gives;
anything this reader does not fully understand must go to the official loader (None), so that
the user gets exactly the behaviour and the error messages of before.
"""

from __future__ import annotations

import base64
import glob
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from lbd.k8s.client import KubeconfigError, load_kube
from lbd.k8s.kubeconfig import static_transport
from lbd.lab.control_plane.certs import Pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"), ["127.0.0.1"])


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write(folder: Path, cluster: dict[str, Any], user: dict[str, Any], **top: Any) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "n"}}],
        "current-context": "x",
        **top,
    }
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_token_and_ca_data_are_read_without_the_official_client(tmp_path: Path, pki: Pki):
    cluster = {"server": "https://127.0.0.1:6443/", "certificate-authority-data": b64(pki.ca.cert)}
    transport = static_transport(write(tmp_path, cluster, {"token": "s3cret"}), pool_size=4)
    assert transport is not None
    assert transport.host == "https://127.0.0.1:6443"
    assert dict(transport.auth_headers()) == {"authorization": "Bearer s3cret"}
    assert transport.closer is None  # no official ApiClient behind it
    context = transport.pool.connection_pool_kw["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "lbd-test-ca"),),)]
    transport.close()


def test_extensions_are_no_reason_to_go_elsewhere(tmp_path: Path, pki: Pki):
    # as minikube writes them: informational, nothing a connection uses
    extensions = [{"name": "cluster_info", "extension": {"provider": "minikube.sigs.k8s.io"}}]
    cluster = {
        "server": "https://127.0.0.1:6443",
        "certificate-authority-data": b64(pki.ca.cert),
        "extensions": extensions,
    }
    user = {"token": "t", "extensions": extensions}
    assert static_transport(write(tmp_path, cluster, user), pool_size=4) is not None


def test_certificate_files_are_found_relative_to_the_kubeconfig(tmp_path: Path, pki: Pki):
    client = pki.issue("alice", "alice", ["dev"])
    (tmp_path / "certs").mkdir()
    for src, name in ((pki.ca.cert, "ca.crt"), (client.cert, "a.crt"), (client.key, "a.key")):
        (tmp_path / "certs" / name).write_bytes(src.read_bytes())
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority": "certs/ca.crt"}
    user = {"client-certificate": "certs/a.crt", "client-key": "certs/a.key"}
    elsewhere = os.getcwd()
    transport = static_transport(write(tmp_path, cluster, user), pool_size=4)
    assert os.getcwd() == elsewhere
    assert transport is not None
    assert dict(transport.auth_headers()) == {}  # the certificate is the credential


def test_certificate_data_leaves_no_file_behind(tmp_path: Path, pki: Pki):
    client = pki.issue("bob", "bob")
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(pki.ca.cert)}
    user = {"client-certificate-data": b64(client.cert), "client-key-data": b64(client.key)}
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "lbd-kubeconfig-*")))
    assert static_transport(write(tmp_path, cluster, user), pool_size=4) is not None
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "lbd-kubeconfig-*"))) == before


OFFICIAL_ONLY: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "exec plugin": ({}, {"exec": {"apiVersion": "client.authentication.k8s.io/v1"}}),
    "auth provider": ({}, {"auth-provider": {"name": "oidc"}}),
    "basic auth": ({}, {"username": "a", "password": "b"}),
    "token file": ({}, {"tokenFile": "/var/run/token"}),
    "impersonation": ({}, {"token": "t", "as": "someone"}),
    "proxy-url": ({"proxy-url": "http://proxy:3128"}, {"token": "t"}),
    "tls-server-name": ({"tls-server-name": "kubernetes"}, {"token": "t"}),
    "insecure": ({"insecure-skip-tls-verify": True}, {"token": "t"}),
    "no CA (system CAs)": ({"certificate-authority-data": None}, {"token": "t"}),
    "plain http": ({"server": "http://127.0.0.1:8080"}, {"token": "t"}),
    "a certificate without its key": ({}, {"client-certificate-data": "AAAA"}),
    "a CA that is not base64": ({"certificate-authority-data": "%%%"}, {"token": "t"}),
    "a missing CA file": (
        {"certificate-authority-data": None, "certificate-authority": "nope.crt"},
        {"token": "t"},
    ),
}


@pytest.mark.parametrize("case", sorted(OFFICIAL_ONLY))
def test_anything_else_goes_to_the_official_loader(tmp_path: Path, pki: Pki, case: str):
    cluster_extra, user = OFFICIAL_ONLY[case]
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(pki.ca.cert)}
    cluster.update(cluster_extra)
    cluster = {k: v for k, v in cluster.items() if v is not None}
    assert static_transport(write(tmp_path, cluster, user), pool_size=4) is None


def test_a_proxy_in_the_environment_goes_to_the_official_loader(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
):
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(pki.ca.cert)}
    path = write(tmp_path, cluster, {"token": "t"})
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert static_transport(path, pool_size=4) is None


@pytest.mark.parametrize(
    "text",
    [
        "{not yaml",
        "[]",
        "clusters: []\ncurrent-context: x\n",
        yaml.safe_dump({"current-context": "x", "contexts": [{"name": "y", "context": {}}]}),
    ],
    ids=["broken yaml", "a list", "no context", "no current context"],
)
def test_a_broken_file_gets_the_official_loaders_message(tmp_path: Path, text: str):
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    assert static_transport(str(path), pool_size=4) is None
    with pytest.raises(KubeconfigError) as err:
        load_kube(str(path))
    assert str(err.value).startswith(f"--kubeconfig {path}: ")
    assert "\n" not in str(err.value)

"""``lbd migrate from-metallb --from-cluster`` against the lab API server: MetalLB's CRDs and
objects are created there, the command lists them through the official client's auth and prints
what the file-based conversion prints; ``--check`` reads the Services' status and annotations
MetalLB wrote."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from lbd.cli import main
from lbd.k8s.client import SERVICES, Kube
from lbd.lab.apiserver import LabApiServer
from lbd.tools.migrate import from_metallb
from tests.k8s.controller_support import kube_for
from tests.unit.test_migrate import load


def metallb_crd(plural: str, kind: str, versions: tuple[str, ...]) -> dict[str, Any]:
    """A stand-in for one of MetalLB's CRDs: its names and versions, any spec accepted."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.metallb.io"},
        "spec": {
            "group": "metallb.io",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": v,
                    "served": True,
                    "storage": v == versions[0],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
                for v in versions
            ],
        },
    }


# BFDProfile is left out on purpose: a MetalLB without that kind must only be mentioned.
# BGPPeer is served as v1beta1 only, as by an older MetalLB: the reader falls back to it.
CRDS = [
    metallb_crd("ipaddresspools", "IPAddressPool", ("v1beta1",)),
    metallb_crd("l2advertisements", "L2Advertisement", ("v1beta1",)),
    metallb_crd("bgpadvertisements", "BGPAdvertisement", ("v1beta1",)),
    metallb_crd("bgppeers", "BGPPeer", ("v1beta1",)),
    metallb_crd("communities", "Community", ("v1beta1",)),
]


@pytest.fixture
def cluster(tmp_path) -> Iterator[tuple[LabApiServer, Kube, str]]:
    server = LabApiServer(bookmark_interval=0.2)
    server.start()
    kube = kube_for(server)
    try:
        for crd in CRDS:
            server.apply_object(crd)
        kubeconfig = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
        yield server, kube, kubeconfig
    finally:
        kube.close()
        server.stop()


def _metallb_objects() -> list[dict[str, Any]]:
    objects = load("pools.yaml") + load("bgp.yaml")
    for obj in objects:
        if obj["kind"] == "BGPPeer":
            obj["apiVersion"] = "metallb.io/v1beta1"
    # without pools.yaml's announce-everything L2Advertisement, BGP-only pools show as such
    return [
        o for o in objects if o["kind"] != "BFDProfile" and o["metadata"]["name"] != "all-pools"
    ]


def _create_services(server: LabApiServer, kube: Kube) -> None:
    """The fixture's Services, with the status MetalLB wrote (through the status subresource)."""
    for obj in load("services.yaml"):
        if obj["kind"] != "Service":
            server.apply_object(obj)
            continue
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        body = copy.deepcopy(obj)
        status = body.pop("status", None)
        body["metadata"].pop("creationTimestamp", None)
        created = kube.create(SERVICES.path(namespace=ns), body)
        if status:
            created["status"] = status
            kube.replace(SERVICES.path(namespace=ns, name=name, subresource="status"), created)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["migrate", "from-metallb", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_from_cluster_prints_what_the_files_convert_to(cluster, capsys):
    server, _, kubeconfig = cluster
    objects = _metallb_objects()
    for obj in objects:
        server.apply_object(obj)
    code, out, err = run(capsys, "--from-cluster", "--kubeconfig", kubeconfig)
    assert code == 0, err
    assert list(yaml.safe_load_all(out)) == list(from_metallb(objects).objects)
    assert "the cluster serves no metallb.io BFDProfile" in err
    assert "not converted: BGPPeer metallb-system/router" in err
    assert "not announced: IPAddressPool metallb-system/routed" in err


def test_from_cluster_namespace_ignores_the_other_namespaces(cluster, capsys):
    server, _, kubeconfig = cluster
    for obj in _metallb_objects():
        server.apply_object(obj)
    stray = copy.deepcopy(load("l2.yaml")[0])
    stray["metadata"]["namespace"] = "elsewhere"
    server.apply_object(stray)
    code, out, err = run(capsys, "--from-cluster", "--kubeconfig", kubeconfig)
    assert code == 0 and "first-pool" in out
    code, out, err = run(
        capsys, "--from-cluster", "--kubeconfig", kubeconfig, "--namespace", "metallb-system"
    )
    assert code == 0 and "first-pool" not in out
    assert "ignored" not in err, "objects elsewhere are not even listed"


def test_from_cluster_check_reads_metallbs_status_and_annotations(cluster, capsys):
    server, kube, kubeconfig = cluster
    for obj in load("pools.yaml"):
        server.apply_object(obj)
    _create_services(server, kube)
    code, out, err = run(capsys, "--from-cluster", "--kubeconfig", kubeconfig, "--check")
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1:4] for line in out.splitlines()[1:]}
    # the API server stamps creation times itself: who of the two new claimants is older (and
    # gets the first free address) is not fixed here
    waiting, legacy = rows.pop("default/waiting"), rows.pop("default/legacy")
    assert waiting[:2] == ["NewAddress", "<pending>"]
    assert legacy[:2] == ["WouldChange", "198.18.99.5"]
    assert {waiting[2], legacy[2]} == {"198.18.20.1", "198.18.20.2"}
    assert rows == {
        "default/dns-tcp": ["SameAddress", "198.18.20.0", "198.18.20.0"],
        "default/dns-udp": ["SameAddress", "198.18.20.0", "198.18.20.0"],
        "default/pinned": ["SameAddress", "198.19.25.65", "198.19.25.65"],
        "team-a/web": ["SameAddress", "198.18.30.1", "198.18.30.1"],
    }


def test_without_metallbs_crds_the_cluster_has_nothing_to_convert(capsys, tmp_path):
    server = LabApiServer()
    server.start()
    try:
        kubeconfig = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
        code, out, err = run(capsys, "--from-cluster", "--kubeconfig", kubeconfig)
    finally:
        server.stop()
    assert code == 0 and out == ""
    assert "the cluster serves no metallb.io IPAddressPool" in err
    assert "converted nothing" in err


def test_an_unreachable_api_server_is_one_line_and_exit_1(capsys, tmp_path):
    server = LabApiServer()
    server.start()
    kubeconfig = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
    server.stop()
    code, _, err = run(capsys, "--from-cluster", "--kubeconfig", kubeconfig)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err

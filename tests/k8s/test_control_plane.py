"""The real control plane harness itself (lbd/lab/control_plane): start, versions, tokens, clean
stop, and a control plane bound to a lab address inside a network namespace (the lab of
``docs/LAB.md`` section 1b runs it so)."""

from __future__ import annotations

import functools
import importlib
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lbd.k8s.client import ApiError
from lbd.lab.control_plane import ControlPlane
from tests.k8s.conftest import binaries_or_skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_start_versions_tokens_and_a_clean_stop():
    plane = ControlPlane(binaries_or_skip())
    plane.start()
    try:
        print(f"control plane ready in {plane.startup_seconds:.1f} s")
        pids = plane.pids
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
        version = plane.admin.get("/version")
        assert version["gitVersion"].startswith("v1.")
        assert version["major"] == "1" and version["minor"] == version["gitVersion"].split(".")[1]
        # A ServiceAccount token from TokenRequest authenticates as that ServiceAccount, and RBAC
        # (nothing granted) refuses it.
        token = plane.service_account_token("ns1", "robot")
        robot = plane.kube(token)
        review = robot.create(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        assert review["status"]["userInfo"]["username"] == "system:serviceaccount:ns1:robot"
        with pytest.raises(ApiError) as err:
            robot.get("/api/v1/namespaces/ns1/secrets")
        assert err.value.status == 403
        robot.close()
        workdir = plane.workdir
    finally:
        plane.stop()
    assert not any(_alive(pid) for pid in pids.values()), "a process outlived stop()"
    assert not workdir.exists(), "the run's folder outlived stop()"


def _call_in_netns() -> Callable[[str, Callable[[], Any]], Any]:
    """The lab's ``call_in_netns`` (where the lab keeps it)."""
    for module in ("lbd.lab.cluster.netns", "lbd.lab.netns"):
        try:
            found: Callable[[str, Callable[[], Any]], Any] = importlib.import_module(
                module
            ).call_in_netns
        except (ImportError, AttributeError):
            continue
        return found
    pytest.skip("the lab's network-namespace helper is not there")


@pytest.fixture
def netns() -> Iterator[str]:
    name = "k8s-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", "198.18.0.1/32", "dev", "lo"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.needs_root
def test_bound_to_a_lab_address_inside_a_network_namespace(netns: str):
    call_in_netns = _call_in_netns()
    plane = ControlPlane(
        binaries_or_skip(),
        host="198.18.0.1",
        netns=netns,
        enter_netns=functools.partial(call_in_netns, netns),
    )
    plane.start()
    try:
        assert plane.url == "https://198.18.0.1:6443"
        # (Never tried from the root namespace: nothing may go to 198.18.0.0/15 out there.)
        token = plane.service_account_token("lbd-system", "lbd-controller")
        kube = plane.kube(token)
        got = plane.call(lambda: kube.get("/version"))
        assert got["gitVersion"] == plane.version["gitVersion"]
        kube.close()
        pids = plane.pids
    finally:
        plane.stop()
    assert not any(_alive(pid) for pid in pids.values())

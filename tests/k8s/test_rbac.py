"""Least privilege, enforced and proven by the real API server (docs/SECURITY.md).

On the session's real control plane (``deploy/base`` RBAC and admission policies applied,
kube-apiserver auditing every request of lbd's ServiceAccounts):

1. **The admission policies** (``deploy/base/admission.yaml``): a speaker token bound to node
   n1 (TokenRequest bound to a Pod on n1, as the kubelet mounts it) may create, change and
   delete n1's ServiceL2Status and is refused, with the policy's message, on n2's; the
   controller may change a Service's ``lbd.io/`` annotations and nothing else of it.
2. **Every verb granted is a verb used.** Each component runs through a scenario that drives
   every Kubernetes call its code makes, under its own ServiceAccount token: the speaker's
   Kubernetes side in-process (the classes ``lbd speaker`` runs: SpeakerCache, StatusWriter,
   EventRecorder), the controller as the ``lbd controller`` program with leader election. Then
   the audit log (what the real authorizer decided on each request) must show:

   (a) nothing refused: the roles grant every call the code makes;
   (b) every grant (one verb on one resource in one rule) allowed at least one of those calls:
       a grant no call uses is a verb the code does not use, and the test names it for removal;
   (c) no call allowed by two grants: so removing any single grant refuses a call the scenario
       makes, and (a) fails. (b) and (c) together are "remove a verb and a test fails", proven
       on the real authorizer's decisions without re-running the scenario once per verb;
   (d) tests/unit/test_deploy.py's call tables list every call (the static tests there keep the
       manifests granting them, and the kustomize and Helm renderings equal).
3. **One removal done for real**, as a check of the argument above: with ``update`` taken off
   ``servicel2statuses/status`` the speaker's status write is refused with 403.

After merging a controller that calls the API differently, run this module (``pytest
tests/k8s/test_rbac.py``): (b) names each grant to remove, (a) each call to grant.
"""

from __future__ import annotations

import copy
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from lbd.k8s.client import (
    IPADDRESSPOOLS,
    L2ADVERTISEMENTS,
    NAMESPACES,
    SERVICEL2STATUSES,
    SERVICES,
    ApiError,
)
from lbd.k8s.speaker_status import NODE_LABEL, Ownership
from lbd.lab.control_plane import ControlPlane, RealApiServer
from tests.k8s.controller_support import (
    CONTROLLER_TOKEN,
    ROOT,
    addresses,
    advertisement,
    condition,
    controller_argv,
    get_service,
    kube_for,
    pool,
    service,
    wait_addresses,
    wait_for,
)
from tests.k8s.test_speaker_k8s import (
    SPEAKER_SA,
    Speaker,
    announced_service,
    hand_written_slice,
    l2status,
    node,
)
from tests.unit.deploy_rbac import Call, Grant, granting, grants
from tests.unit.test_deploy import CONTROLLER, CONTROLLER_CALLS, SPEAKER, SPEAKER_CALLS

pytestmark = pytest.mark.real_k8s

RBAC = ROOT / "deploy" / "base" / "rbac.yaml"
COLLECTION_VERBS = ("create", "list", "watch", "deletecollection")
VIP = "198.18.100.7"


@pytest.fixture
def real(real_api: RealApiServer) -> RealApiServer:
    return real_api


def rbac_objects() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(RBAC.read_text()) if d]


# -- the audit log -----------------------------------------------------------------------------


def user_of(account: str) -> str:
    namespace, name = account.split("/")
    return f"system:serviceaccount:{namespace}:{name}"


def audited_calls(plane: ControlPlane, offset: int, account: str) -> dict[Call, set[str]]:
    """Each resource call ``account`` made since ``offset``, and the decisions it got."""
    calls: dict[Call, set[str]] = {}
    for event in plane.audit_events(offset):
        ref = event.get("objectRef")
        if (event.get("user") or {}).get("username") != user_of(account) or not ref:
            continue  # another account, or a non-resource URL (discovery, /version)
        verb = event["verb"]
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        name = None if verb in COLLECTION_VERBS else ref.get("name")
        call = Call(verb, ref.get("apiGroup", ""), resource, ref.get("namespace"), name)
        decision = (event.get("annotations") or {}).get("authorization.k8s.io/decision", "")
        calls.setdefault(call, set()).add(decision)
    return calls


def check_least_privilege(
    calls: dict[Call, set[str]], account: str, table: list[Call]
) -> list[str]:
    """The problems (a)-(d) of the module docstring; empty when the roles fit the code."""
    objects = rbac_objects()
    problems: list[str] = []
    refused = sorted(str(c) for c, decisions in calls.items() if "allow" not in decisions)
    if refused:
        problems.append(f"(a) the API server refused {account}: {refused}")
    used: set[Grant] = set()
    for call, decisions in calls.items():
        by = granting(objects, account, call)
        used.update(by)
        if len(by) > 1:
            problems.append(f"(c) {call} is allowed by {len(by)} grants: {[str(g) for g in by]}")
        elif not by and "allow" in decisions:
            problems.append(f"(a) the real authorizer allowed {call}, deploy_rbac does not")
    unused = sorted(str(g) for g in grants(objects, account) if g not in used)
    if unused:
        problems.append(f"(b) {account} is granted what it never used; remove: {unused}")
    unlisted = sorted(str(c) for c in calls if not listed(c, table))
    if unlisted:
        problems.append(f"(d) tests/unit/test_deploy.py's table for {account} lacks {unlisted}")
    return problems


def listed(call: Call, table: list[Call]) -> bool:
    """Whether a table lists ``call``: the tables name an object only where a rule does (the
    Lease), and stand for any namespace by ``default`` (except lbd-system, a Role's)."""
    if call.namespace not in (None, "lbd-system"):
        call = replace(call, namespace="default")
    return call in table or replace(call, name=None) in table


def report(account: str, calls: dict[Call, set[str]]) -> None:
    print(f"\n{account}: {len(calls)} distinct calls")
    for call in sorted(calls, key=str):
        print(f"  {call}: {', '.join(sorted(calls[call]))}")


# -- 1. the admission policies -----------------------------------------------------------------


def l2status_object(name: str, node_name: str) -> dict[str, Any]:
    return {
        "apiVersion": SERVICEL2STATUSES.api_version,
        "kind": SERVICEL2STATUSES.kind,
        "metadata": {"name": name, "namespace": "default", "labels": {NODE_LABEL: node_name}},
        "spec": {},
    }


def status_body(current: dict[str, Any], node_name: str) -> dict[str, Any]:
    body = copy.deepcopy(current)
    body["status"] = {
        "node": node_name,
        "serviceName": current["metadata"]["name"],
        "serviceNamespace": "default",
        "interfaces": [{"name": "eth0"}],
        "vips": [VIP],
        "since": "2026-01-01T00:00:00Z",
    }
    return body


def refused(fn: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        fn()
    assert err.value.status == 403, err.value
    return err.value


def policy_message(node_name: str, name: str, names: str, *, status: bool = False) -> str:
    part = " (status)" if status else ""
    return (
        f"ValidatingAdmissionPolicy 'lbd-speaker-own-node' with binding 'lbd-speaker-own-node' "
        f"denied request: the lbd speaker of node {node_name} may write only its own node's "
        f"ServiceL2Status; default/{name}{part} names {names}"
    )


def test_a_speaker_writes_only_its_own_nodes_status(real: RealApiServer) -> None:
    admin = kube_for(real)
    for name in ("n1", "n2"):
        real.add_node_token(f"sp-{name}", SPEAKER_SA, name)
    n1, n2 = kube_for(real, "sp-n1"), kube_for(real, "sp-n2")
    collection = SERVICEL2STATUSES.path(namespace="default")

    def path(name: str, status: bool = False) -> str:
        return SERVICEL2STATUSES.path(
            namespace="default", name=name, subresource="status" if status else None
        )

    # n2's own object, written by n2: create, status, update, delete all pass
    n2.create(collection, l2status_object("theirs", "n2"))
    n2.replace(path("theirs", True), status_body(admin.get(path("theirs")), "n2"))
    theirs = admin.get(path("theirs"))
    assert theirs["status"]["node"] == "n2"

    # n1 may not create, change, re-label, claim via another node, or delete n2's
    err = refused(lambda: n1.create(collection, l2status_object("forged", "n2")))
    assert policy_message("n1", "forged", "node n2") in err.message
    fake = status_body(theirs, "n3")
    err = refused(lambda: n1.replace(path("theirs", True), fake))
    assert policy_message("n1", "theirs", "node n3", status=True) in err.message
    relabelled = copy.deepcopy(theirs)
    relabelled["metadata"]["labels"][NODE_LABEL] = "n3"
    err = refused(lambda: n1.replace(path("theirs"), relabelled))
    assert policy_message("n1", "theirs", "node n3") in err.message
    err = refused(lambda: n1.delete(path("theirs")))
    assert policy_message("n1", "theirs", "node n2") in err.message
    after = admin.get(path("theirs"))
    assert after["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]

    # a token that names no node (not a Pod's) may write nothing at all
    real.add_token("sp-unbound", SPEAKER_SA)
    err = refused(
        lambda: kube_for(real, "sp-unbound").create(collection, l2status_object("x", "n1"))
    )
    assert "this token names no node" in err.message

    # a takeover (n2 dead): n1 writes its own name over n2's object, then owns it
    mine = copy.deepcopy(theirs)
    mine["metadata"]["labels"][NODE_LABEL] = "n1"
    mine = n1.replace(path("theirs"), mine)
    n1.replace(path("theirs", True), status_body(mine, "n1"))
    err = refused(lambda: n2.delete(path("theirs")))  # now it is n1's, not n2's
    assert policy_message("n2", "theirs", "node n1") in err.message
    n1.delete(path("theirs"))
    with pytest.raises(ApiError) as gone:
        admin.get(path("theirs"))
    assert gone.value.status == 404


def test_the_controller_changes_only_lbd_annotations_of_a_service(real: RealApiServer) -> None:
    admin = kube_for(real)
    ctl = kube_for(real, CONTROLLER_TOKEN)
    service(admin, "web", annotations={"team.example/owner": "alice"})
    path = SERVICES.path(namespace="default", name="web")
    ctl.patch(path, {"metadata": {"annotations": {"lbd.io/ip-allocated-from-pool": "p"}}})
    for change, what in (
        ({"spec": {"selector": {"app": "evil"}}}, "its spec"),
        ({"metadata": {"labels": {"app": "evil"}}}, "its spec"),
        ({"metadata": {"finalizers": ["example.com/hold"]}}, "its spec"),
        ({"metadata": {"annotations": {"team.example/owner": "mallory"}}}, "team.example/owner"),
        ({"metadata": {"annotations": {"team.example/owner": None}}}, "team.example/owner"),
    ):
        err = refused(lambda change=change: ctl.patch(path, change))
        assert "ValidatingAdmissionPolicy 'lbd-controller-service-annotations'" in err.message
        assert (
            f"the lbd controller may change only lbd.io/ annotations of a Service, not {what}"
            in (err.message)
        )
    svc = get_service(admin, "web")
    assert svc["spec"]["selector"] == {"app": "web"}
    assert svc["metadata"]["annotations"] == {
        "team.example/owner": "alice",
        "lbd.io/ip-allocated-from-pool": "p",
    }


# -- 2. every verb granted is a verb used ------------------------------------------------------


def speaker_scenario(real: RealApiServer) -> None:
    """Every Kubernetes call of the speaker: its five informers (list, watch, the rewind probe),
    ServiceL2Status created, taken over, handed back, deleted, a leftover cleaned up, and
    NodeAssigned Events created and aggregated."""
    admin = kube_for(real)
    node(admin, "n1", "198.18.0.11")
    node(admin, "n2", "198.18.0.12")
    pool(admin, "rbac", ["198.18.100.0/28"])
    advertisement(admin, "rbac", ipAddressPools=["rbac"])
    svc = announced_service(admin)
    hand_written_slice(admin)
    own = Ownership("default", "web", svc["metadata"]["uid"], (VIP,), ("eth0",))
    speakers = {name: Speaker(real, name).start() for name in ("n1", "n2")}
    try:
        n1, n2 = speakers["n1"], speakers["n2"]

        def owner() -> str | None:
            status = l2status(admin)
            return None if status is None else (status.get("status") or {}).get("node")

        n1.writer.set_desired("default/web", own)  # create, then /status
        wait_for(lambda: owner() == "n1", 10, "n1 announcing web")
        n2.writer.set_desired("default/web", own)  # takeover: update (labels), then /status
        wait_for(lambda: owner() == "n2", 10, "n2 announcing web")
        n1.writer.set_desired("default/web", None)  # n2's now: n1 leaves it alone
        n1.writer.set_desired("default/web", own)  # back to n1: the same Event again (patch)
        wait_for(lambda: owner() == "n1", 10, "n1 announcing web again")
        n2.writer.set_desired("default/web", None)
        n1.writer.set_desired("default/web", None)  # n1's own: delete
        wait_for(lambda: l2status(admin) is None, 10, "web's status deleted")
        # a leftover of an earlier run of n2's speaker: listed by label, then deleted
        admin.create(SERVICEL2STATUSES.path(namespace="default"), l2status_object("old", "n2"))
        n2.writer.cleanup_stale({})
        wait_for(
            lambda: l2status(admin, "old") is None, 10, "n2's leftover ServiceL2Status removed"
        )
        real.close_watches()  # the informers resume: the rewind probe (a list of one)
        for s in speakers.values():
            assert s.events.flush(10)
        wait_for(
            lambda: all(
                inf.resource_version for s in speakers.values() for inf in s.cache.informers
            ),
            10,
            "the informers watching again",
        )
        time.sleep(0.5)
    finally:
        for s in speakers.values():
            s.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def controller_scenario(real: RealApiServer, tmp_path: Path) -> None:
    """Every Kubernetes call of ``lbd controller --leader-elect``: the Lease created and renewed,
    informers on Services, pools, namespaces, ServiceL2Statuses and the speaker Pods of
    lbd-system, a pool chosen by namespace labels, addresses, annotations, conditions and Events
    written (one repeated: aggregated), a speaker's "not announced" report turned into the
    ``lbd.io/Announced`` condition, pool status, an L2Advertisement's Ready condition (Node labels
    read), an address released, a clean stop that hands the Lease over."""
    admin = kube_for(real)
    admin.create(
        NAMESPACES.path(),
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "rbac-team", "labels": {"team": "a"}},
        },
    )
    pool(
        admin,
        "team",
        ["198.18.100.16/30"],
        serviceAllocation={"namespaceSelectors": [{"matchLabels": {"team": "a"}}]},
    )
    pool(admin, "general", ["198.18.100.0/30"])
    kubeconfig = real.write_kubeconfig(tmp_path / "kubeconfig", CONTROLLER_TOKEN)
    proc = subprocess.Popen(
        controller_argv(
            kubeconfig,
            "--leader-elect",
            "--identity",
            "rbac-test",
            "--retry-period",
            "0.5",
            "--lease-duration",
            "3",
            "--renew-deadline",
            "2",
            "--health-addr",
            f"127.0.0.1:{free_port()}",
        ),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        service(admin, "a", "rbac-team")
        (vip,) = wait_addresses(admin, "a", "rbac-team", timeout=30)
        assert vip.startswith("198.18.100.1")
        report_unannounced(admin, "rbac-team", "a", vip)
        wait_for(
            lambda: announced(get_service(admin, "a", "rbac-team")) == "NoReadyEndpoints",
            30,
            "rbac-team/a's lbd.io/Announced condition from the speaker's report",
        )
        service(admin, "b")
        wait_addresses(admin, "b", timeout=30)
        # an address no pool has: refused; then a pool with it, removed and added again: the
        # second IPAllocated repeats the first (same Service, reason and message): aggregated
        service(admin, "later", annotations={"lbd.io/loadBalancerIPs": "198.18.100.33"})
        wait_for(
            lambda: (condition(get_service(admin, "later")) or {}).get("status") == "False",
            30,
            "default/later refused",
        )
        for _ in range(2):
            pool(admin, "late", ["198.18.100.32/30"])
            wait_for(
                lambda: addresses(get_service(admin, "later")) == ["198.18.100.33"],
                30,
                "default/later assigned",
            )
            admin.delete(IPADDRESSPOOLS.path(name="late"))
            wait_for(
                lambda: not addresses(get_service(admin, "later")), 30, "default/later withdrawn"
            )
        admin.delete(SERVICES.path(namespace="default", name="b"))
        advertisement(admin, "rbac-typo", ipAddressPools=["generla"])

        def ad_reason() -> str | None:
            obj = admin.get(L2ADVERTISEMENTS.path(name="rbac-typo"))
            conds = (obj.get("status") or {}).get("conditions") or []
            return next((c["reason"] for c in conds if c["type"] == "Ready"), None)

        wait_for(lambda: ad_reason() == "PoolNotFound", 30, "rbac-typo's Ready condition")

        def released() -> bool:
            status = admin.get(IPADDRESSPOOLS.path(name="general")).get("status") or {}
            return str(status.get("assignedIPv4")) == "0"

        wait_for(released, 30, "pool general's status to show b's address released")
        time.sleep(2.0)  # Lease renewals
        assert addresses(get_service(admin, "a", "rbac-team"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0


def report_unannounced(admin: Any, namespace: str, name: str, vip: str) -> None:
    """What a Service's reporting speaker writes when no node may announce it."""
    obj = admin.create(
        SERVICEL2STATUSES.path(namespace=namespace),
        {
            "apiVersion": "lbd.io/v1beta1",
            "kind": "ServiceL2Status",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {},
        },
    )
    obj["status"] = {
        "node": "n1",
        "announced": False,
        "reason": "NoReadyEndpoints",
        "message": "the Service has no ready endpoint",
        "vips": [vip],
    }
    admin.replace(SERVICEL2STATUSES.path(namespace=namespace, name=name) + "/status", obj)


def announced(svc: dict[str, Any]) -> str | None:
    for c in (svc.get("status") or {}).get("conditions") or []:
        if c.get("type") == "lbd.io/Announced":
            return str(c.get("reason"))
    return None


@pytest.fixture
def audit(real_plane: ControlPlane) -> Iterator[int]:
    yield real_plane.audit_offset()


def test_the_speaker_is_granted_exactly_what_it_uses(
    real: RealApiServer, real_plane: ControlPlane, audit: int
) -> None:
    speaker_scenario(real)
    calls = audited_calls(real_plane, audit, SPEAKER)
    report(SPEAKER, calls)
    assert calls, "no audited call: is the session plane auditing lbd's accounts?"
    assert check_least_privilege(calls, SPEAKER, SPEAKER_CALLS) == []


def test_the_controller_is_granted_exactly_what_it_uses(
    real: RealApiServer, real_plane: ControlPlane, audit: int, tmp_path: Path
) -> None:
    controller_scenario(real, tmp_path)
    calls = audited_calls(real_plane, audit, CONTROLLER)
    report(CONTROLLER, calls)
    assert calls, "no audited call: is the session plane auditing lbd's accounts?"
    assert check_least_privilege(calls, CONTROLLER, CONTROLLER_CALLS) == []


def test_the_check_names_an_unused_grant_and_a_refused_call() -> None:
    """(b) and (a) on made-up audit results: the check can fail."""
    some = {Call("list", "", "nodes"): {"allow"}}
    problems = check_least_privilege(some, SPEAKER, SPEAKER_CALLS)
    assert any(p.startswith("(b)") and "watch nodes.core" in p for p in problems)
    denied = {Call("list", "", "secrets", "lbd-system"): {"forbid"}}
    problems = check_least_privilege(denied, SPEAKER, SPEAKER_CALLS)
    assert any(p.startswith("(a)") and "list secrets.core in lbd-system" in p for p in problems)


# -- 3. one removal done for real --------------------------------------------------------------


def test_without_update_on_the_status_subresource_the_speaker_is_refused(
    real: RealApiServer, real_plane: ControlPlane
) -> None:
    objects = rbac_objects()
    (role,) = [
        o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "lbd:speaker"
    ]
    reduced = copy.deepcopy(role)
    for rule in reduced["rules"]:
        if rule["resources"] == ["servicel2statuses/status"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "update"]
    reduced["rules"] = [r for r in reduced["rules"] if r["verbs"]]
    admin = kube_for(real)
    real.add_node_token("sp-n1", SPEAKER_SA, "n1")
    n1 = kube_for(real, "sp-n1")
    collection = SERVICEL2STATUSES.path(namespace="default")
    created = n1.create(collection, l2status_object("web", "n1"))
    real_plane.apply_object(reduced)
    try:
        path = SERVICEL2STATUSES.path(namespace="default", name="web", subresource="status")

        def write() -> None:
            n1.replace(path, status_body(created, "n1"))

        # RBAC changes reach the authorizer through its informer: poll until refused
        err = wait_for(lambda: _refusal(write), 10, "the status write to be refused")
        assert err.status == 403
        assert 'cannot update resource "servicel2statuses/status"' in err.message
    finally:
        real_plane.apply_object(role)
    wait_for(lambda: _refusal(write) is None, 10, "the status write to be allowed again")
    assert (
        admin.get(SERVICEL2STATUSES.path(namespace="default", name="web"))["status"]["node"] == "n1"
    )


def _refusal(fn: Any) -> ApiError | None:
    try:
        fn()
    except ApiError as exc:
        if exc.status == 403:
            return exc
        raise
    return None

"""Least privilege, proven from what lbd's programs really call.

One lab (2 nodes, dual-stack pool, 2 controllers, ``deploy/base/rbac.yaml`` enforced) goes
through a Service's life (created, addressed, announced, its owner killed and restored,
deleted) and a pool change. Then the API server's audit record says which calls the
controller's and the speaker's service accounts made (the stand-in's ``GET /_lab/audit``, or the
real kube-apiserver's audit log, where RBAC is the real authorizer), and the test checks them
against the RBAC manifest and against the tables of ``tests/unit/test_deploy.py``: a call a
program makes that the tables lack fails here, so the tables stay the true list.

This runs the whole programs (speaker daemons with raw sockets in network namespaces) on the
stand-in; tests/k8s/test_rbac.py runs their Kubernetes side on the real kube-apiserver and also
proves the converse there: every verb granted is used.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml

from lbd.k8s.client import IPADDRESSPOOLS
from lbd.lab.apiserver.audit import AuditRecord
from lbd.lab.cluster import realplane
from lbd.lab.cluster.bootstrap import POOL_NAME
from lbd.lab.cluster.lab import Lab, kill_node, restore_node
from lbd.lab.scenarios import scenario
from tests.unit.deploy_rbac import Call, allowed
from tests.unit.test_deploy import (
    CONTROLLER,
    CONTROLLER_CALLS,
    DEPLOY,
    SPEAKER,
    SPEAKER_CALLS,
)

from .conftest import LabFactory

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

WRITES = ("create", "update", "patch", "delete", "deletecollection")


def _user(account: str) -> str:
    namespace, name = account.split("/")
    return f"system:serviceaccount:{namespace}:{name}"


def _call(record: AuditRecord) -> Call:
    resource = record.resource + (f"/{record.subresource}" if record.subresource else "")
    return Call(record.verb, record.api_group, resource, record.namespace or None)


def _listed(call: Call, table: list[Call]) -> list[Call]:
    """The table entries for ``call``: the stand-in's audit names no object, the tables do
    where a rule does (the controller's Lease)."""
    return [t for t in table if t == call or replace(t, name=None) == call]


def _exercise(lab: Lab) -> None:
    """What the programs are observed doing: every step waits for its visible outcome."""
    kube = scenario.host_kube(lab)
    scenario.create_echo_service(kube, "dual", dual_stack=True)
    scenario.create_echo_service(kube, "plain")
    scenario.wait_for_vips(kube, "dual", count=2)
    scenario.wait_for_vips(kube, "plain")
    owner = scenario.poll(
        lambda: scenario.announced_by(kube, "dual"),
        timeout=15.0,
        what="the ServiceL2Status of default/dual to name its node",
    )
    scenario.poll(
        lambda: scenario.announced_by(kube, "plain"),
        timeout=15.0,
        what="the ServiceL2Status of default/plain to name its node",
    )

    kill_node(lab, owner)
    scenario.poll(
        lambda: scenario.announced_by(kube, "dual") not in (None, owner),
        timeout=20.0,
        what=f"default/dual to be announced by a node other than the killed {owner}",
    )
    restore_node(lab, owner)
    # ranking is stable: the restored node takes its Service back (a handover of the status)
    scenario.poll(
        lambda: scenario.announced_by(kube, "dual") == owner,
        timeout=20.0,
        what=f"default/dual to be announced by the restored {owner} again",
    )

    scenario.delete_service(kube, "plain")
    scenario.poll(
        lambda: scenario.announced_by(kube, "plain") is None,
        timeout=15.0,
        what="the ServiceL2Status of the deleted default/plain to go",
    )

    pool_path = IPADDRESSPOOLS.path(name=POOL_NAME)

    def available() -> str | None:
        status = kube.get(pool_path).get("status") or {}
        value = status.get("availableIPv4")
        return None if value is None else str(value)

    before = scenario.poll(available, timeout=15.0, what=f"pool {POOL_NAME} to have a status")
    pool = kube.get(pool_path)
    addresses = [*pool["spec"]["addresses"], "198.18.101.0/28"]
    kube.patch(pool_path, {"spec": {"addresses": addresses}})
    scenario.poll(
        lambda: (a := available()) is not None and a != before,
        timeout=15.0,
        what=f"pool {POOL_NAME}'s status to count the added range (was {before} available)",
    )


def _audit(lab: Lab) -> list[AuditRecord]:
    if lab.real:
        # kube-apiserver's own audit log: every request of the lbd-system ServiceAccounts
        return realplane.audit_records(lab.dir)
    body: dict[str, Any] = scenario.host_kube(lab).get("/_lab/audit")
    assert body["dropped"] == 0
    return [AuditRecord.from_json(doc) for doc in body["records"]]


def test_service_accounts_use_only_what_rbac_and_the_tables_grant(
    module_lab_factory: LabFactory,
) -> None:
    lab = module_lab_factory(nodes=2, ipv6=True)
    _exercise(lab)
    records = _audit(lab)
    rbac = [d for d in yaml.safe_load_all((DEPLOY / "base" / "rbac.yaml").read_text()) if d]
    tables = {CONTROLLER: CONTROLLER_CALLS, SPEAKER: SPEAKER_CALLS}

    observed: dict[str, set[Call]] = {}
    problems: list[str] = []
    for account, table in tables.items():
        mine = [r for r in records if r.user == _user(account)]
        # (a) nothing this account asked for was refused
        denied = sorted(
            f"{_call(r)} x{r.count}" if r.resource else r.path for r in mine if not r.allowed
        )
        if denied:
            problems.append(f"{account} was refused: {denied}")
        # discovery and /version (non-resource URLs) are open to every authenticated user
        calls = {_call(r) for r in mine if r.resource}
        observed[account] = calls
        if not calls:
            problems.append(f"{account} made no API call at all: does it run with its token?")
        # (b) the manifest grants every call, (c) the test tables list every call
        not_granted = sorted(
            str(c)
            for c in calls
            if not any(allowed(rbac, account, t) for t in _listed(c, table) or [c])
        )
        if not_granted:
            problems.append(f"deploy/base/rbac.yaml does not grant {account}: {not_granted}")
        not_listed = sorted(str(c) for c in calls if not _listed(c, table))
        if not_listed:
            problems.append(f"tests/unit/test_deploy.py's table for {account} lacks: {not_listed}")
    print()
    for account, calls in observed.items():
        print(f"{account} ({len(calls)}): " + ", ".join(sorted(str(c) for c in calls)))
    assert problems == []

    # (d) the two claims that matter most
    speaker_service_writes = sorted(
        str(c)
        for c in observed[SPEAKER]
        if c.resource.split("/")[0] == "services" and c.verb in WRITES
    )
    assert speaker_service_writes == []
    # the controller only looks whether a speaker runs (NoLiveSpeaker): it reads the speaker
    # Pods of its own namespace and nothing else of any Pod
    speaker_pods = {Call(v, "", "pods", CONTROLLER.split("/")[0]) for v in ("list", "watch")}
    controller_pod_calls = sorted(
        str(c)
        for c in observed[CONTROLLER]
        if c.resource.split("/")[0] == "pods" and c not in speaker_pods
    )
    assert controller_pod_calls == []
    # and the exercise did reach the writes the roles exist for
    assert (
        Call("patch", "", "services/status", "default") in observed[CONTROLLER]
        or Call("update", "", "services/status", "default") in observed[CONTROLLER]
    )
    assert any(
        c.resource.startswith("servicel2statuses") and c.verb in WRITES for c in observed[SPEAKER]
    )

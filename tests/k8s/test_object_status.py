"""L2Advertisement status and Service annotation findings (issue 14, point 4), on the stand-in
and the real kube-apiserver.

The controller, under its own ServiceAccount (deploy/base/rbac.yaml enforced), writes the
``Ready`` condition of every L2Advertisement: False with PoolNotFound / NoPoolSelected /
NoNodeSelected / Invalid and a Warning Event when something is wrong, True with a Normal Event
once fixed, and no write at all while nothing changes.
"""

from __future__ import annotations

from typing import Any

from lbd.k8s.client import L2ADVERTISEMENTS, NODES, SERVICES, Kube
from tests.k8s.controller_support import (
    Env,
    advertisement,
    events,
    flush,
    pool,
    seen_pool,
    service,
    wait_addresses,
    wait_for,
)


def node(kube: Kube, name: str, labels: dict[str, str]) -> None:
    kube.create(
        NODES.path(),
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}},
    )


def ready(kube: Kube, name: str) -> dict[str, Any] | None:
    obj = kube.get(L2ADVERTISEMENTS.path(name=name))
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return dict(c)
    return None


def wait_reason(kube: Kube, name: str, reason: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        c = ready(kube, name)
        return c if c is not None and c.get("reason") == reason else None

    return wait_for(check, 10, f"Ready reason {reason} on L2Advertisement {name}")


def ad_events(kube: Kube, name: str) -> list[tuple[str, str, str]]:
    return sorted(
        (e["type"], e["reason"], e["message"])
        for e in events(kube, name, "default")
        if (e.get("involvedObject") or {}).get("kind") == "L2Advertisement"
    )


def test_every_reason_with_one_event_each_and_no_write_at_steady_state(env: Env):
    kube = env.admin
    node(kube, "l2s-n1", {"lbd-test/edge": "yes"})
    pool(kube, "l2s-web", ["198.18.100.0/28"])
    advertisement(kube, "typo", ipAddressPools=["l2s-wbe"])
    advertisement(kube, "nopool", ipAddressPoolSelectors=[{"matchLabels": {"tier": "none"}}])
    advertisement(
        kube, "nonode", ipAddressPools=["l2s-web"], nodeSelectors=[{"matchLabels": {"x": "y"}}]
    )
    advertisement(
        kube,
        "badsel",
        nodeSelectors=[{"matchExpressions": [{"key": "a", "operator": "In"}]}],
    )
    advertisement(
        kube,
        "good",
        ipAddressPools=["l2s-web"],
        nodeSelectors=[{"matchLabels": {"lbd-test/edge": "yes"}}],
    )
    c = wait_reason(kube, "typo", "PoolNotFound")
    assert c["status"] == "False"
    assert c["message"] == "spec.ipAddressPools: no IPAddressPool named l2s-wbe; announcing nothing"
    assert wait_reason(kube, "nopool", "NoPoolSelected")["status"] == "False"
    assert "spec.nodeSelectors" in wait_reason(kube, "nonode", "NoNodeSelected")["message"]
    bad = wait_reason(kube, "badsel", "Invalid")
    assert "spec.nodeSelectors[0].matchExpressions[0]" in bad["message"]
    good = wait_reason(kube, "good", "Ready")
    assert (good["status"], good["message"]) == ("True", "announcing l2s-web from 1 node")

    # Steady state: nothing is written again (no resourceVersion moves), however often the
    # controller looks (a new session decides every L2Advertisement again).
    flush(env)
    names = ("typo", "nopool", "nonode", "badsel", "good")
    versions = {
        n: kube.get(L2ADVERTISEMENTS.path(name=n))["metadata"]["resourceVersion"] for n in names
    }
    env.ctl.stop_leading()
    env.ctl.start_leading()
    flush(env)
    for n in names:
        assert kube.get(L2ADVERTISEMENTS.path(name=n))["metadata"]["resourceVersion"] == versions[n]
    assert ad_events(kube, "typo") == [
        (
            "Warning",
            "PoolNotFound",
            "spec.ipAddressPools: no IPAddressPool named l2s-wbe; announcing nothing",
        )
    ]
    assert [r for _t, r, _m in ad_events(kube, "good")] == ["Ready"]

    # Fixing the cause turns it True, with one Normal Event; the pool appearing is enough.
    pool(kube, "l2s-wbe", ["198.18.101.0/28"])
    fixed = wait_reason(kube, "typo", "Ready")
    assert fixed["message"] == "announcing l2s-wbe from 1 node"
    # A node labelled as selected fixes NoNodeSelected.
    kube.patch(NODES.path(name="l2s-n1"), {"metadata": {"labels": {"x": "y"}}})
    wait_reason(kube, "nonode", "Ready")
    flush(env)
    assert [(t, r) for t, r, _m in ad_events(kube, "typo")] == [
        ("Normal", "Ready"),
        ("Warning", "PoolNotFound"),
    ]


def test_annotation_findings_are_told_once_on_the_service(env: Env):
    """Issue 14 pt 4: a misspelt lbd.io/ key (nearest key named), lbd.io/ and MetalLB keys that
    disagree (which wins), a deprecated metallb.universe.tf/ key (its lbd.io/ name): one Event
    each, not one per reconcile."""
    kube = env.admin
    # taken in first: a Service decided before its pool is refused NoMatchingPool (one more Event)
    seen_pool(env, "ann-web", ["198.18.100.0/28"])
    seen_pool(env, "ann-old", ["198.18.101.0/28"])
    service(
        kube,
        "findings",
        annotations={
            "lbd.io/adress-pool": "ann-web",
            "lbd.io/address-pool": "ann-web",
            "metallb.io/address-pool": "ann-old",
            "metallb.universe.tf/allow-shared-ip": "k",
        },
    )
    assert wait_addresses(kube, "findings")[0].startswith("198.18.100.")  # lbd.io/ won
    # more reconciles of the same Service: a label change, a status rewrite by the controller
    kube.patch(
        SERVICES.path(namespace="default", name="findings"), {"metadata": {"labels": {"x": "1"}}}
    )
    kube.patch(
        SERVICES.path(namespace="default", name="findings"), {"metadata": {"labels": {"x": "2"}}}
    )
    flush(env)
    got = {
        (e["type"], e["reason"]): (e["message"], e.get("count", 1))
        for e in events(kube, "findings")
        if e["reason"] != "IPAllocated"
    }
    assert got == {
        ("Warning", "UnknownAnnotation"): (
            "lbd.io/adress-pool is not an lbd annotation and is ignored; "
            "did you mean lbd.io/address-pool?",
            1,
        ),
        ("Warning", "ConflictingAnnotations"): (
            "lbd.io/address-pool='ann-web' wins over metallb.io/address-pool='ann-old' "
            "(precedence: lbd.io/, then metallb.io/, then metallb.universe.tf/)",
            1,
        ),
        ("Normal", "DeprecatedAnnotation"): (
            "metallb.universe.tf/allow-shared-ip uses MetalLB's deprecated prefix (still read); "
            "its lbd name is lbd.io/allow-shared-ip",
            1,
        ),
    }

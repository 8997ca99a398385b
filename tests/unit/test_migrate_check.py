"""``lbd migrate from-metallb --check``: for each Service, what lbd would keep or change, and why.

The Services are as MetalLB left them (status addresses, ``metallb.io/ip-allocated-from-pool``);
the configuration is the converted one. Each verdict is provoked on purpose.
"""

from __future__ import annotations

from typing import Any

from lbd.core.model import Reason
from lbd.k8s.service import observe_service
from lbd.tools.migrate import from_metallb
from lbd.tools.migrate_check import ObservedService, Verdict, check
from lbd.tools.migrate_cli import observed_services
from tests.unit.test_migrate import _adv, _pool, load

POOLS = [
    _pool("cheap", ["198.18.20.0/24"]),
    _pool("costly", ["198.19.25.64/30"], autoAssign=False),
    _pool("tenants", ["198.18.30.0/24"], serviceAllocation={"namespaces": ["team-a"]}),
    _adv("all"),
]


def _svc(
    ns: str,
    name: str,
    ip: str | None = None,
    *,
    created: str = "2026-01-01T00:00:00Z",
    port: int = 80,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "namespace": ns,
            "name": name,
            "creationTimestamp": created,
            "annotations": dict(annotations or {}),
        },
        "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}] if ip else []}},
    }


def verdicts(pools: list[dict[str, Any]], services: list[dict[str, Any]]) -> dict[str, Any]:
    config = from_metallb(pools).config
    return {v.key: v for v in check(config, observed_services(services, None))}


def test_the_documented_services_keep_their_addresses():
    objects = load("pools.yaml") + load("services.yaml")
    got = verdicts(objects, objects)
    assert {k: v.verdict for k, v in got.items()} == {
        "team-a/web": Verdict.SAME_ADDRESS,
        "default/pinned": Verdict.SAME_ADDRESS,
        "default/dns-tcp": Verdict.SAME_ADDRESS,
        "default/dns-udp": Verdict.SAME_ADDRESS,
        "default/waiting": Verdict.NEW_ADDRESS,
        "default/legacy": Verdict.WOULD_CHANGE,
    }
    # the two DNS Services share one address under their sharing key, as under MetalLB
    assert got["default/dns-tcp"].after == got["default/dns-udp"].after == ("198.18.20.0",)
    assert got["default/waiting"].after == ("198.18.20.1",)
    assert got["default/legacy"].after == ("198.18.20.2",)
    assert got["team-a/web"].pool_after == "tenants"


def test_an_address_in_no_converted_pool_would_change_and_says_why():
    svc = _svc(
        "default",
        "gone",
        "198.18.99.5",
        annotations={"metallb.io/ip-allocated-from-pool": "removed"},
    )
    (v,) = verdicts(POOLS, [svc]).values()
    assert v.verdict is Verdict.WOULD_CHANGE
    assert v.reason is Reason.REQUESTED_IP_NOT_IN_POOL and "198.18.99.5" in v.why
    assert v.after == ("198.18.20.0",) and v.pool_after == "cheap"


def test_an_address_of_a_pool_the_service_may_no_longer_use_would_change():
    """team-b may not use ``tenants`` (namespaces: team-a), so its address does not carry over."""
    svc = _svc("team-b", "web", "198.18.30.9")
    (v,) = verdicts(POOLS, [svc]).values()
    assert v.verdict is Verdict.WOULD_CHANGE and v.after == ("198.18.20.0",)


def test_same_addresses_counted_in_another_pool():
    svc = _svc(
        "default",
        "moved",
        "198.18.20.7",
        annotations={"metallb.io/ip-allocated-from-pool": "old-name"},
    )
    (v,) = verdicts(POOLS, [svc]).values()
    assert v.verdict is Verdict.OTHER_POOL and v.after == ("198.18.20.7",)
    assert (v.pool_before, v.pool_after) == ("old-name", "cheap")
    assert "old-name" in v.why


def test_of_two_claimants_the_older_keeps_the_address():
    older = _svc("default", "a", "198.18.20.5", created="2026-01-01T00:00:00Z")
    younger = _svc("default", "b", "198.18.20.5", created="2026-02-01T00:00:00Z")
    got = verdicts(POOLS, [younger, older])
    assert got["default/a"].verdict is Verdict.SAME_ADDRESS
    assert got["default/b"].verdict is Verdict.WOULD_CHANGE
    assert got["default/b"].reason is Reason.REQUESTED_IP_UNAVAILABLE
    assert "held by default/a" in got["default/b"].why


def test_pending_services_stay_pending_with_the_reason():
    svc = _svc("default", "p", annotations={"metallb.io/address-pool": "no-such-pool"})
    (v,) = verdicts(POOLS, [svc]).values()
    assert v.verdict is Verdict.STILL_PENDING and v.after == ()
    assert v.reason is Reason.NO_MATCHING_POOL


def test_an_invalid_request_is_named():
    svc = _svc(
        "default", "bad", "198.18.20.9", annotations={"metallb.io/loadBalancerIPs": "not-an-ip"}
    )
    (v,) = verdicts(POOLS, [svc]).values()
    assert v.verdict is Verdict.INVALID_REQUEST
    assert "metadata.annotations[metallb.io/loadBalancerIPs]" in v.why
    assert v.before == ("198.18.20.9",)


def test_check_is_independent_of_input_order():
    services = [
        _svc("default", f"s{i}", f"198.18.20.{i % 3}", created=f"2026-01-0{i + 1}T00:00:00Z")
        for i in range(6)
    ]
    config = from_metallb(POOLS).config
    forward = check(config, observed_services(services, None))
    backward = check(config, observed_services(list(reversed(services)), None))
    assert forward == backward
    kept = [v.key for v in forward if v.verdict is Verdict.SAME_ADDRESS]
    assert kept == ["default/s0", "default/s1", "default/s2"], (
        "the oldest holder of each address keeps it"
    )


def test_services_of_another_class_are_left_out():
    svc = _svc("default", "other", "198.18.20.9")
    svc["spec"]["loadBalancerClass"] = "example.com/other"
    assert observed_services([svc], None) == []
    assert [s.key for s in observed_services([svc], "example.com/other")] == ["default/other"]


def test_observed_service_reads_what_the_controller_reads():
    svc = _svc(
        "default", "x", "198.18.20.9", annotations={"metallb.io/ip-allocated-from-pool": "cheap"}
    )
    (observed,) = observed_services([svc], None)
    assert observed == ObservedService(
        observed.key, observe_service(svc).request, ("198.18.20.9",), "cheap"
    )

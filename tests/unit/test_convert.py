"""Service dicts -> ObservedService: annotations (lbd.io and MetalLB's), families, bad input,
and the controller and the speaker reading every annotation prefix the same way."""

from __future__ import annotations

from typing import Any

import pytest

from lbd.core.config import FieldError
from lbd.core.model import Family, FamilyPolicy, Port, ServiceRequest
from lbd.k8s import speaker_convert
from lbd.k8s.endpointslice import NO_ENDPOINTS
from lbd.k8s.service import ObservedService, observe_service


def service_request(obj: dict[str, Any], ns_labels: dict[str, str] | None = None):
    return observe_service(obj).request_in(ns_labels or {})


def class_matches(obj: dict[str, Any], lb_class: str | None) -> bool:
    return observe_service(obj).class_matches(lb_class)


def svc(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "web",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": annotations or {},
            "labels": {"app": "web"},
        },
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], **spec},
    }


def request(obj: dict[str, Any]) -> ServiceRequest:
    req = service_request(obj, {"team": "a"})
    assert isinstance(req, ServiceRequest), req
    return req


def test_plain_service():
    req = request(svc())
    assert req.key == "ns/web"
    assert req.ip_families == (Family.IPV4,)
    assert req.family_policy is FamilyPolicy.SINGLE_STACK
    assert req.ports == frozenset({Port("TCP", 80)})
    assert req.namespace_labels == {"team": "a"}
    assert req.requested == ()
    assert req.pool is None
    assert req.sharing_key is None


@pytest.mark.parametrize(
    ("annotations", "want"),
    [
        ({"lbd.io/address-pool": "a"}, "a"),
        ({"metallb.io/address-pool": "m"}, "m"),
        ({"metallb.universe.tf/address-pool": "u"}, "u"),
        ({"metallb.universe.tf/address-pool": "u", "lbd.io/address-pool": "a"}, "a"),
        ({"metallb.universe.tf/address-pool": "u", "metallb.io/address-pool": "m"}, "m"),
    ],
    ids=["lbd.io", "metallb.io", "metallb.universe.tf", "lbd.io wins", "metallb.io beats old"],
)
def test_pool_annotation_precedence(annotations, want):
    assert request(svc(annotations)).pool == want


def test_metallb_requested_ips_and_sharing_key_are_read():
    req = request(
        svc(
            {
                "metallb.universe.tf/loadBalancerIPs": "198.18.100.7, 2001:DB8::7",
                "metallb.io/allow-shared-ip": "k1",
            }
        )
    )
    assert req.requested == ("198.18.100.7", "2001:db8::7")
    assert req.sharing_key == "k1"


def test_spec_load_balancer_ip_is_a_request():
    assert request(svc(loadBalancerIP="198.18.100.9")).requested == ("198.18.100.9",)


def test_dual_stack_fields():
    req = request(svc(ipFamilies=["IPv6", "IPv4"], ipFamilyPolicy="RequireDualStack"))
    assert req.ip_families == (Family.IPV6, Family.IPV4)
    assert req.family_policy is FamilyPolicy.REQUIRE_DUAL_STACK


@pytest.mark.parametrize(
    ("obj", "path", "words"),
    [
        (svc({"lbd.io/loadBalancerIPs": "nope"}), "lbd.io/loadBalancerIPs", "not an IP"),
        (
            svc({"metallb.io/loadBalancerIPs": "198.18.0.1,198.18.0.2"}),
            "metallb.io/loadBalancerIPs",
            "one per family",
        ),
        (
            svc({"lbd.io/loadBalancerIPs": "198.18.100.1"}, loadBalancerIP="198.18.100.2"),
            "spec.loadBalancerIP",
            "differs",
        ),
        (svc(ipFamilies=["IPv5"]), "spec.ipFamilies[0]", "not IPv4"),
        (svc(ipFamilyPolicy="Sometimes"), "spec.ipFamilyPolicy", "not SingleStack"),
        (svc(ports=[{"port": "http"}]), "spec.ports[0].port", "integer"),
        (svc({"lbd.io/address-pool": " "}), "lbd.io/address-pool", "must name a pool"),
    ],
    ids=["garbage ip", "two v4", "annotation vs spec", "family", "policy", "port", "empty pool"],
)
def test_bad_input_names_the_field(obj, path, words):
    err = service_request(obj)
    assert isinstance(err, FieldError)
    assert path in err.path
    assert words in err.reason


def test_class_filter():
    assert class_matches(svc(), None)
    assert not class_matches(svc(loadBalancerClass="other"), None)
    assert class_matches(svc(loadBalancerClass="lbd"), "lbd")
    assert not class_matches(svc(), "lbd")


def test_ingress_and_allocated_pool():
    obj = svc({"lbd.io/ip-allocated-from-pool": "p"})
    obj["status"] = {
        "loadBalancer": {"ingress": [{"ip": "2001:DB8::1"}, {"hostname": "x"}, {"ip": "bad"}]}
    }
    view = observe_service(obj)
    assert view.addresses == ("2001:db8::1",)
    assert [str(e) for e in view.address_errors] == [
        "status.loadBalancer.ingress[2].ip: not an IP address: 'bad'"
    ]
    assert not view.ingress_exact  # the writer rewrites it
    assert view.pool_hint == view.recorded_pool == "p"
    assert observe_service(svc()).addresses == ()


def test_a_service_is_read_once_into_a_frozen_view():
    view = observe_service(svc())
    assert isinstance(view, ObservedService)
    assert view.key == "ns/web" and view.created == "2026-01-01T00:00:00Z"
    assert view.ours(None) and not view.ours("other") and not view.marked
    with pytest.raises(AttributeError):
        view.addresses = ()  # type: ignore[misc]


def test_the_request_is_read_when_asked_and_views_compare_by_it():
    """The request is read on first use (lbd status never asks); views still compare by it,
    as ViewCache.reset diffs them: equal requests are equal views, a change the request
    reads (a port) makes them differ, one it does not read (sessionAffinity) does not."""
    obj = svc({"lbd.io/address-pool": "gold"})
    view, again = observe_service(obj), observe_service(svc({"lbd.io/address-pool": "gold"}))
    assert view == again  # neither has read its request yet: both are read to compare
    first = view.request
    assert first is view.request  # read once, then kept
    assert isinstance(first, ServiceRequest) and first.pool == "gold"
    assert "pool='gold'" in repr(view)
    other_port = svc({"lbd.io/address-pool": "gold"}, ports=[{"port": 81, "protocol": "TCP"}])
    assert observe_service(other_port) != view
    assert observe_service(svc({"lbd.io/address-pool": "gold"}, sessionAffinity="None")) == view
    bad = observe_service(svc(ipFamilies=["IPv5"]))
    assert bad.request == FieldError("spec.ipFamilies[0]", "'IPv5' is not IPv4 or IPv6")
    assert bad != view


# -- the controller and the speaker read a Service the same way (issue 13) ---------------

PREFIX_CASES = [
    pytest.param({f"{p}ip-allocated-from-pool": "x"}, id=f"{p} only")
    for p in ("lbd.io/", "metallb.io/", "metallb.universe.tf/")
] + [
    pytest.param(
        {
            "metallb.universe.tf/ip-allocated-from-pool": "old",
            "metallb.io/ip-allocated-from-pool": "new",
        },
        id="metallb.io beats metallb.universe.tf",
    ),
    pytest.param(
        {"metallb.io/ip-allocated-from-pool": "m", "lbd.io/ip-allocated-from-pool": "l"},
        id="lbd.io beats metallb.io",
    ),
    pytest.param({"lbd.io/ip-allocated-from-pool": ""}, id="empty means not recorded"),
    pytest.param({}, id="none"),
]


@pytest.mark.parametrize("annotations", PREFIX_CASES)
def test_controller_and_speaker_agree_on_the_pool_under_every_prefix(annotations):
    obj = svc(annotations)
    obj["metadata"]["resourceVersion"] = "7"
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "198.18.100.7"}, {"ip": "junk"}]}}
    controller_view = observe_service(obj)  # what the controller restores from
    speaker_pool = speaker_convert.service_pool(obj)
    speaker_vips = speaker_convert.service_vips(obj)
    assert controller_view.pool_hint == speaker_pool
    assert controller_view.addresses == speaker_vips == ("198.18.100.7",)
    election = speaker_convert.service_view(obj, endpoints=NO_ENDPOINTS)
    assert election.pool == controller_view.pool_hint
    assert election.vips == controller_view.addresses


@pytest.mark.parametrize("prefix", ["lbd.io/", "metallb.io/", "metallb.universe.tf/"])
@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("address-pool", "gold", "pool"),
        ("allow-shared-ip", "k", "sharing_key"),
        ("loadBalancerIPs", "198.18.100.9", "requested"),
    ],
)
def test_every_request_annotation_is_read_under_every_prefix(prefix, name, value, field):
    req = request(svc({prefix + name: value}))
    got = getattr(req, field)
    assert got == ((value,) if field == "requested" else value)

"""Annotation findings: read by the Service reader, presented once per change."""

from __future__ import annotations

from lbd.controller.annotations import annotation_effects, finding_message
from lbd.controller.effects import Emit
from lbd.k8s.service import FindingKind, annotation_findings, observe_service


def messages(annotations: dict[str, str]) -> list[tuple[str, str]]:
    return [(f.kind.value, finding_message(f)) for f in annotation_findings(annotations)]


def test_an_unknown_lbd_key_names_the_nearest_known_one() -> None:
    assert messages({"lbd.io/adress-pool": "web"}) == [
        (
            "UnknownAnnotation",
            "lbd.io/adress-pool is not an lbd annotation and is ignored; "
            "did you mean lbd.io/address-pool?",
        )
    ]
    assert messages({"lbd.io/loadbalancerIPs": "198.18.100.1"})[0][1].endswith(
        "did you mean lbd.io/loadBalancerIPs?"
    )
    far = messages({"lbd.io/zzz": "1"})
    assert far == [("UnknownAnnotation", "lbd.io/zzz is not an lbd annotation and is ignored")]


def test_known_keys_and_foreign_prefixes_say_nothing() -> None:
    quiet = {
        "lbd.io/address-pool": "web",
        "lbd.io/allow-shared-ip": "k",
        "lbd.io/loadBalancerIPs": "198.18.100.1",
        "lbd.io/ip-allocated-from-pool": "web",
        "lbd.io/sharing-cross-namespace": "a",
        "metallb.io/address-pool": "web",
        "metallb.io/ip-allocated-from-pool": "old",  # written by MetalLB: not a conflict
        "example.com/lbd.io/x": "y",
    }
    assert annotation_findings(quiet) == ()


def test_disagreeing_prefixes_say_which_wins() -> None:
    got = messages({"lbd.io/address-pool": "web", "metallb.io/address-pool": "old"})
    assert got == [
        (
            "ConflictingAnnotations",
            "lbd.io/address-pool='web' wins over metallb.io/address-pool='old' "
            "(precedence: lbd.io/, then metallb.io/, then metallb.universe.tf/)",
        )
    ]
    # the same IPs written differently agree
    same = {
        "lbd.io/loadBalancerIPs": "198.18.100.1,198.18.100.2",
        "metallb.io/loadBalancerIPs": "198.18.100.2, 198.18.100.1",
    }
    assert annotation_findings(same) == ()
    # metallb.io/ over the deprecated prefix, with the deprecation noted too
    kinds = [
        f.kind
        for f in annotation_findings(
            {"metallb.io/allow-shared-ip": "a", "metallb.universe.tf/allow-shared-ip": "b"}
        )
    ]
    assert sorted(kinds) == [FindingKind.CONFLICT, FindingKind.DEPRECATED]


def test_the_deprecated_prefix_gets_its_lbd_name() -> None:
    assert messages({"metallb.universe.tf/address-pool": "web"}) == [
        (
            "DeprecatedAnnotation",
            "metallb.universe.tf/address-pool uses MetalLB's deprecated prefix (still read); "
            "its lbd name is lbd.io/address-pool",
        )
    ]


def test_the_view_carries_them() -> None:
    svc = {
        "metadata": {"name": "s", "namespace": "d", "annotations": {"lbd.io/adress-pool": "x"}},
        "spec": {"type": "LoadBalancer"},
    }
    assert [f.key for f in observe_service(svc).findings] == ["lbd.io/adress-pool"]


def test_events_once_per_change() -> None:
    typo = annotation_findings({"lbd.io/adress-pool": "x"})
    old = annotation_findings({"metallb.universe.tf/address-pool": "x"})
    first = annotation_effects("d/s", (), typo)
    assert [e for e in first if isinstance(e, Emit)] == [
        Emit(True, "UnknownAnnotation", finding_message(typo[0]))
    ]
    assert annotation_effects("d/s", typo, typo) == ()
    # a second finding: only it is news; the deprecation is a Normal Event without a log line
    both = tuple(sorted(typo + old))
    assert annotation_effects("d/s", typo, both) == (
        Emit(False, "DeprecatedAnnotation", finding_message(old[0])),
    )
    assert annotation_effects("d/s", both, ()) == ()

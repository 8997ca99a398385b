"""Read what ``lbd migrate from-metallb --from-cluster`` converts: MetalLB's objects, and the
Services and Namespaces its ``--check`` needs. One paged list per kind; nothing is written.

MetalLB's kinds the cluster does not serve (its CRDs are not installed, or an older MetalLB
lacks that kind) are skipped and named, so the caller can say so; any other API error is raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lbd.k8s.client import NAMESPACES, SERVICES, ApiError, JsonDict, Kube, Resource
from lbd.k8s.listing import list_pages

# Every kind of MetalLB's configuration, newest served version first (BGPPeer has two).
METALLB_KINDS: tuple[tuple[Resource, ...], ...] = tuple(
    tuple(Resource("metallb.io", v, plural, kind, True) for v in versions)
    for plural, kind, versions in (
        ("ipaddresspools", "IPAddressPool", ("v1beta1",)),
        ("l2advertisements", "L2Advertisement", ("v1beta1",)),
        ("bgpadvertisements", "BGPAdvertisement", ("v1beta1",)),
        ("bgppeers", "BGPPeer", ("v1beta2", "v1beta1")),
        ("communities", "Community", ("v1beta1",)),
        ("bfdprofiles", "BFDProfile", ("v1beta1",)),
    )
)


@dataclass
class ClusterObjects:
    """MetalLB's objects, the cluster's Services and Namespaces, and the kinds not served."""

    metallb: list[JsonDict] = field(default_factory=list)
    services: list[JsonDict] = field(default_factory=list)
    namespaces: list[JsonDict] = field(default_factory=list)
    not_served: list[str] = field(default_factory=list)


def list_all(kube: Kube, resource: Resource, namespace: str | None = None) -> list[JsonDict]:
    """Every object of ``resource`` (paged), each with its ``apiVersion`` and ``kind`` set
    (list items of built-in kinds come without them)."""
    return list_pages(kube, resource, namespace)[0]


def read_cluster(
    kube: Kube, namespace: str | None = None, *, services: bool = False
) -> ClusterObjects:
    """MetalLB's objects (in ``namespace``, or all namespaces), and with ``services`` the
    Services and Namespaces of the whole cluster."""
    out = ClusterObjects()
    for versions in METALLB_KINDS:
        for resource in versions:
            try:
                out.metallb += list_all(kube, resource, namespace)
                break
            except ApiError as exc:
                if exc.status != 404:
                    raise
        else:
            out.not_served.append(versions[0].kind)
    if services:
        out.services = list_all(kube, SERVICES)
        out.namespaces = list_all(kube, NAMESPACES)
    return out

"""Reading one consistent-enough picture of a cluster for ``lbd status`` and ``lbd doctor``.

API::

    snap = read_snapshot(kube, deep=False)    # status: pools, Services, L2 statuses, speakers,
                                              # Warning Events
    snap = read_snapshot(kube, deep=True)     # doctor: also advertisements, Nodes, workloads,
                                              # CRDs, Leases, kube-proxy's and Cilium's config

Each kind is read with ONE paged list (:func:`lbd.k8s.listing.list_pages`, 500 per page), never
one request per object, so the tools answer in about a second on 10 000 Services
(tests/bench/bench_status.py). Every object goes through its kind's reader here; the tools in
:mod:`lbd.tools` decide from the frozen views only.

A kind the server does not serve (a cluster without lbd's CRDs, before install; no
ServiceCIDR API on an older server) or that the user may not list is recorded in
``snap.missing`` with the reason, instead of failing the whole read: ``lbd doctor`` runs before
install, and ``lbd status`` still shows what it can read.
"""

from __future__ import annotations

from lbd.k8s.client import (
    EVENTS,
    IPADDRESSPOOLS,
    L2ADVERTISEMENTS,
    LEASES,
    NODES,
    SERVICEL2STATUSES,
    SERVICES,
    ApiError,
    JsonDict,
    Kube,
    Resource,
)
from lbd.k8s.configmaps import cilium_l2_announcements, observe_kube_proxy
from lbd.k8s.event_view import observe_event
from lbd.k8s.l2status import observe_l2status
from lbd.k8s.listing import list_pages
from lbd.k8s.meta import meta_field
from lbd.k8s.node import observe_node
from lbd.k8s.pool import observe_pool
from lbd.k8s.service import observe_service
from lbd.k8s.snapshot import Snapshot
from lbd.k8s.workloads import (
    crd_group_kind,
    observe_lease,
    observe_pod,
    observe_workload,
)

PODS = Resource("", "v1", "pods", "Pod", True)
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap", True)
DAEMONSETS = Resource("apps", "v1", "daemonsets", "DaemonSet", True)
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", True)
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CRD", False)
SERVICECIDRS = (
    Resource("networking.k8s.io", "v1", "servicecidrs", "ServiceCIDR", False),
    Resource("networking.k8s.io", "v1beta1", "servicecidrs", "ServiceCIDR", False),
)
SPEAKER_SELECTOR = "app.kubernetes.io/name=lbd,app.kubernetes.io/component=speaker"
"""The speaker DaemonSet's pod labels (deploy/base/speaker.yaml and the chart)."""
KUBE_SYSTEM = "kube-system"


def _list(
    kube: Kube,
    resource: Resource,
    missing: dict[str, str],
    *,
    namespace: str | None = None,
    selector: str | None = None,
    fields: str | None = None,
) -> list[JsonDict]:
    extra = {k: v for k, v in (("labelSelector", selector), ("fieldSelector", fields)) if v}
    try:
        return list_pages(kube, resource, namespace, extra)[0]
    except ApiError as exc:
        if exc.status in (403, 404):
            missing[resource.kind] = "not served" if exc.status == 404 else "forbidden"
            return []
        raise


def _get(kube: Kube, resource: Resource, namespace: str, name: str) -> JsonDict | None:
    try:
        return kube.get(resource.path(namespace=namespace, name=name))
    except ApiError as exc:
        if exc.status in (403, 404):
            return None
        raise


def read_snapshot(kube: Kube, *, deep: bool = False) -> Snapshot:
    """Read the cluster (see the module docstring); raises :class:`ApiError` only when the
    server cannot be reached or refuses the core kinds."""
    missing: dict[str, str] = {}
    pools = tuple(observe_pool(o) for o in _list(kube, IPADDRESSPOOLS, missing))
    all_services = [observe_service(o) for o in _list(kube, SERVICES, missing)]
    l2 = tuple(observe_l2status(o) for o in _list(kube, SERVICEL2STATUSES, missing))
    speakers = tuple(observe_pod(o) for o in _list(kube, PODS, missing, selector=SPEAKER_SELECTOR))
    events = tuple(observe_event(o) for o in _list(kube, EVENTS, missing, fields="type=Warning"))
    snap = Snapshot(
        pools=pools,
        services=tuple(s for s in all_services if s.load_balancer),
        l2statuses=l2,
        speakers=speakers,
        events=events,
        missing=missing,
    )
    if not deep:
        return snap
    cluster_ips = tuple(ip for s in all_services for ip in s.cluster_ips)
    cidrs: list[str] = []
    for resource in SERVICECIDRS:
        try:
            items = list_pages(kube, resource)[0]
        except ApiError as exc:
            if exc.status in (403, 404):
                continue
            raise
        cidrs = [str(c) for o in items for c in (o.get("spec") or {}).get("cidrs") or []]
        break
    proxy_cm = _get(kube, CONFIGMAPS, KUBE_SYSTEM, "kube-proxy")
    cilium_cm = _get(kube, CONFIGMAPS, KUBE_SYSTEM, "cilium-config")
    return Snapshot(
        pools=pools,
        services=snap.services,
        l2statuses=l2,
        speakers=speakers,
        events=events,
        advertisements=tuple(
            (meta_field(o, "name"), spec if isinstance(spec := o.get("spec"), dict) else None)
            for o in _list(kube, L2ADVERTISEMENTS, missing)
        ),
        nodes=tuple(observe_node(o) for o in _list(kube, NODES, missing)),
        workloads=tuple(
            observe_workload(o) for r in (DAEMONSETS, DEPLOYMENTS) for o in _list(kube, r, missing)
        ),
        crds=tuple(crd_group_kind(o) for o in _list(kube, CRDS, missing)),
        leases=tuple(observe_lease(o) for o in _list(kube, LEASES, missing)),
        cluster_ips=cluster_ips,
        service_cidrs=tuple(cidrs),
        kube_proxy=observe_kube_proxy(proxy_cm) if proxy_cm is not None else None,
        cilium_l2=cilium_l2_announcements(cilium_cm) if cilium_cm is not None else False,
        missing=missing,
    )

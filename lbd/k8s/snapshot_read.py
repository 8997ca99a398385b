"""Reading one consistent-enough picture of a cluster for ``lbd status`` and ``lbd doctor``.

API::

    snap = read_snapshot(kube, deep=False)    # status: pools, Services, L2 statuses, speakers,
                                              # Warning Events
    snap = read_snapshot(kube, deep=True)     # doctor: also advertisements, Nodes, workloads,
                                              # CRDs, Leases, kube-proxy's and Cilium's config

Each kind is read with ONE list (:func:`lbd.k8s.listing.list_pages`, unpaged:
:data:`lbd.k8s.listing.LIST_PAGE` says why), never one request per object, and the kinds are
listed at once (timed on 10 000 Services by tests/bench/bench_status.py; figures in
docs/OPERATIONS.md).
Every object goes through its kind's reader here; the tools in :mod:`lbd.tools` decide from the
frozen views only.

A kind the server does not serve (a cluster without lbd's CRDs, before install; no
ServiceCIDR API on an older server) or that the user may not list is recorded in
``snap.missing`` with the reason, instead of failing the whole read: ``lbd doctor`` runs before
install, and ``lbd status`` still shows what it can read.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TypeVar

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
from lbd.k8s.decode import decode_lean_list
from lbd.k8s.event_view import observe_event
from lbd.k8s.l2status import observe_l2status
from lbd.k8s.listing import Decoder, list_pages
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


LEAN: dict[Resource, Decoder] = {SERVICES: decode_lean_list, SERVICEL2STATUSES: decode_lean_list}
"""The big kinds, decoded without ``metadata.managedFields`` (:mod:`lbd.k8s.decode`: half the
decoding time; no reader looks at it)."""
READERS = 6
"""Lists in flight at once: every kind of ``lbd status`` together (see :func:`read_snapshot`)."""

T = TypeVar("T")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while lists are decoded and read (and, in
    ``lbd status``, while the report is built from them).

    Decoding 10 000 Services makes about a million dicts and lists, each a GC-tracked object:
    the collector's passes over the growing heap took a third of the read (3.9 s -> 2.8 s
    measured with tests/bench/bench_status.py's cluster, real kube-apiserver). Nothing read
    here forms a cycle (JSON is a tree, the views are frozen values), so reference counting
    frees all of it as before; the collector resumes, as it was, when the read ends.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    decode = LEAN.get(resource)
    try:
        return list_pages(kube, resource, namespace, extra, decode=decode)[0]
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


def _service_cidrs(kube: Kube) -> tuple[str, ...]:
    """The ServiceCIDR API's ranges (GA first, then beta); () when neither is served."""
    for resource in SERVICECIDRS:
        try:
            items = list_pages(kube, resource)[0]
        except ApiError as exc:
            if exc.status in (403, 404):
                continue
            raise
        return tuple(str(c) for o in items for c in (o.get("spec") or {}).get("cidrs") or [])
    return ()


def read_snapshot(kube: Kube, *, deep: bool = False) -> Snapshot:
    """Read the cluster (see the module docstring); raises :class:`ApiError` only when the
    server cannot be reached or refuses the core kinds.

    The kinds are listed at once (:data:`READERS` threads over the client's connection pool),
    the big ones first: while one thread reads the Services, the server is still encoding the
    ServiceL2Statuses, so the read takes about the slowest list rather than the sum of every
    list's round trips. Each kind is one list, read and observed in order; the views do not
    depend on which list ended first.
    """
    missing: dict[str, str] = {}
    with gc_paused(), ThreadPoolExecutor(READERS, thread_name_prefix="lbd-read") as pool:

        def kind(
            resource: Resource, observe: Callable[[JsonDict], T], **how: str
        ) -> Future[tuple[T, ...]]:
            return pool.submit(
                lambda: tuple(observe(o) for o in _list(kube, resource, missing, **how))
            )

        services = kind(SERVICES, observe_service)
        l2 = kind(SERVICEL2STATUSES, observe_l2status)
        pools = kind(IPADDRESSPOOLS, observe_pool)
        speakers = kind(PODS, observe_pod, selector=SPEAKER_SELECTOR)
        events = kind(EVENTS, observe_event, fields="type=Warning")
        if deep:
            nodes = kind(NODES, observe_node)
            workloads = [kind(r, observe_workload) for r in (DAEMONSETS, DEPLOYMENTS)]
            crds = kind(CRDS, crd_group_kind)
            leases = kind(LEASES, observe_lease)
            advertisements = kind(L2ADVERTISEMENTS, _advertisement)
            cidrs = pool.submit(_service_cidrs, kube)
            proxy_cm = pool.submit(_get, kube, CONFIGMAPS, KUBE_SYSTEM, "kube-proxy")
            cilium_cm = pool.submit(_get, kube, CONFIGMAPS, KUBE_SYSTEM, "cilium-config")
        all_services = services.result()
        snap = Snapshot(
            pools=pools.result(),
            services=tuple(s for s in all_services if s.load_balancer),
            l2statuses=l2.result(),
            speakers=speakers.result(),
            events=events.result(),
            missing=missing,
        )
        if not deep:
            return snap
        proxy, cilium = proxy_cm.result(), cilium_cm.result()
        return replace(
            snap,
            advertisements=advertisements.result(),
            nodes=nodes.result(),
            workloads=tuple(w for f in workloads for w in f.result()),
            crds=crds.result(),
            leases=leases.result(),
            cluster_ips=tuple(ip for s in all_services for ip in s.cluster_ips),
            service_cidrs=cidrs.result(),
            kube_proxy=observe_kube_proxy(proxy) if proxy is not None else None,
            cilium_l2=cilium_l2_announcements(cilium) if cilium is not None else False,
        )


def _advertisement(obj: JsonDict) -> tuple[str, JsonDict | None]:
    """(name, spec) of an L2Advertisement (:func:`lbd.core.config.build_config` validates)."""
    spec = obj.get("spec")
    return meta_field(obj, "name"), spec if isinstance(spec, dict) else None

"""The cluster picture ``lbd status`` and ``lbd doctor`` decide from: a frozen
:class:`Snapshot` of typed views. It imports no API client, so the tools' pure modules
(:mod:`lbd.tools.status`, :mod:`lbd.tools.doctor`) stay free of I/O (an import-linter contract);
:mod:`lbd.k8s.snapshot_read` fills it from the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lbd.k8s.configmaps import KubeProxyConfig
from lbd.k8s.event_view import ObservedEvent
from lbd.k8s.l2status import ObservedL2Status
from lbd.k8s.node import ObservedNode
from lbd.k8s.pool import ObservedPool
from lbd.k8s.service import ObservedService
from lbd.k8s.workloads import ObservedLease, ObservedPod, ObservedWorkload


@dataclass(frozen=True)
class Snapshot:
    """What the tools read. Services are the LoadBalancer ones; ``cluster_ips`` all of them."""

    pools: tuple[ObservedPool, ...] = ()
    services: tuple[ObservedService, ...] = ()
    l2statuses: tuple[ObservedL2Status, ...] = ()
    speakers: tuple[ObservedPod, ...] = ()
    events: tuple[ObservedEvent, ...] = ()
    advertisements: tuple[tuple[str, Mapping[str, Any] | None], ...] = ()
    """(name, spec) of each L2Advertisement: :func:`lbd.core.config.build_config` validates."""
    nodes: tuple[ObservedNode, ...] = ()
    workloads: tuple[ObservedWorkload, ...] = ()
    crds: tuple[tuple[str, str], ...] = ()
    """(group, plural) of every CRD."""
    leases: tuple[ObservedLease, ...] = ()
    cluster_ips: tuple[str, ...] = ()
    service_cidrs: tuple[str, ...] = ()
    """From the ServiceCIDR API when served (Kubernetes 1.31+); else empty."""
    kube_proxy: KubeProxyConfig | None = None
    """None: no kube-system/kube-proxy ConfigMap (no kube-proxy, or not kubeadm's layout)."""
    cilium_l2: bool = False
    missing: dict[str, str] = field(default_factory=dict, hash=False)
    """Kinds that could not be read -> why (``IPAddressPool: not served``)."""

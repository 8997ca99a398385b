"""The speaker's Kubernetes view: five informers and a snapshot the reconcile loop decides on.

Nodes, Services, EndpointSlices, IPAddressPools and L2Advertisements are each listed and watched
once (:class:`~lbd.k8s.informer.Informer`); every change that can move a VIP calls ``on_change``
(the reconcile loop's ``trigger``). :meth:`SpeakerCache.snapshot` turns the stores into a
:class:`~lbd.speaker.plan.Snapshot`-shaped value: raw Node and Service objects, endpoint
summaries per Service, pool labels, validated advertisements.

Design decisions:

- While the API server is unreachable the informers keep their last view (nothing is deleted
  because a list failed), so the speaker keeps announcing from it; membership, which decides
  liveness, does not depend on the API at all.
- Kubelets rewrite every Node's status every few seconds (heartbeat timestamps). Those updates
  are filtered out by comparing only the fields the election reads
  (:func:`lbd.k8s.node.node_fingerprint`), so they cost no pass.
- L2Advertisements are read by :func:`lbd.k8s.l2advertisement.observe_l2advertisement`, the
  reader the controller uses for their status, so both agree on which ones are valid.
- An L2Advertisement that fails validation is left out (announcing less is safe; announcing
  from a node the user excluded is not) and logged once per resourceVersion.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from lbd.core.model import Advertisement
from lbd.k8s.client import (
    ENDPOINTSLICES,
    IPADDRESSPOOLS,
    L2ADVERTISEMENTS,
    NODES,
    SERVICES,
    JsonDict,
    Kube,
)
from lbd.k8s.informer import EventType, Informer
from lbd.k8s.l2advertisement import observe_l2advertisement
from lbd.k8s.node import node_fingerprint
from lbd.k8s.speaker_convert import (
    ClusterView,
    EndpointSummary,
    labels_of,
    slice_service_key,
    summarize_endpoints,
)

log = logging.getLogger(__name__)

BY_SERVICE = "service"


def _slice_index(obj: JsonDict) -> list[str]:
    key = slice_service_key(obj)
    return [key] if key else []


class SpeakerCache:
    """Informers for everything the speaker reads, and a snapshot of them."""

    def __init__(self, kube: Kube, *, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        self.nodes = Informer(kube, NODES, name="nodes")
        self.services = Informer(kube, SERVICES, name="services")
        self.slices = Informer(
            kube, ENDPOINTSLICES, name="endpointslices", indexers={BY_SERVICE: _slice_index}
        )
        self.pools = Informer(kube, IPADDRESSPOOLS, name="ipaddresspools")
        self.ads = Informer(kube, L2ADVERTISEMENTS, name="l2advertisements")
        self.informers = (self.nodes, self.services, self.slices, self.pools, self.ads)
        self.nodes.add_handler(self._node_event)
        for inf in self.informers[1:]:
            inf.add_handler(lambda _t, _o, _n: self.on_change())
        self._ads_lock = threading.Lock()
        self._ads_cache: dict[tuple[str, str], Advertisement | None] = {}

    def _node_event(self, type_: EventType, old: JsonDict | None, new: JsonDict | None) -> None:
        if type_ is EventType.MODIFIED and node_fingerprint(old) == node_fingerprint(new):
            return
        self.on_change()

    def on_rewind(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` when any informer found the API rewound and relisted (see
        :class:`~lbd.k8s.informer.Informer`): what was written from the lost history may be
        gone or older than it was."""
        for inf in self.informers:
            inf.on_rewind(fn)

    def start(self) -> None:
        for inf in self.informers:
            inf.start()

    def stop(self, timeout: float = 1.0) -> None:
        for inf in self.informers:
            inf.stop(timeout)

    def wait_for_sync(self, timeout: float) -> bool:
        return all(inf.wait_for_sync(timeout) for inf in self.informers)

    def has_synced(self) -> bool:
        return all(inf.has_synced() for inf in self.informers)

    def advertisements(self) -> list[Advertisement]:
        result: list[Advertisement] = []
        with self._ads_lock:
            seen: dict[tuple[str, str], Advertisement | None] = {}
            for obj in self.ads.store.list():
                meta = obj.get("metadata") or {}
                ident = (str(meta.get("name")), str(meta.get("resourceVersion")))
                if ident not in self._ads_cache:
                    parsed = observe_l2advertisement(obj).parsed
                    if isinstance(parsed, Advertisement):
                        self._ads_cache[ident] = parsed
                    else:
                        self._ads_cache[ident] = None
                        log.warning(
                            "L2Advertisement ignored",
                            extra={"key": ident[0], "reason": "; ".join(map(str, parsed))},
                        )
                seen[ident] = self._ads_cache[ident]
            self._ads_cache = seen
        result = [ad for ad in seen.values() if ad is not None]
        return sorted(result, key=lambda ad: ad.name)

    def view(self) -> ClusterView:
        """The current (or last known) view; cheap enough to take on every reconcile pass."""
        services = self.services.store.list()
        endpoints: dict[str, EndpointSummary] = {}
        for svc in services:
            meta = svc.get("metadata") or {}
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            endpoints[key] = summarize_endpoints(self.slices.store.by_index(BY_SERVICE, key))
        pool_labels = {
            str((p.get("metadata") or {}).get("name")): labels_of(p)
            for p in self.pools.store.list()
        }
        return ClusterView(
            nodes=self.nodes.store.list(),
            services=services,
            endpoints=endpoints,
            pool_labels=pool_labels,
            advertisements=self.advertisements(),
        )

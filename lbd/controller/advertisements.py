"""The controller's part in L2Advertisements: their ``Ready`` condition (issue 14, point 4).

API::

    ads = Advertisements(kube, pools=controller.pools, enqueue=fn(name), watch_timeout=300)
    ads.informers                      # Nodes and L2Advertisements, started with the others
    ads.caches                         # their ViewCaches (refreshed at takeover)
    ads.decide(name) -> (view, AdReady) | None
    ads.pool_changed(old, new)         # the controller's pool handler calls this
    ads.names()                        # every L2Advertisement (enqueued at takeover)

Who decides: :func:`lbd.core.adstatus.advertisement_ready`, from the frozen views of the
L2Advertisement (:mod:`lbd.k8s.l2advertisement`, the speaker's reader too), the pools and the
Nodes' labels. Who writes: the controller, only while leading, only when the condition differs
from what the object shows (:class:`~lbd.k8s.l2advertisement.AdvertisementStatusWriter`), so a
steady cluster costs no write. What users see: :mod:`lbd.controller.adeffects`.

When it is decided again: when the L2Advertisement changes, when a pool appears, goes or changes
its labels, and when a Node appears, goes or changes its labels (a kubelet's status updates do
not wake anything). Every L2Advertisement is decided again then: there are few of them.
"""

from __future__ import annotations

from collections.abc import Callable

from lbd.core.adstatus import AdReady, advertisement_ready
from lbd.k8s.cache import ViewCache
from lbd.k8s.client import L2ADVERTISEMENTS, NODES, Kube
from lbd.k8s.informer import Informer
from lbd.k8s.l2advertisement import ObservedAdvertisement, observe_l2advertisement
from lbd.k8s.node import ObservedNode, observe_node
from lbd.k8s.pool import ObservedPool


class Advertisements:
    """Views of L2Advertisements and Nodes, and the decision of each one's Ready condition."""

    def __init__(
        self,
        kube: Kube,
        *,
        pools: ViewCache[ObservedPool],
        enqueue: Callable[[str], None],
        watch_timeout: int = 300,
    ) -> None:
        self._pools = pools
        self._enqueue = enqueue
        self.ads: ViewCache[ObservedAdvertisement] = ViewCache(
            L2ADVERTISEMENTS, observe_l2advertisement, on_change=self._ad_changed
        )
        self.nodes: ViewCache[ObservedNode] = ViewCache(
            NODES, observe_node, on_change=self._node_changed
        )
        self.informers = (
            Informer(kube, NODES, watch_timeout=watch_timeout),
            Informer(kube, L2ADVERTISEMENTS, watch_timeout=watch_timeout),
        )
        self.informers[0].add_handler(self.nodes.on_event)
        self.informers[1].add_handler(self.ads.on_event)
        self.caches = (self.nodes, self.ads)

    def names(self) -> list[str]:
        return sorted(self.ads.keys())

    def decide(self, name: str) -> tuple[ObservedAdvertisement, AdReady] | None:
        """The L2Advertisement's view and the condition it should show (None: it is gone)."""
        view = self.ads.get(name)
        if view is None:
            return None
        after = advertisement_ready(
            view.parsed,
            pools={p.name: p.labels for p in self._pools.values()},
            nodes=[n.labels for n in self.nodes.values()],
        )
        return view, after

    def enqueue_all(self) -> None:
        for name in self.names():
            self._enqueue(name)

    def _ad_changed(
        self, old: ObservedAdvertisement | None, new: ObservedAdvertisement | None
    ) -> None:
        if new is not None:
            self._enqueue(new.name)

    def _node_changed(self, old: ObservedNode | None, new: ObservedNode | None) -> None:
        if old is None or new is None or old.labels != new.labels:
            self.enqueue_all()

    def pool_changed(self, old: ObservedPool | None, new: ObservedPool | None) -> None:
        if old is None or new is None or old.labels != new.labels:
            self.enqueue_all()

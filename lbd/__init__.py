"""lbd: a bare-metal LoadBalancer for Kubernetes.

Two programs share this package: the *controller* assigns addresses from IPAddressPools to
LoadBalancer Services, and the *speaker* makes those addresses reachable on the wire (ARP/NDP)
from exactly one healthy node per address. See ``docs/ARCHITECTURE.md`` for the
layering: ``lbd.core`` is pure, ``lbd.k8s`` and ``lbd.net`` are the only adapters.
"""

__version__ = "0.1.0"

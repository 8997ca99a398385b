"""The real control plane: etcd, kube-apiserver and kube-controller-manager from their Go
modules (``make k8s``), for the tests and the lab.

- :mod:`.binaries`: where the binaries are (``KUBEBUILDER_ASSETS``, envtest's convention, or the
  folder ``make k8s`` fills), and what to say when they are not there;
- :mod:`.certs`: the per-run CA, serving, client and service-account keys;
- :mod:`.plane`: :class:`ControlPlane`, the processes, readiness, admin client, TokenRequest,
  server-side apply of manifests, clean stop;
- :mod:`.proxy`: :class:`FaultProxy`, the stand-in's faults in front of a real kube-apiserver;
- :mod:`.endpoint`: :class:`RealApiServer` (the stand-in's test-facing calls on a real control
  plane) and :class:`Sweeper` (a clean cluster for each test on a shared control plane).
"""

from lbd.lab.control_plane.binaries import Binaries, BinariesMissingError, find_binaries
from lbd.lab.control_plane.endpoint import RealApiServer, Sweeper
from lbd.lab.control_plane.plane import ControlPlane, ControlPlaneError
from lbd.lab.control_plane.proxy import FaultProxy

__all__ = [
    "Binaries",
    "BinariesMissingError",
    "ControlPlane",
    "ControlPlaneError",
    "FaultProxy",
    "RealApiServer",
    "Sweeper",
    "find_binaries",
]

"""ServiceL2Status objects, read: which node announces a Service, on which interfaces.

API::

    view = observe_l2status(obj)    # ObservedL2Status: service key, node, vips, interfaces, since

The speaker writes these (:mod:`lbd.k8s.speaker_status`); the operator tools read them. The
Service is named by ``status.serviceNamespace``/``serviceName``, falling back to the object's own
namespace and name (the speaker names the object after its Service), so an object whose status
is not written yet still says whose it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lbd.core.model import ServiceKey, service_key
from lbd.k8s.meta import ObjectRef


@dataclass(frozen=True)
class ObservedL2Status:
    """One ServiceL2Status as read."""

    ref: ObjectRef
    service: ServiceKey
    node: str
    """``status.node`` ("" while the status is not written yet)."""
    vips: tuple[str, ...]
    interfaces: tuple[str, ...]
    since: str


def observe_l2status(obj: Mapping[str, Any]) -> ObservedL2Status:
    ref = ObjectRef.of(obj)
    status = obj.get("status")
    status = status if isinstance(status, dict) else {}
    ifaces = status.get("interfaces")
    vips = status.get("vips")
    return ObservedL2Status(
        ref=ref,
        service=service_key(
            str(status.get("serviceNamespace") or ref.namespace),
            str(status.get("serviceName") or ref.name),
        ),
        node=str(status.get("node") or ""),
        vips=tuple(str(v) for v in vips) if isinstance(vips, list) else (),
        interfaces=tuple(
            str(i.get("name")) for i in ifaces if isinstance(i, dict) and i.get("name")
        )
        if isinstance(ifaces, list)
        else (),
        since=str(status.get("since") or ""),
    )

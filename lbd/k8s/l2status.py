"""ServiceL2Status as the controller and the operator tools read it: the one reader, into a
frozen view.

API::

    view = observe_l2status(obj)    # ObservedL2Status
    view.key, view.node, view.announced, view.reason, view.message, view.vips

The speakers write these objects (:mod:`lbd.k8s.speaker_status`): the owner of a Service when it
announces it, or the Service's reporter when no node may (docs/SPEAKER.md, "Announcement
status"). The controller turns them into the Service's ``lbd.io/Announced`` condition
(:mod:`lbd.controller.announce`). An object written by a speaker that predates the
``announced`` field announces whenever it names a node (the field's default, docs/API.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lbd.core.model import ServiceKey, service_key
from lbd.k8s.frozen import quick_init
from lbd.k8s.meta import ObjectRef

ANNOUNCED_REASON = "Announced"


@quick_init  # built for every listed object: lbd.k8s.frozen
@dataclass(frozen=True)
class ObservedL2Status:
    """One ServiceL2Status: who announces the Service of the same name, or why nobody does."""

    ref: ObjectRef
    key: ServiceKey
    """The Service's: ``status.serviceNamespace``/``serviceName``, else the object's own
    namespace and name (the speaker names it after its Service), so an object whose status is
    not written yet still says whose it is."""
    node: str  # the announcing node, or the reporting one; "" before the status is written
    announced: bool
    reason: str
    message: str
    interfaces: tuple[str, ...]
    vips: tuple[str, ...]
    since: str = ""

    @property
    def service(self) -> ServiceKey:
        return self.key

    @property
    def written(self) -> bool:
        """The speaker has written the status (a create carries none: speaker_status)."""
        return bool(self.node)


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple([v for v in value if isinstance(v, str)])


def _interfaces(value: Any) -> tuple[str, ...]:
    # ``dict | Mapping``: a decoded object is a dict, recognised before the slower ABC check.
    if not isinstance(value, list):
        return ()
    return tuple(
        [
            str(i["name"])
            for i in value
            if isinstance(i, dict | Mapping) and isinstance(i.get("name"), str)
        ]
    )


def observe_l2status(obj: Mapping[str, Any]) -> ObservedL2Status:
    """Read one ServiceL2Status (never raises on what a speaker or a user wrote)."""
    ref = ObjectRef.of(obj)
    raw = obj.get("status")
    status: Mapping[str, Any] = raw if isinstance(raw, dict | Mapping) else {}
    get = status.get
    node = get("node")
    node = node if isinstance(node, str) else ""
    announced = get("announced")
    announced = bool(node) if not isinstance(announced, bool) else announced and bool(node)
    reason = get("reason")
    message = get("message")
    return ObservedL2Status(
        ref=ref,
        key=service_key(
            str(get("serviceNamespace") or ref.namespace), str(get("serviceName") or ref.name)
        ),
        node=node,
        announced=announced,
        reason=reason if isinstance(reason, str) and reason else ANNOUNCED_REASON * announced,
        message=message if isinstance(message, str) else "",
        interfaces=_interfaces(get("interfaces")),
        vips=_strings(get("vips")),
        since=str(get("since") or ""),
    )

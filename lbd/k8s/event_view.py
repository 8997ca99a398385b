"""core/v1 Events, read: what the operator tools show of them (``lbd status`` conflicts).

The writer is :mod:`lbd.k8s.events`; this is the one reader. An Event's time is its
``lastTimestamp``, else ``eventTime`` (events.k8s.io writers), else its creation time, as
``kubectl get events`` sorts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lbd.k8s.meta import ObjectRef, meta_field


@dataclass(frozen=True)
class ObservedEvent:
    ref: ObjectRef
    involved: ObjectRef
    """The object the Event is about."""
    type: str
    reason: str
    message: str
    count: int
    last_seen: str
    """RFC 3339 (see the module docstring)."""
    source: str
    """``reportingComponent``, else ``source.component``."""


def observe_event(obj: Mapping[str, Any]) -> ObservedEvent:
    involved = obj.get("involvedObject")
    source = obj.get("source")
    count = obj.get("count")
    last = obj.get("lastTimestamp") or obj.get("eventTime") or meta_field(obj, "creationTimestamp")
    return ObservedEvent(
        ref=ObjectRef.of(obj),
        involved=ObjectRef.of({"metadata": involved, **involved})
        if isinstance(involved, dict)
        else ObjectRef("", "", "", ""),
        type=str(obj.get("type") or ""),
        reason=str(obj.get("reason") or ""),
        message=str(obj.get("message") or ""),
        count=count if isinstance(count, int) and count > 0 else 1,
        last_seen=str(last or ""),
        source=str(
            obj.get("reportingComponent")
            or (source.get("component") if isinstance(source, dict) else "")
            or ""
        ),
    )

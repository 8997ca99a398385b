"""Pods, as the controller reads them: only whether a speaker Pod is Ready (docs/API.md,
``NoLiveSpeaker``). The kubelet sets ``Ready`` from the speaker's readiness probe (``/readyz``),
so this is what ``kubectl get pods -n lbd-system`` shows, read once into a frozen view."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lbd.k8s.conditions import ObservedCondition, conditions_of
from lbd.k8s.meta import ObjectRef


@dataclass(frozen=True)
class ObservedPod:
    ref: ObjectRef
    ready: bool
    """Condition ``Ready`` is True and the Pod is not being deleted."""


def observe_pod(obj: Mapping[str, Any]) -> ObservedPod:
    raw = obj.get("status")
    status: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    ready = ObservedCondition.find(conditions_of(status.get("conditions")), "Ready")
    meta = obj.get("metadata")
    deleting = isinstance(meta, Mapping) and bool(meta.get("deletionTimestamp"))
    return ObservedPod(
        ref=ObjectRef.of(obj), ready=ready is not None and ready.status == "True" and not deleting
    )

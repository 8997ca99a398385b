"""Namespaces: the controller needs their labels (serviceAllocation namespace selectors)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lbd.k8s.meta import ObjectRef, labels_of


@dataclass(frozen=True)
class ObservedNamespace:
    ref: ObjectRef
    name: str
    labels: Mapping[str, str] = field(hash=False)


def observe_namespace(obj: Mapping[str, Any]) -> ObservedNamespace:
    ref = ObjectRef.of(obj)
    return ObservedNamespace(ref=ref, name=ref.name, labels=labels_of(obj))

"""L2Advertisements: read into an :class:`ObservedAdvertisement`; their status written.

API::

    view = observe_l2advertisement(obj)    # the one reader, controller and speaker
    view.name, view.parsed (Advertisement or its FieldErrors), view.ready (condition shown)
    writer = AdvertisementStatusWriter(patcher)
    writer.write(view, Condition(...)) -> bool     # the Ready condition, only when it differs

The spec is validated by :func:`lbd.core.config.parse_advertisement` (field paths in the
errors), here and nowhere else: the speaker announces from ``view.parsed`` and the controller
decides the ``Ready`` condition from the same value (:mod:`lbd.core.adstatus`), so the two can
never disagree on whether an L2Advertisement is valid.

Writes are merge patches of ``status.conditions`` on the status subresource, with the
resourceVersion read (a 409 re-reads nothing: the controller decides again from the newer view,
which the watch brings).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lbd.core.config import FieldError, parse_advertisement
from lbd.core.model import Advertisement
from lbd.k8s.client import L2ADVERTISEMENTS
from lbd.k8s.conditions import (
    Condition,
    Conditions,
    ObservedCondition,
    conditions_of,
    merge_conditions,
)
from lbd.k8s.meta import ObjectRef, rfc3339
from lbd.k8s.patch import Patcher

Obj = Mapping[str, Any]

READY = "Ready"
"""The condition type (as on IPAddressPools)."""


@dataclass(frozen=True)
class ObservedAdvertisement:
    """One L2Advertisement as read."""

    ref: ObjectRef
    parsed: Advertisement | tuple[FieldError, ...]
    """The validated spec, or every error in it."""
    conditions: Conditions = field(repr=False)

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def ready(self) -> ObservedCondition | None:
        """Our ``Ready`` condition as shown."""
        return ObservedCondition.find(self.conditions, READY)


def observe_l2advertisement(obj: Obj) -> ObservedAdvertisement:
    """Read one L2Advertisement dict (never raises on user input)."""
    ref = ObjectRef.of(obj)
    status = obj.get("status")
    status = status if isinstance(status, Mapping) else {}
    return ObservedAdvertisement(
        ref=ref,
        parsed=parse_advertisement(ref.name, obj.get("spec")),
        conditions=conditions_of(status.get("conditions")),
    )


@dataclass(frozen=True)
class AdvertisementStatusWriter:
    """Writes an L2Advertisement's ``Ready`` condition when it differs from what it shows."""

    patcher: Patcher

    def write(
        self,
        view: ObservedAdvertisement,
        want: Condition,
        *,
        still: Callable[[], bool] | None = None,
    ) -> bool:
        """Make ``view`` show ``want``; whether it wrote (a 404 is "gone": nothing to do)."""
        merged = merge_conditions(view.conditions, READY, want, rfc3339())
        if merged is None:
            return False
        body = {
            "metadata": {"resourceVersion": view.ref.resource_version},
            "status": {"conditions": merged},
        }
        return self.patcher.send_unless_gone(
            L2ADVERTISEMENTS.path(name=view.name, subresource="status"), body, still=still
        )

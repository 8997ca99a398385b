"""Writing what the controller decided onto a Service: only the difference, from its view.

API::

    writer = ServiceWriter(patcher)
    outcome = writer.write(view, ServiceStatus(addresses, pool, condition))  # WriteOutcome
    service_patches(view, desired) -> (metadata patch | None, status patch | None)   # pure

Merge patches carry the view's ``metadata.resourceVersion`` (optimistic concurrency: 409 if the
Service changed since it was read) and nothing that is already right, computed from the view
alone: the raw object is not read again. A 409 is not retried: the object changed since the
decision was made (maybe its request), so the caller decides again from the newer one. The
written object goes to the patcher's ``on_written`` (the controller makes it its newest view).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lbd.k8s.client import SERVICES, ApiError, JsonDict
from lbd.k8s.conditions import Condition, merge_conditions
from lbd.k8s.meta import meta_field, rfc3339
from lbd.k8s.patch import Patcher
from lbd.k8s.service import (
    ALLOCATED_FROM,
    ANNOUNCED_TYPE,
    CONDITION_TYPE,
    IP_MODE,
    ObservedService,
)


@dataclass(frozen=True)
class ServiceStatus:
    """What a Service should show: ingress addresses, the pool annotation, our condition.

    ``condition=None`` removes our condition (Service no longer ours); ``pool=None`` removes the
    annotation.
    """

    addresses: tuple[str, ...]
    pool: str | None
    condition: Condition | None


def service_patches(
    view: ObservedService, desired: ServiceStatus, *, stamp: str | None = None
) -> tuple[JsonDict | None, JsonDict | None]:
    """(metadata patch, status patch) that make the Service show ``desired``; None where equal."""
    rv = view.ref.resource_version
    meta_patch: JsonDict | None = None
    if view.recorded_pool != desired.pool:
        meta_patch = {
            "metadata": {"resourceVersion": rv, "annotations": {ALLOCATED_FROM: desired.pool}}
        }
    status_body: JsonDict = {}
    if view.addresses != desired.addresses or not view.ingress_exact:
        status_body["loadBalancer"] = {
            "ingress": [{"ip": a, "ipMode": IP_MODE} for a in desired.addresses]
        }
    conds = merge_conditions(view.conditions, CONDITION_TYPE, desired.condition, stamp or rfc3339())
    if conds is not None:
        status_body["conditions"] = conds
    status_patch = (
        {"metadata": {"resourceVersion": rv}, "status": status_body} if status_body else None
    )
    return meta_patch, status_patch


def announced_patch(
    view: ObservedService, want: Condition | None, *, stamp: str | None = None
) -> JsonDict | None:
    """The status patch that makes ``lbd.io/Announced`` show ``want`` (None: removed); None
    when it already does. Every other condition is kept (:func:`merge_conditions`)."""
    conds = merge_conditions(view.conditions, ANNOUNCED_TYPE, want, stamp or rfc3339())
    if conds is None:
        return None
    return {
        "metadata": {"resourceVersion": view.ref.resource_version},
        "status": {"conditions": conds},
    }


@dataclass(frozen=True)
class WriteOutcome:
    """What a write did. The object it returned goes to the patcher's ``on_written`` (the
    controller's views read it there, once)."""

    wrote: bool
    gone: bool = False
    metadata_pending: bool = False


@dataclass(frozen=True)
class ServiceWriter:
    """Makes Services show what the controller decided: only the differences."""

    patcher: Patcher

    def write(
        self,
        view: ObservedService,
        desired: ServiceStatus,
        *,
        defer_metadata: bool = False,
        still: Callable[[], bool] | None = None,
    ) -> WriteOutcome:
        """Make the Service show ``desired``. Raises ApiError (409 included) when a write fails.

        ``defer_metadata``: when the status changes too, write only the status now and report
        the annotation as ``metadata_pending`` (the caller writes it later, at lower priority).
        """
        meta_patch, status_patch = service_patches(view, desired)
        pending = defer_metadata and status_patch is not None and meta_patch is not None
        if pending:
            meta_patch = None
        ref = view.ref
        current: JsonDict | None = None
        try:
            # Status first: the address is what users wait for; the annotation follows.
            if status_patch is not None:
                current = self.patcher.send(
                    SERVICES.path(namespace=ref.namespace, name=ref.name, subresource="status"),
                    status_patch,
                    still=still,
                )
                if meta_patch is not None:
                    meta_patch["metadata"]["resourceVersion"] = meta_field(
                        current, "resourceVersion"
                    )
            if meta_patch is not None:
                current = self.patcher.send(
                    SERVICES.path(namespace=ref.namespace, name=ref.name), meta_patch, still=still
                )
        except ApiError as exc:
            if exc.status == 404:
                return WriteOutcome(wrote=current is not None, gone=True)
            raise
        return WriteOutcome(wrote=current is not None, metadata_pending=pending)

    def write_announced(
        self,
        view: ObservedService,
        want: Condition | None,
        *,
        still: Callable[[], bool] | None = None,
    ) -> bool:
        """Make ``lbd.io/Announced`` show ``want``; True when a write was made (409 raises)."""
        patch = announced_patch(view, want)
        if patch is None:
            return False
        ref = view.ref
        return self.patcher.send_unless_gone(
            SERVICES.path(namespace=ref.namespace, name=ref.name, subresource="status"),
            patch,
            still=still,
        )

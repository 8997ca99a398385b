"""Writing what the controller decided onto Services and IPAddressPools: only the difference.

API::

    desired = ServiceStatus(addresses=("198.18.100.7",), pool="default",
                            condition=Condition(True, "Assigned", "198.18.100.7 from pool default"))
    meta_patch, status_patch = service_diff(svc, desired)     # pure; (None, None) = nothing to do
    writer = StatusWriter(kube, may_write=elector.is_leader, on_written=fn(obj))
    outcome = writer.write_service(svc, desired)              # WriteOutcome (before, after objects)
    writer.write_pool_status(pool, status_fields)             # counters and conditions

Design:

- ``service_diff`` compares with the object and returns merge patches that carry
  ``metadata.resourceVersion`` (optimistic concurrency: the server answers 409 if the object
  changed since we read it) and nothing that is already right. No patch, no request: a resync, a
  restart or a stale re-reconcile writes nothing.
- Conditions are replaced as a whole list in a merge patch, so the list is rebuilt from the
  object we read, keeping conditions written by others; ``lastTransitionTime`` changes only when
  the condition's status flips (Kubernetes API conventions).
- A Service write that meets 409 Conflict is *not* retried here: the object changed since the
  decision was made (maybe its request), so the decision itself is stale. The error goes back
  to the caller, whose reconcile runs again from the newer object. (Pool status does not depend
  on what changed, so there a 409 re-reads and re-applies.) On 429, 5xx or no answer the same
  request is retried after an exponential, jittered wait (tenacity). 404: the object is gone.
- ``may_write`` is checked before every request: a replica that lost (or cannot prove) its
  leadership stops writing at once, even in the middle of a retry loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from lbd.k8s.client import IPADDRESSPOOLS, SERVICES, ApiError, JsonDict, Kube, PatchType
from lbd.k8s.convert import ALLOCATED_FROM, ingress_addresses

log = logging.getLogger(__name__)

CONDITION_TYPE = "lbd.io/AddressAssigned"


@dataclass(frozen=True)
class Condition:
    """One ``metav1.Condition`` minus the timestamps."""

    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class ServiceStatus:
    """What a Service should show: ingress addresses, the pool annotation, our condition.

    ``condition=None`` removes our condition (Service no longer ours); ``pool=None`` removes the
    annotation.
    """

    addresses: tuple[str, ...]
    pool: str | None
    condition: Condition | None


class NotLeaderError(Exception):
    """Raised instead of writing when ``may_write`` says no."""


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def merge_conditions(
    current: Any, ctype: str, want: Condition | None, stamp: str
) -> list[JsonDict] | None:
    """The new ``conditions`` list with ``ctype`` set to ``want`` (None: removed); None if same."""
    conds = [c for c in current if isinstance(c, dict)] if isinstance(current, list) else []
    old = next((c for c in conds if c.get("type") == ctype), None)
    others = [c for c in conds if c.get("type") != ctype]
    if want is None:
        return None if old is None else others
    status = "True" if want.status else "False"
    if (
        old is not None
        and old.get("status") == status
        and old.get("reason") == want.reason
        and old.get("message") == want.message
    ):
        return None
    transition = stamp
    if old is not None and old.get("status") == status and old.get("lastTransitionTime"):
        transition = str(old["lastTransitionTime"])
    new = {
        "type": ctype,
        "status": status,
        "reason": want.reason,
        "message": want.message,
        "lastTransitionTime": transition,
    }
    if old is None:
        return [*others, new]
    return [new if c is old else c for c in conds]


def service_diff(
    svc: Mapping[str, Any], desired: ServiceStatus, *, stamp: str | None = None
) -> tuple[JsonDict | None, JsonDict | None]:
    """(metadata patch, status patch) that make ``svc`` show ``desired``; None where equal."""
    meta = svc.get("metadata") or {}
    rv = meta.get("resourceVersion")
    annotations = meta.get("annotations") or {}
    meta_patch: JsonDict | None = None
    if annotations.get(ALLOCATED_FROM) != desired.pool:
        meta_patch = {
            "metadata": {"resourceVersion": rv, "annotations": {ALLOCATED_FROM: desired.pool}}
        }
    status = svc.get("status") or {}
    status_body: JsonDict = {}
    raw_ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    want_ingress = [{"ip": a, "ipMode": "VIP"} for a in desired.addresses]
    if ingress_addresses(svc) != desired.addresses or _ingress_extra(raw_ingress, want_ingress):
        status_body["loadBalancer"] = {"ingress": want_ingress}
    conds = merge_conditions(
        status.get("conditions"), CONDITION_TYPE, desired.condition, stamp or now_rfc3339()
    )
    if conds is not None:
        status_body["conditions"] = conds
    status_patch = (
        {"metadata": {"resourceVersion": rv}, "status": status_body} if status_body else None
    )
    return meta_patch, status_patch


def _ingress_extra(raw: Any, want: list[JsonDict]) -> bool:
    """True when the ingress list differs in shape (missing ipMode, hostnames, extras)."""
    if not isinstance(raw, list) or len(raw) != len(want):
        return True
    return any(
        not isinstance(r, dict) or r.get("ipMode") != w["ipMode"]
        for r, w in zip(raw, want, strict=True)
    )


@dataclass(frozen=True)
class WriteOutcome:
    """The object before our write (as last read) and after it (None: gone or nothing written)."""

    before: JsonDict
    after: JsonDict | None
    wrote: bool
    metadata_pending: bool = False


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and (exc.status in (0, 429) or exc.status >= 500)


class StatusWriter:
    """Sends the differences, with optimistic concurrency and retries."""

    def __init__(
        self,
        kube: Kube,
        *,
        may_write: Callable[[], bool] = lambda: True,
        on_written: Callable[[JsonDict], None] | None = None,
        attempts: int = 8,
        wait_initial: float = 0.05,
        wait_max: float = 2.0,
    ) -> None:
        self.kube = kube
        self.may_write = may_write
        self.on_written = on_written
        self.attempts = attempts
        self._wait = wait_exponential_jitter(multiplier=wait_initial, max=wait_max, jitter=0.1)
        self.requests = 0

    def _send(self, path: str, body: JsonDict) -> JsonDict:
        """One merge patch; the same request is retried on 429, 5xx and no answer."""
        for attempt in Retrying(
            retry=retry_if_exception(_transient),
            wait=self._wait,
            stop=stop_after_attempt(self.attempts),
            reraise=True,
        ):
            with attempt:
                if not self.may_write():
                    raise NotLeaderError(path)
                self.requests += 1
                written = self.kube.patch(path, body, patch=PatchType.MERGE)
        if self.on_written is not None:
            self.on_written(written)
        return written

    def write_service(
        self, svc: JsonDict, desired: ServiceStatus, *, defer_metadata: bool = False
    ) -> WriteOutcome:
        """Make ``svc`` show ``desired``. Raises ApiError (409 included) when a write fails.

        ``defer_metadata``: when the status changes too, write only the status now and report
        the annotation as ``metadata_pending`` (the caller writes it later, at lower priority).
        """
        meta_patch, status_patch = service_diff(svc, desired)
        current = svc
        pending = defer_metadata and status_patch is not None and meta_patch is not None
        if pending:
            meta_patch = None
        try:
            # Status first: the address is what users wait for; the annotation follows.
            if status_patch is not None:
                current = self._send(SERVICES.object_path(svc, "status"), status_patch)
                if meta_patch is not None:
                    meta_patch["metadata"]["resourceVersion"] = current["metadata"][
                        "resourceVersion"
                    ]
            if meta_patch is not None:
                current = self._send(SERVICES.object_path(svc), meta_patch)
        except ApiError as exc:
            if exc.status == 404:
                return WriteOutcome(svc, None, current is not svc)
            raise
        wrote = current is not svc
        return WriteOutcome(svc, current, wrote, metadata_pending=pending)

    def write_pool_status(self, pool: JsonDict, status: JsonDict) -> JsonDict | None:
        """Merge ``status`` (counters, conditions) into the pool's status if it differs."""
        current = pool
        for attempt in range(1, self.attempts + 1):
            old = current.get("status") or {}
            if all(old.get(k) == v for k, v in status.items()):
                return None
            body = {
                "metadata": {"resourceVersion": current["metadata"].get("resourceVersion")},
                "status": status,
            }
            try:
                return self._send(IPADDRESSPOOLS.object_path(current, "status"), body)
            except ApiError as exc:
                if exc.status == 404:
                    return None
                if exc.status != 409 or attempt == self.attempts:
                    raise
                # Counters and conditions do not depend on what changed: re-read, re-apply.
                current = self.kube.get(IPADDRESSPOOLS.object_path(current))
        return None

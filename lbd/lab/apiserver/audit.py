"""The audit record: which identity made which kind of API call, and whether RBAC allowed it.

Tests use it to prove least privilege from what lbd's programs really do, rather than from a
hand-written list of the calls they are believed to make: run the lab, then ask the server which
``(user, verb, apiGroup, resource, subresource, namespace)`` tuples it authorized or denied.

Those are exactly the attributes RBAC decides on (the object name aside), with the Kubernetes
verb (``get``/``list``/``watch``/``create``/``update``/``patch``/``delete``/``deletecollection``)
rather than the HTTP method. Non-resource requests (discovery, ``/version``, ``/openapi``) are
recorded with their ``path`` and an empty resource.

Memory is bounded: only distinct tuples are kept, each with a count, and at most
``max_records`` of them (requests beyond that are counted in ``dropped``, never silently lost).
Recording is one dict increment under a lock, cheap next to serving the request.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from lbd.lab.apiserver.rbac import Attributes, User

DEFAULT_MAX_RECORDS = 10000

_Key = tuple[str, str, str, str, str, str, str, bool]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One distinct kind of request and how often it was made."""

    user: str
    verb: str
    api_group: str
    resource: str
    subresource: str
    namespace: str  # "" for cluster-scoped and all-namespaces requests
    path: str  # set for non-resource requests only
    allowed: bool
    count: int

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["apiGroup"] = doc.pop("api_group")
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> AuditRecord:
        """The inverse of :meth:`to_json` (a test reading ``GET /_lab/audit`` uses it)."""
        try:
            return cls(
                user=str(doc["user"]),
                verb=str(doc["verb"]),
                api_group=str(doc["apiGroup"]),
                resource=str(doc["resource"]),
                subresource=str(doc["subresource"]),
                namespace=str(doc["namespace"]),
                path=str(doc["path"]),
                allowed=bool(doc["allowed"]),
                count=int(doc["count"]),
            )
        except KeyError as exc:
            raise ValueError(f"audit record: missing field {exc.args[0]!r}") from None


class AuditLog:
    """Distinct authorization decisions with counts; safe to use from many threads."""

    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        if max_records < 1:
            raise ValueError(f"max_records: must be at least 1, got {max_records}")
        self._max = max_records
        self._lock = threading.Lock()
        self._counts: dict[_Key, int] = {}
        self._dropped = 0

    def record(self, user: User, attrs: Attributes, allowed: bool) -> None:
        key = (
            user.name,
            attrs.verb,
            attrs.group,
            attrs.resource,
            attrs.subresource,
            attrs.namespace,
            attrs.path,
            allowed,
        )
        with self._lock:
            n = self._counts.get(key)
            if n is not None:
                self._counts[key] = n + 1
            elif len(self._counts) < self._max:
                self._counts[key] = 1
            else:
                self._dropped += 1

    def records(self) -> list[AuditRecord]:
        """Every distinct decision so far, sorted (user, verb, group, resource, ...)."""
        with self._lock:
            items = list(self._counts.items())
        return [AuditRecord(*key, count=n) for key, n in sorted(items)]

    @property
    def dropped(self) -> int:
        """Requests not recorded because ``max_records`` distinct tuples were already kept."""
        return self._dropped

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._dropped = 0

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /_lab/audit``."""
        return {"records": [r.to_json() for r in self.records()], "dropped": self.dropped}

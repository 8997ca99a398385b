"""Kubernetes ``Status`` errors.

Every failure the lab API server reports is an :class:`ApiError`, rendered as the ``Status``
object a real kube-apiserver sends (``kind: Status``, ``reason``, ``code``, ``details``), with the
same messages where clients or people are likely to match on them (``... not found``,
``Operation cannot be fulfilled on ...``, ``... is forbidden: User ... cannot ...``). The
constructors below are named after the ``StatusReason`` they produce, as in apimachinery's
``k8s.io/apimachinery/pkg/api/errors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lbd.lab.apiserver.rbac import Attributes


@dataclass(frozen=True, slots=True)
class Cause:
    """One entry of ``details.causes`` (a field path and why it was rejected)."""

    reason: str
    message: str
    field: str


@dataclass(slots=True)
class ApiError(Exception):
    """A request failure that becomes a ``Status`` response."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out


# The causes of field.Required / field.Forbidden / field.Invalid (apimachinery's
# ``pkg/util/validation/field``): the reason is the error type, the message starts with its text.


def required_cause(path: str, detail: str) -> Cause:
    return Cause("FieldValueRequired", f"Required value: {detail}", path)


def forbidden_cause(path: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", path)


def invalid_value_cause(path: str, value: object, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {value}: {detail}", path)


def _details(resource: str, group: str, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": resource}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def qualified(resource: str, group: str) -> str:
    """``services`` or ``endpointslices.discovery.k8s.io`` as used in messages."""
    return f"{resource}.{group}" if group else resource


def _about(code: int, reason: str, resource: str, group: str, name: str, *, text: str) -> ApiError:
    """An error about one named object, whose message names it as ``resource "name"``."""
    return ApiError(
        code,
        reason,
        f'{qualified(resource, group)} "{name}" {text}',
        _details(resource, group, name),
    )


def not_found(resource: str, group: str, name: str) -> ApiError:
    return _about(404, "NotFound", resource, group, name, text="not found")


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return _about(409, "AlreadyExists", resource, group, name, text="already exists")


def conflict(resource: str, group: str, name: str, why: str | None = None) -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version and "
        "try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        _details(resource, group, name),
    )


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    qual = f"{kind}.{group}" if group else kind
    text = ", ".join(f"{c.field}: {c.message}" for c in causes)
    if len(causes) > 1:
        text = f"[{text}]"
    details = {
        "name": name,
        "kind": kind,
        "causes": [{"reason": c.reason, "message": c.message, "field": c.field} for c in causes],
    }
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{qual} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def unsupported_media_type(content_type: str, accepted: tuple[str, ...]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format ({content_type or 'none'}) - "
        f"accepted media types include: {', '.join(accepted)}",
    )


def gone(requested: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def too_large_resource_version(requested: int, current: int) -> ApiError:
    """kube-apiserver's answer to a read from a version it has not reached after waiting 3 s
    (``storage.NewTooLargeResourceVersionError``; measured on v1.36.3: 504 Timeout with this
    cause and ``retryAfterSeconds: 1``)."""
    return ApiError(
        504,
        "Timeout",
        f"Timeout: Too large resource version: {requested}, current: {current}",
        {
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
    )


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(user: str, attrs: Attributes) -> ApiError:
    """The message of the RBAC authorizer for the request ``attrs`` that ``user`` may not make,
    e.g.

    ``services "web" is forbidden: User "system:serviceaccount:lbd-system:lbd-controller" cannot
    patch resource "services/status" in API group "" in the namespace "default"``
    """
    resource, group, name = attrs.resource, attrs.group, attrs.name
    what = qualified(resource, group) + (f' "{name}"' if name else "")
    full = f"{resource}/{attrs.subresource}" if attrs.subresource else resource
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    msg = (
        f'{what} is forbidden: User "{user}" cannot {attrs.verb} resource "{full}" in API group '
        f'"{group}" {where}'
    )
    return ApiError(403, "Forbidden", msg, _details(resource, group, name))


def forbidden_path(user: str, verb: str, path: str) -> ApiError:
    return ApiError(403, "Forbidden", f'forbidden: User "{user}" cannot {verb} path "{path}"', {})


def injected(code: int, message: str) -> ApiError:
    """A failure produced by fault injection, with the reason a real server uses for ``code``."""
    reasons = {
        409: "Conflict",
        429: "TooManyRequests",
        500: "InternalError",
        503: "ServiceUnavailable",
        504: "Timeout",
    }
    return ApiError(code, reasons.get(code, "InternalError"), message)

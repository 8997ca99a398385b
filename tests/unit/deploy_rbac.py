"""A small RBAC evaluator for the manifests in deploy/, with the real authorizer's semantics.

Enough of Kubernetes' RBAC authorizer (rbac.authorization.k8s.io/v1) to answer "may this
service account make this API call?" from a list of Role / ClusterRole / RoleBinding /
ClusterRoleBinding objects: a ClusterRoleBinding grants its ClusterRole's rules everywhere; a
RoleBinding grants its Role's or ClusterRole's rules in the binding's namespace only; a rule
names resources exactly (``services`` does not cover ``services/status``); ``*`` matches all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Call:
    """One API request: ``namespace`` None for cluster-scoped or all-namespaces requests."""

    verb: str
    group: str
    resource: str
    namespace: str | None = None

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else " (cluster-wide)"
        group = self.group or "core"
        return f"{self.verb} {self.resource}.{group}{where}"


def _rule_allows(rule: dict[str, Any], call: Call) -> bool:
    def has(field: str, value: str) -> bool:
        values = rule.get(field) or []
        return "*" in values or value in values

    if rule.get("resourceNames"):
        return False  # our calls are not about one named object; such rules never match them
    return (
        has("verbs", call.verb) and has("apiGroups", call.group) and has("resources", call.resource)
    )


def _subject_is(subject: dict[str, Any], namespace: str, name: str) -> bool:
    return (
        subject.get("kind") == "ServiceAccount"
        and subject.get("name") == name
        and subject.get("namespace") == namespace
    )


def allowed(objects: list[dict[str, Any]], service_account: str, call: Call) -> bool:
    """Whether ``namespace/name`` service account may make ``call`` under these objects."""
    sa_namespace, sa_name = service_account.split("/")
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
    }
    for binding in objects:
        kind = binding["kind"]
        if kind not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(_subject_is(s, sa_namespace, sa_name) for s in binding.get("subjects", [])):
            continue
        ref = binding["roleRef"]
        binding_ns = binding["metadata"].get("namespace") if kind == "RoleBinding" else None
        role_ns = binding_ns if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        if role is None:
            continue
        if kind == "RoleBinding" and call.namespace != binding_ns:
            continue
        if any(_rule_allows(rule, call) for rule in role.get("rules", [])):
            return True
    return False

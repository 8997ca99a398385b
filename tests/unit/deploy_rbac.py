"""A small RBAC evaluator for the manifests in deploy/, with the real authorizer's semantics.

Enough of Kubernetes' RBAC authorizer (rbac.authorization.k8s.io/v1) to answer "may this
service account make this API call?" from a list of Role / ClusterRole / RoleBinding /
ClusterRoleBinding objects: a ClusterRoleBinding grants its ClusterRole's rules everywhere; a
RoleBinding grants its Role's or ClusterRole's rules in the binding's namespace only; a rule
names resources exactly (``services`` does not cover ``services/status``); ``*`` matches all; a
rule with ``resourceNames`` matches only a request that names one of them (so never a create, a
list or a watch of a collection, whose requests name no object).

:func:`grants` lists what a service account holds one verb at a time (:class:`Grant`), and
:func:`granting` says which of them allow a call: ``tests/k8s/test_rbac.py`` uses them to show
that every grant is used by a call lbd really makes, and that no call depends on two of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Call:
    """One API request: ``namespace`` None for cluster-scoped or all-namespaces requests,
    ``name`` the object it names (None for create, list and watch)."""

    verb: str
    group: str
    resource: str
    namespace: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else " (cluster-wide)"
        group = self.group or "core"
        named = f" {self.name}" if self.name else ""
        return f"{self.verb} {self.resource}.{group}{named}{where}"


@dataclass(frozen=True)
class Grant:
    """One verb on one resource, granted by one rule of one role through one binding."""

    role: str  # "ClusterRole lbd:speaker" / "Role lbd-system/lbd-controller"
    rule: int  # index in the role's rules
    verb: str
    group: str
    resource: str
    names: tuple[str, ...]  # the rule's resourceNames ((): any)
    namespace: str | None  # where the binding applies (None: everywhere)

    def __str__(self) -> str:
        group = self.group or "core"
        named = f" {','.join(self.names)}" if self.names else ""
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.resource}.{group}{named}{where} ({self.role} rule {self.rule})"

    def allows(self, call: Call) -> bool:
        return (
            self.verb in ("*", call.verb)
            and self.group in ("*", call.group)
            and self.resource in ("*", call.resource)
            and (not self.names or call.name in self.names)
            and (self.namespace is None or self.namespace == call.namespace)
        )


def _subject_is(subject: dict[str, Any], namespace: str, name: str) -> bool:
    return (
        subject.get("kind") == "ServiceAccount"
        and subject.get("name") == name
        and subject.get("namespace") == namespace
    )


def grants(objects: list[dict[str, Any]], service_account: str) -> list[Grant]:
    """Every (verb, resource) the ``namespace/name`` service account holds, one per verb."""
    sa_namespace, sa_name = service_account.split("/")
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
    }
    out: list[Grant] = []
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
        label = f"{ref['kind']} {role_ns + '/' if role_ns else ''}{ref['name']}"
        for index, rule in enumerate(role.get("rules", [])):
            names = tuple(rule.get("resourceNames") or ())
            for verb in rule.get("verbs") or []:
                for group in rule.get("apiGroups") or []:
                    for resource in rule.get("resources") or []:
                        out.append(Grant(label, index, verb, group, resource, names, binding_ns))
    return out


def granting(objects: list[dict[str, Any]], service_account: str, call: Call) -> list[Grant]:
    """The grants of ``service_account`` that allow ``call`` (empty: refused)."""
    return [g for g in grants(objects, service_account) if g.allows(call)]


def allowed(objects: list[dict[str, Any]], service_account: str, call: Call) -> bool:
    """Whether ``namespace/name`` service account may make ``call`` under these objects."""
    return bool(granting(objects, service_account, call))

"""Authentication (bearer tokens) and RBAC authorization.

Tokens map to a :class:`User` (name + groups). Service-account users
(``system:serviceaccount:NS:NAME``) also get the groups a real cluster gives them
(``system:serviceaccounts``, ``system:serviceaccounts:NS``); every user is in
``system:authenticated``. Members of ``system:masters`` (the admin token) bypass RBAC, as on a
real cluster.

Authorization reads Roles, ClusterRoles, RoleBindings and ClusterRoleBindings straight from the
store on every request, so objects loaded from ``deploy/`` YAML at start and objects created
through the API later are enforced alike. Rules match on verbs, apiGroups, resources (with
``resource/subresource`` and ``*``), resourceNames and nonResourceURLs, the way
``k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac`` does. Discovery, ``/version`` and
``/openapi`` are open to authenticated users, like the default ``system:discovery`` binding.
Aggregated ClusterRoles (``aggregationRule``) are not expanded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lbd.lab.apiserver.resources import RBAC
from lbd.lab.apiserver.store import Store

ADMIN_GROUP = "system:masters"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a request wants to do, as RBAC sees it."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # set for non-resource requests

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)


def user_for(name: str, groups: Iterable[str] = ()) -> User:
    all_groups = list(groups)
    if name.startswith("system:serviceaccount:"):
        parts = name.split(":")
        if len(parts) == 4:
            all_groups += ["system:serviceaccounts", f"system:serviceaccounts:{parts[2]}"]
    all_groups.append("system:authenticated")
    return User(name, tuple(dict.fromkeys(all_groups)))


class Tokens:
    """Bearer token -> user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, User] = {}

    def add(self, token: str, user: str, groups: Iterable[str] = ()) -> User:
        if not token:
            raise ValueError("token: must not be empty")
        u = user_for(user, groups)
        with self._lock:
            self._tokens[token] = u
        return u

    def remove(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def authenticate(self, token: str) -> User | None:
        return self._tokens.get(token)


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))

#: open to everyone (system:public-info-viewer) / to authenticated users (system:discovery)
_PUBLIC_INFO = ("/version", "/healthz", "/readyz", "/livez")
_DISCOVERY = ("/api", "/apis", "/openapi", *_PUBLIC_INFO)


def _subject_matches(subject: dict[str, Any], user: User, binding_ns: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user.name == f"system:serviceaccount:{ns}:{name}"
    return False


def _rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.is_resource:
        urls = rule.get("nonResourceURLs") or []
        return any(
            u in ("*", attrs.path) or (u.endswith("*") and attrs.path.startswith(u[:-1]))
            for u in urls
        )
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    resources = rule.get("resources") or []
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    if not any(
        r in ("*", combined)
        or (attrs.subresource and r == f"*/{attrs.subresource}")
        or (not attrs.subresource and r == attrs.resource)
        or (r.endswith("/*") and r[:-2] == attrs.resource)
        for r in resources
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


class Authorizer:
    def __init__(self, store: Store) -> None:
        self._store = store

    def _rules(self, kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
        plural = "clusterroles" if kind == "ClusterRole" else "roles"
        found = self._store.get((RBAC, plural), (namespace if kind == "Role" else "", name))
        if found is None:
            return []
        return list(found.obj.get("rules") or [])

    def allowed(self, user: User, attrs: Attributes) -> bool:
        if user.is_admin:
            return True
        if not attrs.is_resource and attrs.path.startswith(_PUBLIC_INFO):
            return True
        if (
            not attrs.is_resource
            and attrs.path.startswith(_DISCOVERY)
            and "system:authenticated" in user.groups
        ):
            return True
        with self._store.lock:
            crbs, _ = self._store.snapshot((RBAC, "clusterrolebindings"), None)
            for b in crbs:
                if self._binding_allows(b.obj, user, attrs, ""):
                    return True
            if attrs.namespace:
                rbs, _ = self._store.snapshot((RBAC, "rolebindings"), attrs.namespace)
                for b in rbs:
                    if self._binding_allows(b.obj, user, attrs, attrs.namespace):
                        return True
        return False

    def _binding_allows(
        self, binding: dict[str, Any], user: User, attrs: Attributes, namespace: str
    ) -> bool:
        subjects = binding.get("subjects") or []
        if not any(_subject_matches(s, user, namespace) for s in subjects):
            return False
        ref = binding.get("roleRef") or {}
        kind = ref.get("kind", "")
        if namespace == "" and kind != "ClusterRole":
            return False
        rules = self._rules(kind, namespace, ref.get("name", ""))
        return any(_rule_allows(r, attrs) for r in rules)


def rbac_documents(docs: Iterable[Any]) -> list[dict[str, Any]]:
    """The RBAC objects among parsed YAML documents (other kinds are ignored)."""
    kinds = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
    out = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "List":
            out.extend(rbac_documents(doc.get("items") or []))
        elif doc.get("kind") in kinds and str(doc.get("apiVersion", "")).startswith(RBAC):
            out.append(doc)
    return out

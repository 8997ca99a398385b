"""Which resources the server serves, and the discovery documents that describe them.

A :class:`ResourceType` is one (group, version, plural) the URL scheme can name. The built-in
table covers what lbd, its lab and ``kubectl apply -f deploy/`` touch; every
CustomResourceDefinition that is created adds its served versions through :meth:`Registry.add_crd`
(and removes them when it is deleted), which is how "applying a CRD makes its resource served"
works. Objects are stored per (group, plural) whatever version they were written in: CRD versions
use the ``None`` conversion strategy, so reading them in another version only rewrites
``apiVersion``, as the real server does for ``strategy: None``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

#: (group, plural): what the store is keyed by.
GroupResource = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One servable resource in one version."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    status_subresource: bool = False
    custom: bool = False
    #: extra fieldSelector labels (beyond metadata.name/metadata.namespace)
    field_labels: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    #: CRD only: the openAPIV3Schema of this version (None = no schema)
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    #: CRD only: additionalPrinterColumns of this version
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> GroupResource:
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def discovery(self) -> list[dict[str, Any]]:
        """APIResource entries: the resource and its subresources."""
        main: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        out = [main]
        if self.status_subresource:
            out.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        return out


def _b(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool,
    *short: str,
    status: bool = False,
    fields: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        short_names=short,
        status_subresource=status,
        field_labels=fields,
    )


RBAC = "rbac.authorization.k8s.io"
CRD_GROUP = "apiextensions.k8s.io"

BUILTINS: tuple[ResourceType, ...] = (
    _b("", "v1", "namespaces", "Namespace", False, "ns", status=True, fields=("status.phase",)),
    _b("", "v1", "nodes", "Node", False, "no", status=True, fields=("spec.unschedulable",)),
    _b("", "v1", "services", "Service", True, "svc", status=True, fields=("spec.type",)),
    _b("", "v1", "endpoints", "Endpoints", True, "ep"),
    _b(
        "",
        "v1",
        "events",
        "Event",
        True,
        "ev",
        fields=(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    ),
    _b("", "v1", "secrets", "Secret", True, fields=("type",)),
    _b("", "v1", "configmaps", "ConfigMap", True, "cm"),
    _b("", "v1", "serviceaccounts", "ServiceAccount", True, "sa"),
    _b(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        "po",
        status=True,
        fields=("spec.nodeName", "spec.serviceAccountName", "status.phase", "status.podIP"),
    ),
    _b("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, fields=("addressType",)),
    _b(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        True,
        "ev",
        fields=("regarding.kind", "regarding.namespace", "regarding.name", "reason", "type"),
    ),
    _b("coordination.k8s.io", "v1", "leases", "Lease", True),
    _b(RBAC, "v1", "roles", "Role", True),
    _b(RBAC, "v1", "rolebindings", "RoleBinding", True),
    _b(RBAC, "v1", "clusterroles", "ClusterRole", False),
    _b(RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _b("apps", "v1", "deployments", "Deployment", True, "deploy", status=True),
    _b("apps", "v1", "daemonsets", "DaemonSet", True, "ds", status=True),
    # stored, never acted on: there is no scheduler, no kubelet, no eviction in the lab
    _b("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, "pdb", status=True),
    # stored, never enforced: the stand-in runs no admission (so that `kubectl apply -k deploy/`
    # works on it); lbd's policies are tested on the real kube-apiserver, tests/k8s/test_rbac.py
    _b(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        False,
        status=True,
    ),
    _b(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        False,
    ),
    _b(
        CRD_GROUP,
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        "crd",
        "crds",
        status=True,
    ),
)

#: Resources whose objects are stored across API groups: core/v1 Events and events.k8s.io/v1
#: Events are the same objects in a real cluster; here they are kept apart (documented gap).


class Registry:
    """The set of served resource types; CRDs come and go at run time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_gvr: dict[tuple[str, str, str], ResourceType] = {}
        self._group_versions: dict[str, list[str]] = {}
        for rt in BUILTINS:
            self._add(rt)

    def _add(self, rt: ResourceType) -> None:
        self._by_gvr[(rt.group, rt.version, rt.plural)] = rt
        versions = self._group_versions.setdefault(rt.group, [])
        if rt.version not in versions:
            versions.append(rt.version)

    def _rebuild_versions(self) -> None:
        self._group_versions = {}
        for rt in self._by_gvr.values():
            versions = self._group_versions.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_gvr.get((group, version, plural))

    def has_group_version(self, group: str, version: str) -> bool:
        return version in self._group_versions.get(group, [])

    def resources(self, group: str, version: str) -> list[ResourceType]:
        with self._lock:
            return [rt for (g, v, _), rt in self._by_gvr.items() if g == group and v == version]

    def groups(self) -> dict[str, list[str]]:
        with self._lock:
            return {g: list(v) for g, v in self._group_versions.items()}

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        with self._lock:
            for (g, v, _), rt in self._by_gvr.items():
                if g == group and v == version and rt.kind == kind:
                    return rt
        return None

    def add_crd(self, crd: dict[str, Any]) -> list[ResourceType]:
        """Serve every ``served`` version of ``crd``; returns what is now served."""
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        group = spec["group"]
        added: list[ResourceType] = []
        with self._lock:
            self._remove_locked(group, names["plural"])
            for ver in spec.get("versions", []):
                if not ver.get("served", True):
                    continue
                schema = (ver.get("schema") or {}).get("openAPIV3Schema")
                rt = ResourceType(
                    group=group,
                    version=ver["name"],
                    plural=names["plural"],
                    singular=names.get("singular") or names["kind"].lower(),
                    kind=names["kind"],
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    short_names=tuple(names.get("shortNames", ())),
                    status_subresource="status" in (ver.get("subresources") or {}),
                    custom=True,
                    categories=tuple(names.get("categories", ())),
                    schema=schema,
                    printer_columns=tuple(ver.get("additionalPrinterColumns", ())),
                )
                self._add(rt)
                added.append(rt)
        return added

    def remove_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec", {})
        with self._lock:
            self._remove_locked(spec.get("group", ""), spec.get("names", {}).get("plural", ""))

    def _remove_locked(self, group: str, plural: str) -> None:
        for key in [k for k in self._by_gvr if k[0] == group and k[2] == plural]:
            del self._by_gvr[key]
        self._rebuild_versions()

    def storage_version(self, group: str, plural: str) -> ResourceType | None:
        """Any served version of (group, plural); used when only the group resource is known."""
        with self._lock:
            for (g, _, p), rt in self._by_gvr.items():
                if g == group and p == plural:
                    return rt
        return None


def preferred_version(versions: list[str]) -> str:
    """Kubernetes version priority: GA > beta > alpha, higher numbers first."""

    def rank(v: str) -> tuple[int, int, int]:
        import re

        m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
        if not m:
            return (3, 0, 0)
        level = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
        return (level, -int(m.group(1)), -int(m.group(3) or 0))

    return sorted(versions, key=rank)[0]


def api_versions_doc(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def group_doc(group: str, versions: list[str]) -> dict[str, Any]:
    pref = preferred_version(versions)
    ordered = [pref] + [v for v in versions if v != pref]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered],
        "preferredVersion": {"groupVersion": f"{group}/{pref}", "version": pref},
    }


def group_list_doc(registry: Registry) -> dict[str, Any]:
    groups = [group_doc(g, vs) for g, vs in sorted(registry.groups().items()) if g]
    for g in groups:
        del g["kind"], g["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def resource_list_doc(registry: Registry, group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for rt in sorted(registry.resources(group, version), key=lambda r: r.plural):
        resources.extend(rt.discovery())
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }

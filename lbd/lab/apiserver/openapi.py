"""A minimal OpenAPI v3 index, enough for ``kubectl apply``.

kubectl validates what it applies. It first asks ``/openapi/v3`` whether the server validates
fields itself: when the PATCH operation of the object's group-version-kind lists the
``fieldValidation`` query parameter, kubectl leaves validation to the server (which this server
does for CRDs from their schemas) instead of downloading the full OpenAPI v2 document, which is
not served. So the documents list, per group version, one path per resource with a PATCH
operation carrying ``x-kubernetes-group-version-kind`` and that parameter; there are no schema
components, so kubectl builds strategic merge patches from its compiled-in types, and JSON
merge patches for custom resources, as it does for any type it has no schema for.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lbd.lab.apiserver.resources import Registry, ResourceType


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def root(registry: Registry) -> dict[str, Any]:
    paths = {}
    for group, versions in sorted(registry.groups().items()):
        for version in versions:
            doc = group_version(registry, group, version)
            digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
            gvp = _gv_path(group, version)
            paths[gvp] = {"serverRelativeURL": f"/openapi/v3/{gvp}?hash={digest}"}
    return {"paths": paths}


def _patch_op(rt: ResourceType) -> dict[str, Any]:
    return {
        "operationId": f"patch{rt.kind}",
        "x-kubernetes-group-version-kind": {
            "group": rt.group,
            "version": rt.version,
            "kind": rt.kind,
        },
        "x-kubernetes-action": "patch",
        "parameters": [
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        ],
        "responses": {"200": {"description": "OK"}},
    }


def group_version(registry: Registry, group: str, version: str) -> dict[str, Any]:
    prefix = "/" + _gv_path(group, version)
    paths: dict[str, Any] = {}
    for rt in sorted(registry.resources(group, version), key=lambda r: r.plural):
        if rt.namespaced:
            path = f"{prefix}/namespaces/{{namespace}}/{rt.plural}/{{name}}"
        else:
            path = f"{prefix}/{rt.plural}/{{name}}"
        paths[path] = {"patch": _patch_op(rt)}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (lbd lab)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def document(registry: Registry, path: str) -> dict[str, Any] | None:
    """The document for ``/openapi/v3[/...]``; None when there is none."""
    rest = path.removeprefix("/openapi/v3").strip("/")
    if not rest:
        return root(registry)
    parts = rest.split("/")
    if parts[0] == "api" and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[0] == "apis" and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    if not registry.has_group_version(group, version):
        return None
    return group_version(registry, group, version)

"""OpenAPI v3 documents: enough for ``kubectl explain`` and for ``kubectl apply``'s checks.

kubectl 1.36 reads OpenAPI v3 (``/openapi/v2`` is served empty, see :func:`v2_document`):
``/openapi/v3`` lists one document per group version, and each document has

- ``paths``: per resource, the collection path (``get`` = list, ``post``, ``delete`` =
  deletecollection), the object path (``get``, ``put``, ``patch``, ``delete``) and the status
  path, each operation carrying ``x-kubernetes-group-version-kind``. ``kubectl explain`` finds a
  resource's kind there, and ``kubectl apply`` reads the PATCH operation: when it lists the
  ``fieldValidation`` parameter, kubectl leaves field validation to the server (which this
  server does for CRDs from their schemas). The PATCH request body lists the patch types the
  server takes; for custom resources that is JSON patch, merge patch and apply, as on
  kube-apiserver. For built-in kinds this server leaves out strategic merge patch from the list
  on purpose: kubectl then builds strategic merge patches from its compiled-in types (the
  schemas here have no patch-merge keys), exactly as it does against kube-apiserver.
- ``components.schemas``: the kinds' schemas, where ``kubectl explain`` looks a kind up by its
  ``x-kubernetes-group-version-kind``. Custom resources get their version's
  ``openAPIV3Schema`` with ``apiVersion``, ``kind`` and a ``metadata`` reference to
  ``ObjectMeta`` added, as kube-apiserver publishes them. Built-in kinds (and ``ObjectMeta``)
  get schemas derived, when first asked for, from the models of the official ``kubernetes``
  Python client (field names, types, required fields and descriptions; no enums and no patch
  strategies): the client is generated from kube-apiserver's own OpenAPI, so
  ``kubectl explain svc.spec`` reads as on a cluster.

Documents are built once per group version and registry state (a CRD applied or deleted
changes it); the index names each with a hash of its content, which kubectl uses as a cache key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from typing import Any

from lbd.lab.apiserver.resources import Registry, ResourceType

JsonDict = dict[str, Any]
_REF = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_OBJECT_META = f"{_META}.ObjectMeta"
_DESCRIPTIONS = {
    "apiVersion": "APIVersion defines the versioned schema of this representation of an "
    "object. Servers convert recognized schemas to the latest internal value and may reject "
    "unrecognized values.",
    "kind": "Kind is the REST resource this object represents, in CamelCase. Servers may infer "
    "it from the endpoint the client submits requests to; it cannot be updated.",
    "metadata": "Standard object's metadata.",
}
#: Python client models of meta.k8s.io/v1 (named as kube-apiserver names them)
_META_MODELS = {
    "V1ObjectMeta",
    "V1ListMeta",
    "V1OwnerReference",
    "V1ManagedFieldsEntry",
    "V1LabelSelector",
    "V1LabelSelectorRequirement",
    "V1Condition",
    "V1Status",
    "V1StatusDetails",
    "V1StatusCause",
    "V1DeleteOptions",
    "V1Preconditions",
}
#: Python client model of a built-in kind, where its name is not V1<Kind>
_MODEL_NAMES = {("", "Event"): "CoreV1Event", ("events.k8s.io", "Event"): "EventsV1Event"}
_PACKAGES = {
    "": "io.k8s.api.core",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
    "rbac.authorization.k8s.io": "io.k8s.api.rbac",
}
_VERSION_PREFIX = re.compile(r"^(?:[A-Z][a-z]+)?V\d+(?:alpha\d+|beta\d+)?(?=[A-Z])")


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _package(group: str) -> str:
    if group in _PACKAGES:
        return _PACKAGES[group]
    if "." not in group:
        return f"io.k8s.api.{group}"
    if group.endswith(".k8s.io"):
        return f"io.k8s.api.{group.removesuffix('.k8s.io').split('.')[0]}"
    return ".".join(reversed(group.split(".")))  # lbd.io -> io.lbd, as for CRDs


def _gvk(rt: ResourceType) -> JsonDict:
    return {"group": rt.group, "version": rt.version, "kind": rt.kind}


def _ref(name: str) -> JsonDict:
    return {"allOf": [{"$ref": _REF + name}]}


# -- schemas from the official client's models --------------------------------------------------


class _ModelSchemas:
    """Schemas of the official client's models, named as kube-apiserver names them."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.schemas: dict[str, JsonDict] = {}

    def name(self, model: str) -> str:
        short = _VERSION_PREFIX.sub("", model)
        if model in _META_MODELS:
            return f"{_META}.{short}"
        return f"{self.package}.{short}"

    def add(self, model: str) -> str:
        name = self.name(model)
        if name in self.schemas:
            return name
        from kubernetes.client import models  # the lab only: product code never imports it here

        cls = getattr(models, model)
        self.schemas[name] = {}  # models refer to themselves (JSONSchemaProps)
        properties: JsonDict = {}
        required = []
        # attribute_map's keys are the field names, or their aliases where a name is a Python
        # keyword (``_exec`` for ``exec``)
        fields = {info.alias or name: info for name, info in cls.model_fields.items()}
        for attr, json_name in cls.attribute_map.items():
            info = fields[attr]
            prop = self._type(str(cls.openapi_types[attr]), str(info.annotation), json_name)
            if info.description:
                prop = {"description": info.description, **prop}
            properties[json_name] = prop
            if info.is_required():
                required.append(json_name)
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].strip()
        schema: JsonDict = {"description": doc, "type": "object", "properties": properties}
        if required:
            schema["required"] = required
        self.schemas[name] = schema
        return name

    def _type(self, kind: str, annotation: str, json_name: str) -> JsonDict:
        if kind.startswith("List["):
            return {"type": "array", "items": self._type(kind[5:-1], annotation, json_name)}
        if kind.startswith("Dict[str, "):
            values = self._type(kind[10:-1], annotation, json_name)
            return {"type": "object", "additionalProperties": values}
        simple = {
            "str": {"type": "string"},
            "int": {"type": "integer"},
            "float": {"type": "number"},
            "bool": {"type": "boolean"},
            "datetime": {"type": "string", "format": "date-time"},
            "date": {"type": "string", "format": "date"},
            "bytes": {"type": "string", "format": "byte"},
        }
        if kind in simple:
            return dict(simple[kind])
        if kind == "object":
            # the client types these as plain objects; kube-apiserver names them
            if "int" in annotation and "str" in annotation:
                return self._named(_INT_OR_STRING)
            if json_name == "fieldsV1":
                return self._named(_FIELDS_V1)
            return {"type": "object"}
        return _ref(self.add(kind))

    def _named(self, named: tuple[str, JsonDict]) -> JsonDict:
        self.schemas.setdefault(named[0], named[1])
        return _ref(named[0])


_INT_OR_STRING = (
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    {
        "description": "An int32 or a string (in JSON, a number or a string).",
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
    },
)
_FIELDS_V1 = (
    f"{_META}.FieldsV1",
    {"description": "The set of fields a manager owns, in the FieldsV1 format.", "type": "object"},
)


def _model_of(rt: ResourceType) -> str:
    return _MODEL_NAMES.get((rt.group, rt.kind), f"{rt.version.capitalize()}{rt.kind}")


# -- the documents ----------------------------------------------------------------------------


def _custom_schema(rt: ResourceType) -> JsonDict:
    schema: JsonDict = copy.deepcopy(rt.schema) if rt.schema else {"type": "object"}
    props: JsonDict = schema.setdefault("properties", {})
    props["apiVersion"] = {"description": _DESCRIPTIONS["apiVersion"], "type": "string"}
    props["kind"] = {"description": _DESCRIPTIONS["kind"], "type": "string"}
    props["metadata"] = {"description": _DESCRIPTIONS["metadata"], **_ref(_OBJECT_META)}
    schema["x-kubernetes-group-version-kind"] = [_gvk(rt)]
    return schema


def _operation(rt: ResourceType, action: str, bodies: tuple[str, ...] = ()) -> JsonDict:
    op: JsonDict = {
        "operationId": f"{action}{rt.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(rt),
        "parameters": [
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
        ],
        "responses": {"200": {"description": "OK"}},
    }
    if action in ("post", "put", "patch"):
        op["parameters"].append(
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
        )
    if bodies:
        op["requestBody"] = {"content": {b: {"schema": {"type": "object"}} for b in bodies}}
    return op


def _paths(rt: ResourceType, prefix: str) -> JsonDict:
    scope = f"{prefix}/namespaces/{{namespace}}" if rt.namespaced else prefix
    patch_types = (
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    )
    bodies = ("application/json", "application/yaml")
    item = {
        "get": _operation(rt, "get"),
        "put": _operation(rt, "put", bodies),
        "patch": _operation(rt, "patch", patch_types),
        "delete": _operation(rt, "delete", bodies),
    }
    paths = {
        f"{scope}/{rt.plural}": {
            "get": _operation(rt, "list"),
            "post": _operation(rt, "post", bodies),
            "delete": _operation(rt, "deletecollection"),
        },
        f"{scope}/{rt.plural}/{{name}}": item,
    }
    if rt.status_subresource:
        paths[f"{scope}/{rt.plural}/{{name}}/status"] = {
            k: v for k, v in item.items() if k != "delete"
        }
    return paths


def group_version(registry: Registry, group: str, version: str) -> JsonDict:
    """The document of one group version (built anew; :class:`Documents` caches them)."""
    prefix = "/" + _gv_path(group, version)
    paths: JsonDict = {}
    models = _ModelSchemas(_package(group) + f".{version}")
    schemas: dict[str, JsonDict] = {}
    for rt in sorted(registry.resources(group, version), key=lambda r: r.plural):
        paths.update(_paths(rt, prefix))
        if rt.custom:
            schemas[f"{_package(group)}.{version}.{rt.kind}"] = _custom_schema(rt)
            models.add("V1ObjectMeta")
            continue
        model = _model_of(rt)
        try:
            name = models.add(model)
        except AttributeError:  # no such model in this client version: paths only
            continue
        models.schemas[name]["x-kubernetes-group-version-kind"] = [_gvk(rt)]
    schemas.update(models.schemas)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (lbd lab API server)", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
"""What kubectl asks for; the answer is labelled ``...spec.v2.v1.0+protobuf`` (an ``@`` is not
allowed in a media type, and client-go's content-type check fails on one)."""
V2_PROTOBUF_ANSWER = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_V2_INFO = {"title": "Kubernetes (lbd lab API server)", "version": "unversioned"}


def _proto_string(number: int, text: str) -> bytes:
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data


def v2_document(protobuf: bool) -> bytes:
    """``/openapi/v2``: a valid document without any schema.

    kubectl 1.36 reads v3, but falls back to v2 for a kind v3 does not know (``kubectl apply``
    of a kind whose CRD is missing checks field validation there, then reports the missing
    CRD): a 404 would turn that into "error validating data". An empty document lets kubectl
    reach the real error, and makes it build strategic merge patches from its compiled-in types
    as it does anyway. kubectl asks for gnostic's protobuf encoding (``swagger`` = field 1,
    ``info`` = field 2 with ``title`` = 1, ``version`` = 2).
    """
    if not protobuf:
        doc = {"swagger": "2.0", "info": _V2_INFO, "paths": {}, "definitions": {}}
        return json.dumps(doc).encode()
    info = _proto_string(1, _V2_INFO["title"]) + _proto_string(2, _V2_INFO["version"])
    return _proto_string(1, "2.0") + bytes([2 << 3 | 2, len(info)]) + info


class Documents:
    """The OpenAPI v3 documents of a registry, built when first asked for and kept until the
    set of served resources changes."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[bytes, str]] = {}

    def _state(self, group: str, version: str) -> str:
        """What the document of (group, version) depends on (its resource types), hashed:
        the index names documents by it without building them."""
        state = sorted(
            (rt.plural, rt.kind, rt.namespaced, rt.status_subresource, rt.schema)
            for rt in self.registry.resources(group, version)
        )
        text = json.dumps([group, version, state], sort_keys=True, default=str)
        return hashlib.sha512(text.encode()).hexdigest().upper()

    def document(self, group: str, version: str) -> tuple[bytes, str]:
        """The document of (group, version) as JSON, and its hash."""
        digest = self._state(group, version)
        with self._lock:
            cached = self._cache.get((group, version))
            if cached is not None and cached[1] == digest:
                return cached[0], digest
        doc = group_version(self.registry, group, version)
        raw = json.dumps(doc, separators=(",", ":")).encode()
        with self._lock:
            self._cache[(group, version)] = (raw, digest)
        return raw, digest

    def index(self) -> JsonDict:
        """``/openapi/v3``: each group version's document, by path, with its hash."""
        paths = {}
        for group, versions in sorted(self.registry.groups().items()):
            for version in versions:
                digest = self._state(group, version)
                gvp = _gv_path(group, version)
                paths[gvp] = {"serverRelativeURL": f"/openapi/v3/{gvp}?hash={digest}"}
        return {"paths": paths}

    def lookup(self, path: str) -> tuple[bytes, str] | None:
        """The document for ``/openapi/v3/...`` (JSON and hash); None when there is none."""
        rest = path.removeprefix("/openapi/v3").strip("/")
        parts = rest.split("/")
        if parts[0] == "api" and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            return None
        if not self.registry.has_group_version(group, version):
            return None
        return self.document(group, version)

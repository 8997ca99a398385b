"""Offline checks of CustomResourceDefinitions, as a real API server makes them on create.

No kube-apiserver can run here, so this module re-states the apiextensions.k8s.io/v1 rules that
the API server enforces on a CRD (ValidateCustomResourceDefinition and the structural schema
rules of KEP-1017, "structural schema"): a CRD that passes here is accepted there. It also
turns an openAPIV3Schema into a JSON Schema for ``jsonschema`` and applies its defaults, so the
sample objects can be checked the way the API server checks a created object.

Only the rules that lbd's CRDs could break are here; each returns a message naming the path.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import jsonschema

# Fields of JSONSchemaProps the v1 API accepts (others are rejected as unknown fields).
SCHEMA_KEYS = frozenset(
    {
        "description", "type", "format", "title", "default", "maximum", "exclusiveMaximum",
        "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems",
        "minItems", "uniqueItems", "multipleOf", "enum", "maxProperties", "minProperties",
        "required", "items", "allOf", "oneOf", "anyOf", "not", "properties",
        "additionalProperties", "nullable", "example", "externalDocs",
        "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys", "x-kubernetes-list-type",
        "x-kubernetes-map-type", "x-kubernetes-validations",
    }
)  # fmt: skip
# Rejected by the v1 API for CRDs even though JSONSchemaProps has them.
FORBIDDEN_KEYS = frozenset(
    {"$ref", "$schema", "id", "definitions", "dependencies", "patternProperties",
     "additionalItems"}
)  # fmt: skip
TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
PRINTER_TYPES = frozenset({"integer", "number", "string", "boolean", "date"})
CRD_TOP_KEYS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
CRD_SPEC_KEYS = frozenset(
    {"group", "names", "scope", "versions", "conversion", "preserveUnknownFields"}
)
VERSION_KEYS = frozenset(
    {"name", "served", "storage", "deprecated", "deprecationWarning", "schema", "subresources",
     "additionalPrinterColumns", "selectableFields"}
)  # fmt: skip
# ObjectMeta fields a printer column may point at (metadata is not in the CRD's schema).
METADATA_FIELDS = frozenset(
    {"name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "labels",
     "annotations", "generation", "resourceVersion", "generateName", "ownerReferences"}
)  # fmt: skip
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.properties[{name}]")
    items = node.get("items")
    if isinstance(items, dict):
        yield from _walk(items, f"{path}.items")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _walk(extra, f"{path}.additionalProperties")


def _type_matches(value: Any, node: dict[str, Any]) -> bool:
    if node.get("x-kubernetes-int-or-string"):
        return isinstance(value, int | str) and not isinstance(value, bool)
    t = node.get("type")
    checks: dict[str, Any] = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "integer": int,
        "number": int | float,
    }
    if t is None:
        return True
    if t in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, checks[t])


def structural_errors(schema: dict[str, Any], path: str = "openAPIV3Schema") -> list[str]:
    """Violations of the structural schema rules, each naming the schema path."""
    errors: list[str] = []
    if schema.get("type") != "object":
        errors.append(f"{path}: the root must be of type object")
    meta = (schema.get("properties") or {}).get("metadata")
    if meta is not None:
        extra = set(meta) - {"type", "description"}
        props = set((meta.get("properties") or {}).keys())
        if extra - {"properties"} or props - {"name", "generateName"}:
            errors.append(
                f"{path}.properties[metadata]: only name and generateName may be restricted"
            )
    for key in ("x-kubernetes-int-or-string", "nullable", "x-kubernetes-embedded-resource"):
        if key in schema:
            errors.append(f"{path}: {key} is not allowed at the root")
    for p, node in _walk(schema, path):
        errors.extend(_node_errors(p, node))
    return errors


def _node_errors(path: str, node: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    for key in node:
        if key in FORBIDDEN_KEYS:
            errors.append(f"{path}: {key} is forbidden in CRD schemas")
        elif key not in SCHEMA_KEYS:
            errors.append(f"{path}: unknown field {key!r}")
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    t = node.get("type")
    if t is None and not (int_or_string or preserve):
        errors.append(f"{path}: type is required (structural schema)")
    if t is not None and t not in TYPES:
        errors.append(f"{path}: unknown type {t!r}")
    if int_or_string and t is not None:
        errors.append(f"{path}: x-kubernetes-int-or-string must not have a type")
    if "items" in node and not isinstance(node["items"], dict):
        errors.append(f"{path}.items: must be one schema, not a list")
    if t == "array" and "items" not in node:
        errors.append(f"{path}: an array needs items")
    if "properties" in node and "additionalProperties" in node:
        errors.append(f"{path}: properties and additionalProperties are mutually exclusive")
    if ("properties" in node or "additionalProperties" in node) and t not in (None, "object"):
        errors.append(f"{path}: properties on a non-object")
    for name in node.get("required", []):
        if name not in (node.get("properties") or {}):
            errors.append(f"{path}: required field {name!r} is not a property")
    for value in node.get("enum", []):
        if not _type_matches(value, node):
            errors.append(f"{path}: enum value {value!r} does not match type {t}")
    list_type = node.get("x-kubernetes-list-type")
    if list_type is not None:
        if t != "array" or list_type not in ("atomic", "set", "map"):
            errors.append(f"{path}: bad x-kubernetes-list-type {list_type!r}")
        if list_type == "map":
            items = node.get("items") or {}
            keys = node.get("x-kubernetes-list-map-keys") or []
            if items.get("type") != "object" or not keys:
                errors.append(f"{path}: a map list needs object items and list-map-keys")
            for key in keys:
                item_props = items.get("properties") or {}
                if key not in item_props:
                    errors.append(f"{path}: list-map-key {key!r} is not an item property")
                elif key not in items.get("required", []) and "default" not in item_props[key]:
                    errors.append(f"{path}: list-map-key {key!r} must be required or defaulted")
    map_type = node.get("x-kubernetes-map-type")
    if map_type is not None and (t != "object" or map_type not in ("atomic", "granular")):
        errors.append(f"{path}: bad x-kubernetes-map-type {map_type!r}")
    if "default" in node:
        errors.extend(_default_errors(path, node))
    return errors


def _default_errors(path: str, node: dict[str, Any]) -> list[str]:
    """A default must validate against its own schema and must survive pruning."""
    if ".properties[metadata]" in path:
        return [f"{path}: defaults are not allowed in metadata"]
    validator = jsonschema.Draft4Validator(to_json_schema(node))
    return [f"{path}: default {node['default']!r}: {e.message}" for e in validator.iter_errors(
        node["default"])]  # fmt: skip


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema (draft 4) equivalent of an openAPIV3Schema node, for ``jsonschema``."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "default", "example", "format"):
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(child) for name, child in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(v) for v in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("format") == "date-time":
        out["pattern"] = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"
    # Structural schemas prune unknown fields; a sample with one is a mistake worth failing on.
    closed = "properties" in node and "additionalProperties" not in node
    if closed and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def apply_defaults(node: dict[str, Any], obj: Any) -> Any:
    """``obj`` with the schema's defaults filled in, as the API server does on create."""
    obj = copy.deepcopy(obj)
    if isinstance(obj, dict):
        for name, child in (node.get("properties") or {}).items():
            if name not in obj and "default" in child:
                obj[name] = copy.deepcopy(child["default"])
            if name in obj:
                obj[name] = apply_defaults(child, obj[name])
    elif isinstance(obj, list) and isinstance(node.get("items"), dict):
        obj = [apply_defaults(node["items"], item) for item in obj]
    return obj


def resolve_json_path(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    """The schema node a simple printer-column JSONPath points at (None if there is none).

    Handles ``.a.b``, ``.a[*].b`` and filters ``.a[?(@.type=="Ready")].b`` (the filter selects
    array items, so it resolves like ``[*]``). ``.metadata.X`` resolves to ObjectMeta fields.
    """
    if not json_path.startswith("."):
        return None
    steps = re.findall(r"\.([A-Za-z0-9_-]+)|\[(\*|\?\(@\.[A-Za-z]+==\"[^\"]*\"\))\]", json_path)
    if "".join(f".{a}" if a else f"[{b}]" for a, b in steps) != json_path:
        return None
    node: dict[str, Any] | None = schema
    names = [a or "[]" for a, _ in steps]
    if names[:1] == ["metadata"]:
        ok = len(names) == 2 and names[1] in METADATA_FIELDS
        return {"type": "string"} if ok else None
    for name in names:
        if node is None:
            return None
        if name == "[]":
            node = node.get("items") if node.get("type") == "array" else None
        else:
            node = (node.get("properties") or {}).get(name)
    return node


def crd_errors(crd: dict[str, Any]) -> list[str]:
    """Everything the API server would reject in this CustomResourceDefinition object."""
    errors: list[str] = []
    if crd.get("apiVersion") != "apiextensions.k8s.io/v1":
        errors.append("apiVersion must be apiextensions.k8s.io/v1")
    if crd.get("kind") != "CustomResourceDefinition":
        errors.append("kind must be CustomResourceDefinition")
    errors += [f"unknown top-level field {k!r}" for k in set(crd) - CRD_TOP_KEYS]
    spec = crd.get("spec") or {}
    errors += [f"spec: unknown field {k!r}" for k in set(spec) - CRD_SPEC_KEYS]
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group", ""), names.get("plural", ""), names.get("kind", "")
    if crd.get("metadata", {}).get("name") != f"{plural}.{group}":
        errors.append(f"metadata.name must be {plural}.{group}")
    if "." not in group:
        errors.append("spec.group must be a domain name with a dot")
    if not _DNS_LABEL.match(plural) or plural != plural.lower():
        errors.append("spec.names.plural must be a lowercase DNS label")
    singular = names.get("singular", "")
    if singular != kind.lower():
        errors.append("spec.names.singular must be the lowercase kind")
    if names.get("listKind", f"{kind}List") != f"{kind}List":
        errors.append("spec.names.listKind must be <kind>List")
    if not re.match(r"^[A-Z][A-Za-z0-9]*$", kind):
        errors.append("spec.names.kind must be CamelCase")
    for short in names.get("shortNames", []):
        if not _DNS_LABEL.match(short):
            errors.append(f"spec.names.shortNames: {short!r} is not a lowercase DNS label")
    if spec.get("scope") not in ("Cluster", "Namespaced"):
        errors.append("spec.scope must be Cluster or Namespaced")
    if spec.get("preserveUnknownFields"):
        errors.append("spec.preserveUnknownFields must be false in v1")
    versions = spec.get("versions") or []
    if [v.get("storage") for v in versions].count(True) != 1:
        errors.append("exactly one version must be the storage version")
    for i, version in enumerate(versions):
        errors += _version_errors(f"spec.versions[{i}]", version)
    return errors


def _version_errors(path: str, version: dict[str, Any]) -> list[str]:
    errors = [f"{path}: unknown field {k!r}" for k in set(version) - VERSION_KEYS]
    schema = (version.get("schema") or {}).get("openAPIV3Schema")
    if schema is None:
        return [*errors, f"{path}.schema.openAPIV3Schema is required in v1"]
    errors += structural_errors(schema, f"{path}.schema.openAPIV3Schema")
    subresources = version.get("subresources") or {}
    if "status" in subresources and "status" not in (schema.get("properties") or {}):
        errors.append(f"{path}: a status subresource needs a status property")
    seen: set[str] = set()
    for j, col in enumerate(version.get("additionalPrinterColumns", [])):
        cpath = f"{path}.additionalPrinterColumns[{j}]"
        name = col.get("name", "")
        if not name or name.lower() in seen:
            errors.append(f"{cpath}: name missing or duplicated")
        seen.add(name.lower())
        if col.get("type") not in PRINTER_TYPES:
            errors.append(f"{cpath}: type {col.get('type')!r} is not a printer column type")
        if resolve_json_path(schema, col.get("jsonPath", "")) is None:
            errors.append(f"{cpath}: jsonPath {col.get('jsonPath')!r} names no schema field")
    return errors

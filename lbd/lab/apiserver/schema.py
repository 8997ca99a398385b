"""Structural-schema handling of custom resources: pruning, defaulting, validation.

The order is the real server's: ``null`` values of non-nullable fields are dropped, unknown
fields are pruned (unless ``x-kubernetes-preserve-unknown-fields``), ``default``s are applied
(also inside array items and ``additionalProperties``), then the object is validated. Validation
uses :mod:`jsonschema` on a copy of the openAPIV3Schema translated to JSON Schema
(``nullable`` and ``x-kubernetes-int-or-string`` become type unions); each error becomes a 422
cause whose ``field`` is the Kubernetes field path (``spec.addresses[0]``).

Not evaluated: CEL rules (``x-kubernetes-validations``), ``x-kubernetes-list-type`` uniqueness.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from lbd.lab.apiserver.errors import Cause

_ROOT_META = ("apiVersion", "kind", "metadata")


def prune_and_default(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Prune unknown fields and apply defaults in place (root metadata is left alone).

    Returns the paths of the unknown fields that were pruned (for ``fieldValidation=Strict``).
    """
    pruned: list[str] = []
    meta = {k: obj.pop(k) for k in _ROOT_META if k in obj}
    _walk(obj, {**schema, "type": "object"}, "", pruned)
    obj.update(meta)
    return pruned


class _Drop:
    pass


_DROP: Any = _Drop()


def _walk(value: Any, schema: dict[str, Any], path: str, pruned: list[str]) -> Any:
    if value is None:
        return None if schema.get("nullable") else _DROP
    if schema.get("x-kubernetes-embedded-resource") or not schema:
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        for key in list(value):
            sub_path = f"{path}.{key}" if path else key
            if props and key in props:
                sub = _walk(value[key], props[key], sub_path, pruned)
            elif isinstance(addl, dict):
                sub = _walk(value[key], addl, sub_path, pruned)
            elif preserve or addl is True or schema.get("type") != "object":
                sub = value[key]
            else:
                pruned.append(sub_path)
                sub = _DROP  # structural schemas prune fields they do not declare
            if sub is _DROP:
                del value[key]
            else:
                value[key] = sub
        if props:
            _apply_defaults(value, props)
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            out = []
            for i, item in enumerate(value):
                sub = _walk(item, items, f"{path}[{i}]", pruned)
                out.append(None if sub is _DROP else sub)
            return out
    return value


def _apply_defaults(obj: dict[str, Any], props: dict[str, Any]) -> None:
    for key, sub in props.items():
        if key not in obj and "default" in sub:
            obj[key] = _walk(copy.deepcopy(sub["default"]), sub, "", [])


def _to_jsonschema(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: _to_jsonschema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = _to_jsonschema(value)
        elif key.startswith("x-") or key in ("nullable", "default", "example", "externalDocs"):
            continue
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if schema.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
        pass
    return out


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    import jsonschema

    schema = _to_jsonschema(json.loads(schema_json))
    # metadata is validated by the server itself, not by the CRD schema
    if isinstance(schema.get("properties"), dict):
        schema["properties"].pop("metadata", None)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, format_checker=None)


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why an openAPIV3Schema cannot be used to validate objects (None: it can)."""
    import jsonschema

    try:
        translated = _to_jsonschema(schema)
        cls = jsonschema.validators.validator_for(translated, default=jsonschema.Draft7Validator)
        cls.check_schema(translated)
    except jsonschema.SchemaError as exc:
        return str(exc.message)
    except (TypeError, AttributeError, ValueError) as exc:
        return str(exc)
    return None


def _field_path(path: Any) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def validate(obj: dict[str, Any], schema: dict[str, Any]) -> list[Cause]:
    validator = _validator(json.dumps(schema, sort_keys=True))
    causes: list[Cause] = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        path = _field_path(err.absolute_path)
        reason = "FieldValueInvalid"
        if err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else ""
            path = f"{path}.{missing}" if path != "<root>" else missing
            reason = "FieldValueRequired"
            msg = "Required value"
        elif err.validator == "enum":
            reason = "FieldValueNotSupported"
            allowed = ", ".join(json.dumps(v) for v in err.validator_value)
            msg = f"Unsupported value: {json.dumps(err.instance)}: supported values: {allowed}"
        elif err.validator == "type":
            msg = (
                f"Invalid value: {json.dumps(err.instance)[:80]}: {path} in body must be of "
                f"type {err.validator_value}: {json.dumps(err.instance)[:80]}"
            )
        else:
            msg = f"Invalid value: {json.dumps(err.instance)[:80]}: {err.message}"
        causes.append(Cause(reason, msg, path))
    return causes

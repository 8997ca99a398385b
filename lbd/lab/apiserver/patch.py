"""The three patch formats of the Kubernetes API.

- JSON merge patch (RFC 7386): maps merge recursively, ``null`` deletes, lists are replaced.
- JSON patch (RFC 6902): add / remove / replace / move / copy / test on RFC 6901 pointers.
- Strategic merge patch: a merge patch in which some lists merge by a key instead of being
  replaced. The keys come from the Go struct tags of the core types (``patchMergeKey`` /
  ``patchStrategy``); :data:`PATCH_META` lists the ones of the types this server stores that lbd
  and kubectl touch (``conditions`` by ``type``, Service ``ports`` by ``port``, ``finalizers`` as
  a set, ...). Lists not in the table are replaced, which is also what the real server does for
  fields without a strategy (``status.loadBalancer.ingress``, EndpointSlice ``endpoints``).
  Directives kubectl sends are understood: ``$patch: replace|delete|merge``, ``$retainKeys``,
  ``$deleteFromPrimitiveList/<field>`` and ``$setElementOrder/<field>``.

All functions work on private copies: the caller passes an object it owns.
"""

from __future__ import annotations

import copy
from typing import Any

from lbd.lab.apiserver.errors import ApiError, Cause, bad_request


class PatchError(Exception):
    """A patch that is well-formed but cannot be applied (422 Invalid)."""


# -- JSON merge patch ------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# -- JSON patch --------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r}")
    idx = int(token)
    limit = len(container) + (1 if allow_end else 0)
    if idx >= limit:
        raise PatchError(f"array index {idx} out of bounds")
    return idx


def _parent(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict):
            if tok not in cur:
                raise PatchError(f"missing path element {tok!r}")
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_index(cur, tok, allow_end=False)]
        else:
            raise PatchError(f"cannot descend into {tok!r}")
    return cur


def _slot(doc: Any, tokens: list[str], verb: str, *, adding: bool = False) -> tuple[Any, Any]:
    """The container the last token points into and its key there: a member that must exist
    (a new one may be named when ``adding``), or a list index (``-``, the end, when adding)."""
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if not adding and last not in parent:
            raise PatchError(f"missing path element {last!r}")
        return parent, last
    if isinstance(parent, list):
        return parent, _index(parent, last, allow_end=adding)
    raise PatchError(f"cannot {verb} {last!r}")


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent, key = _slot(doc, tokens, "read")
    return parent[key]


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, key = _slot(doc, tokens, "add", adding=True)
    if isinstance(parent, list):
        parent.insert(key, value)
    else:
        parent[key] = value
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent, key = _slot(doc, tokens, "remove")
    del parent[key]
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise bad_request(
            "json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp"
        )
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid JSON patch operation: {op!r}")
        kind = op["op"]
        tokens = _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, tokens)
        elif kind == "replace":
            _get(doc, tokens)
            if not tokens:
                doc = copy.deepcopy(op.get("value"))
            else:
                doc = _remove(doc, tokens)
                doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = copy.deepcopy(_get(doc, src))
            if kind == "move":
                doc = _remove(doc, src)
            doc = _add(doc, tokens, value)
        elif kind == "test":
            if _get(doc, tokens) != op.get("value"):
                raise PatchError(f"testing value {op['path']} failed")
        else:
            raise bad_request(f"Unexpected kind: {kind}")
    return doc


# -- strategic merge patch ---------------------------------------------------------------------

#: (kind, dotted path) -> merge key, or "" for a list of primitives merged as a set.
#: ``*`` in a path stands for "any item of the list at this point".
PATCH_META: dict[tuple[str, str], str] = {
    ("*", "metadata.finalizers"): "",
    ("*", "metadata.ownerReferences"): "uid",
    ("Service", "spec.ports"): "port",
    ("Service", "status.conditions"): "type",
    ("Service", "status.loadBalancer.ingress.*.ports"): "",
    ("Node", "status.conditions"): "type",
    ("Node", "status.addresses"): "type",
    ("Node", "spec.taints"): "key",
    ("Node", "status.images"): "",
    ("Namespace", "status.conditions"): "type",
    ("Pod", "spec.containers"): "name",
    ("Pod", "spec.containers.*.ports"): "containerPort",
    ("Pod", "spec.containers.*.env"): "name",
    ("Pod", "spec.volumes"): "name",
    ("Pod", "status.conditions"): "type",
    ("Deployment", "spec.template.spec.containers"): "name",
    ("Deployment", "spec.template.spec.containers.*.env"): "name",
    ("Deployment", "spec.template.spec.containers.*.ports"): "containerPort",
    ("Deployment", "spec.template.spec.volumes"): "name",
    ("Deployment", "status.conditions"): "type",
    ("DaemonSet", "spec.template.spec.containers"): "name",
    ("DaemonSet", "spec.template.spec.containers.*.env"): "name",
    ("DaemonSet", "spec.template.spec.containers.*.ports"): "containerPort",
    ("DaemonSet", "spec.template.spec.volumes"): "name",
    ("DaemonSet", "status.conditions"): "type",
    ("ServiceAccount", "secrets"): "name",
}


def _meta(kind: str, path: str) -> str | None:
    key = PATCH_META.get((kind, path))
    if key is None:
        key = PATCH_META.get(("*", path))
    return key


def strategic_merge_patch(kind: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    out: dict[str, Any] = _smp_map(kind, "", target, patch)
    return out


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _smp_map(kind: str, path: str, target: Any, patch: dict[str, Any]) -> Any:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(out.get(field), list) and isinstance(value, list):
                out[field] = [v for v in out[field] if v not in value]
            continue
        sub = _child(path, key)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            merged = _smp_map(kind, sub, out.get(key), value)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            out[key] = _smp_list(kind, sub, out.get(key), value)
        else:
            out[key] = value
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    for key, order in patch.items():
        if key.startswith("$setElementOrder/") and isinstance(order, list):
            field = key.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = _reorder(kind, _child(path, field), out[field], order)
    return out


def _reorder(kind: str, path: str, items: list[Any], order: list[Any]) -> list[Any]:
    mkey = _meta(kind, path)
    if mkey is None:
        return items

    def ident(item: Any) -> Any:
        return item.get(mkey) if mkey and isinstance(item, dict) else item

    wanted = [ident(o) for o in order]
    pos = {json_key(w): i for i, w in enumerate(wanted)}
    return sorted(items, key=lambda it: pos.get(json_key(ident(it)), len(pos)))


def json_key(value: Any) -> str:
    return repr(value)


def _smp_list(kind: str, path: str, target: Any, patch: list[Any]) -> list[Any]:
    mkey = _meta(kind, path)
    current = list(target) if isinstance(target, list) else []
    if mkey is None:
        # no strategy: replace, but a replace directive item must not leak into the object
        return [copy.deepcopy(v) for v in patch if not (isinstance(v, dict) and "$patch" in v)]
    if mkey == "":
        # list of primitives with the merge strategy: set union, keeping order
        for v in patch:
            if v not in current:
                current.append(v)
        return current
    if any(isinstance(v, dict) and v.get("$patch") == "replace" for v in patch):
        return [copy.deepcopy(v) for v in patch if not (isinstance(v, dict) and "$patch" in v)]
    item_path = f"{path}.*"
    for item in patch:
        if not isinstance(item, dict) or mkey not in item:
            raise PatchError(f"map: {item!r} does not contain declared merge key: {mkey}")
        idx = next(
            (
                i
                for i, cur in enumerate(current)
                if isinstance(cur, dict) and cur.get(mkey) == item[mkey]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                del current[idx]
            continue
        if idx is None:
            current.append(_smp_map(kind, item_path, {}, item))
        else:
            current[idx] = _smp_map(kind, item_path, current[idx], item)
    return current


def as_invalid(kind: str, group: str, name: str, err: PatchError) -> ApiError:
    from lbd.lab.apiserver.errors import invalid

    return invalid(kind, group, name, [Cause("FieldValueInvalid", str(err), "patch")])

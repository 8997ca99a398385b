"""Resource semantics: what create, update, patch, delete and status writes do to the store.

This module knows nothing about HTTP; :mod:`lbd.lab.apiserver.http` parses requests into calls
here. The rules reproduced are the ones controllers depend on (``k8s.io/apiserver`` generic
registry): ``resourceVersion`` preconditions give 409 Conflict; a write to ``/status`` changes
only ``status`` and a write to the main resource never changes ``status`` (when the resource has
a status subresource); ``metadata.generation`` counts changes outside metadata and status;
a delete of an object with finalizers only sets ``deletionTimestamp`` and the object disappears
when its last finalizer is removed; a write that changes nothing is a no-op that keeps the
resourceVersion and emits no watch event. Deleting an owner deletes the objects whose
``ownerReferences`` name it once none of their owners is left (the garbage collector's
background propagation, done synchronously); a dependent created with an owner that is
already gone is not collected. A deleted namespace turns Terminating at once and loses its
content a moment later, as the namespace controller removes it on a cluster.

Every read-modify-write happens under the store lock, so concurrent writers are serialised the
way etcd's compare-and-swap serialises them, and a stale writer gets 409 instead of winning.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lbd.lab.apiserver import builtin, schema
from lbd.lab.apiserver.errors import (
    ApiError,
    Cause,
    already_exists,
    bad_request,
    conflict,
    forbidden_cause,
    invalid,
    invalid_value_cause,
    not_found,
    required_cause,
    unsupported_media_type,
)
from lbd.lab.apiserver.patch import (
    PatchError,
    as_invalid,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from lbd.lab.apiserver.resources import CRD_GROUP, Registry, ResourceType
from lbd.lab.apiserver.selectors import Selector
from lbd.lab.apiserver.store import ObjectKey, Store, Stored

PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NS_GR = ("", "namespaces")
_GENERATION_GROUPS = ("apps", "policy", CRD_GROUP)
CRD_GR = (CRD_GROUP, "customresourcedefinitions")


@dataclass(frozen=True, slots=True)
class WriteOptions:
    """How a create, update or patch is made, from its query (metav1.CreateOptions,
    UpdateOptions and PatchOptions): ``dryRun`` (validate, store nothing) and
    ``fieldValidation=Strict`` (an unknown field of a custom resource is an error, not pruned)."""

    dry_run: bool = False
    strict: bool = False


PLAIN_WRITE = WriteOptions()


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _strip_volatile(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: v
        for k, v in obj.get("metadata", {}).items()
        if k not in ("resourceVersion", "managedFields")
    }
    return {**obj, "metadata": meta}


def _without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


class Api:
    """The resource operations. ``now`` supplies wall-clock timestamps (injectable for tests)."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        *,
        now: Callable[[], str] = utc_now,
    ) -> None:
        self.registry = registry
        self.store = store
        self.now = now
        #: How long a deleted namespace stays Terminating with its content before that is
        #: deleted. kube-apiserver only marks the namespace; the namespace controller removes
        #: the content seconds later, so ``kubectl delete -k`` (namespace first) still deletes
        #: each object of the namespace itself; 0 deletes at once.
        self.namespace_cleanup_seconds = 2.0
        self.alloc = builtin.IpAllocator()
        for ns in DEFAULT_NAMESPACES:
            rt = registry.lookup("", "v1", "namespaces")
            assert rt is not None
            self.create(rt, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # -- helpers ------------------------------------------------------------------------------

    def _key(self, rt: ResourceType, namespace: str, name: str) -> ObjectKey:
        return (namespace if rt.namespaced else "", name)

    def _existing(self, rt: ResourceType, namespace: str, name: str) -> Stored:
        found = self.store.get(rt.key, self._key(rt, namespace, name))
        if found is None:
            raise not_found(rt.plural, rt.group, name)
        return found

    def view(self, rt: ResourceType, stored: Stored) -> bytes:
        """The object's bytes as seen through ``rt``'s version (None conversion for CRDs)."""
        if stored.obj.get("apiVersion") == rt.api_version:
            return stored.raw
        obj = dict(stored.obj)
        obj["apiVersion"] = rt.api_version
        return json.dumps(obj, separators=(",", ":")).encode()

    def _check_body(
        self, rt: ResourceType, namespace: str, name: str | None, body: Any
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request(f"the body of the request must be a {rt.kind} object")
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if kind and kind != rt.kind:
            raise bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {kind}: '
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        if api_version and api_version != rt.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})"
            )
        body["kind"], body["apiVersion"] = rt.kind, rt.api_version
        meta = body.get("metadata")
        if meta is None:
            meta = body["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        for f in ("name", "generateName", "namespace", "resourceVersion", "uid"):
            if meta.get(f) is not None and not isinstance(meta[f], str):
                raise bad_request(
                    f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                    f"json: cannot unmarshal {type(meta[f]).__name__} into Go struct field "
                    f"ObjectMeta.metadata.{f} of type string"
                )
        for f in ("labels", "annotations"):
            value = meta.get(f)
            if value is not None and (
                not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
            ):
                raise bad_request(
                    f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                    f"metadata.{f} must be a map of strings"
                )
        for f in ("finalizers",):
            value = meta.get(f)
            if value is not None and (
                not isinstance(value, list) or not all(isinstance(v, str) for v in value)
            ):
                raise bad_request(f"metadata.{f} must be a list of strings")
        refs = meta.get("ownerReferences")
        if refs is not None and (
            not isinstance(refs, list)
            or not all(isinstance(r, dict) and isinstance(r.get("uid"), str) for r in refs)
        ):
            raise bad_request("metadata.ownerReferences must be a list of objects with a uid")
        if name is not None and meta.get("name") and meta["name"] != name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if name is not None:
            meta["name"] = name
        if not rt.custom and rt.group != "events.k8s.io":
            why = builtin.shape_error(rt.kind, body)
            if why:
                raise bad_request(
                    f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {why}'
                )
        return body

    def _require_namespace(self, rt: ResourceType, namespace: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.get(NS_GR, ("", namespace))
        if ns is None:
            raise not_found("namespaces", "", namespace)
        if ns.obj["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f'{rt.plural} "{ns.obj["metadata"]["name"]}" is forbidden: unable to create new '
                f"content in namespace {namespace} because it is being terminated",
                {"name": namespace, "kind": rt.plural},
            )

    def _validate(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        name = obj["metadata"].get("name", "")
        causes = builtin.validate_name(rt.kind, name)
        if rt.custom and rt.schema:
            causes += schema.validate(obj, rt.schema)
        elif not rt.custom:
            causes += builtin.validate(rt.kind, obj)
        labels = obj["metadata"].get("labels")
        if labels is not None and (
            not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values())
        ):
            causes.append(Cause("FieldValueInvalid", "labels must be strings", "metadata.labels"))
        if causes:
            raise invalid(rt.kind, rt.group, name, causes)

    def _prepare(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        *,
        strict: bool = False,
    ) -> None:
        if rt.custom and rt.schema:
            pruned = schema.prune_and_default(obj, rt.schema)
            if pruned and strict:
                raise bad_request(
                    "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in pruned)
                )
        if rt.kind == "Service" and not rt.group:
            if old is None:
                builtin.prepare_service_create(obj, self.alloc)
            else:
                builtin.prepare_service_update(obj, old, self.alloc)
        elif rt.kind == "Secret" and not rt.group:
            builtin.prepare_secret(obj)
        elif rt.kind == "Namespace" and not rt.group and old is None:
            # as kube-apiserver: a new namespace always carries the "kubernetes" finalizer
            spec = obj["spec"] = obj.get("spec") or {}
            finalizers = spec["finalizers"] = list(spec.get("finalizers") or [])
            if "kubernetes" not in finalizers:
                finalizers.append("kubernetes")
            obj["status"] = {"phase": "Active"}
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj[
                "metadata"
            ]["name"]
        elif rt.kind == "Pod" and not rt.group and old is None:
            builtin.prepare_pod_create(obj)
        elif rt.key == CRD_GR:
            self._prepare_crd(obj)

    def _prepare_crd(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        causes = []
        if not spec.get("group"):
            causes.append(Cause("FieldValueRequired", "Required value", "spec.group"))
        for f in ("plural", "kind"):
            if not names.get(f):
                causes.append(Cause("FieldValueRequired", "Required value", f"spec.names.{f}"))
        if not spec.get("versions"):
            causes.append(Cause("FieldValueRequired", "Required value", "spec.versions"))
        for i, ver in enumerate(spec.get("versions") or []):
            if not ver.get("name"):
                causes.append(
                    Cause("FieldValueRequired", "Required value", f"spec.versions[{i}].name")
                )
            found = (ver.get("schema") or {}).get("openAPIV3Schema")
            problem = schema.schema_problem(found) if found is not None else None
            if problem:
                causes.append(
                    Cause(
                        "FieldValueInvalid",
                        f"Invalid value: {problem}",
                        f"spec.versions[{i}].schema.openAPIV3Schema",
                    )
                )
        expected = f"{names.get('plural')}.{spec.get('group')}"
        if obj["metadata"].get("name") != expected:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{obj["metadata"].get("name")}": must be spec.names.plural'
                    '+"."+spec.group',
                    "metadata.name",
                )
            )
        if causes:
            raise invalid("CustomResourceDefinition", CRD_GROUP, obj["metadata"]["name"], causes)
        accepted = dict(names)
        accepted.setdefault("singular", names["kind"].lower())
        accepted.setdefault("listKind", f"{names['kind']}List")
        obj["status"] = {
            "acceptedNames": accepted,
            "conditions": [
                {
                    "type": t,
                    "status": "True",
                    "reason": r,
                    "message": m,
                    "lastTransitionTime": self.now(),
                }
                for t, r, m in (
                    ("NamesAccepted", "NoConflicts", "no conflicts found"),
                    ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                )
            ],
            "storedVersions": [
                v["name"] for v in spec.get("versions", []) if v.get("storage", False)
            ],
        }

    def _default_service_account(self, namespace: str) -> None:
        """The ``default`` ServiceAccount every namespace has (the serviceaccount controller
        makes it on a cluster)."""
        sa_rt = self.registry.lookup("", "v1", "serviceaccounts")
        assert sa_rt is not None
        with contextlib.suppress(ApiError):  # made already (a namespace created again)
            self.create(sa_rt, namespace, {"metadata": {"name": "default"}})

    def _after_write(self, rt: ResourceType, stored: Stored, deleted: bool) -> None:
        if rt.kind == "Service" and not rt.group:
            self.alloc.sync(_obj_key(stored), None if deleted else stored.obj)
            return
        if rt.key != CRD_GR:
            return
        if deleted:
            self.registry.remove_crd(stored.obj)
            spec = stored.obj.get("spec", {})
            self.store.drop_resource((spec.get("group", ""), spec.get("names", {}).get("plural")))
        else:
            self.registry.add_crd(stored.obj)

    # -- verbs ----------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Stored:
        return self._existing(rt, namespace, name)

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None,
        selector: Selector,
        *,
        limit: int = 0,
        continue_token: str | None = None,
    ) -> tuple[list[Stored], int, str | None, int | None]:
        """Items, collection resourceVersion, continue token, remaining item count."""
        items, rv = self.store.snapshot(rt.key, namespace if rt.namespaced else None)
        if continue_token:
            try:
                start = tuple(json.loads(_unb64(continue_token)))
            except ValueError as exc:
                raise bad_request(f"continue key is not valid: {exc}") from exc
            items = [s for s in items if _obj_key(s) > start]
        if not selector.empty:
            items = [s for s in items if selector.matches(s.obj)]
        token = None
        remaining = None
        if limit and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            token = _b64(json.dumps(list(_obj_key(items[-1]))))
        return items, rv, token, remaining

    def create(
        self, rt: ResourceType, namespace: str, body: Any, opts: WriteOptions = PLAIN_WRITE
    ) -> Stored:
        obj = self._check_body(rt, namespace, None, body)
        meta = obj["metadata"]
        with self.store.lock:
            self._require_namespace(rt, namespace)
            if not meta.get("name"):
                if meta.get("generateName"):
                    meta["name"] = meta["generateName"] + "".join(
                        secrets.choice(_NAME_CHARS) for _ in range(5)
                    )
                else:
                    raise invalid(
                        rt.kind,
                        rt.group,
                        "",
                        [required_cause("metadata.name", "name or generateName is required")],
                    )
            key = self._key(rt, namespace, meta["name"])
            if self.store.get(rt.key, key) is not None:
                raise already_exists(rt.plural, rt.group, meta["name"])
            if rt.status_subresource and (rt.custom or rt.kind == "Service"):
                obj.pop("status", None)
            for f in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
                meta.pop(f, None)
            self._prepare(rt, obj, None, strict=opts.strict)
            builtin.default(rt.kind if not rt.group else "", obj)
            self._validate(rt, obj)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = self.now()
            if rt.custom or rt.group in _GENERATION_GROUPS:
                # only some registries track generation (core/v1 kinds such as Service do not)
                meta["generation"] = 1
            if opts.dry_run:
                meta["resourceVersion"] = ""
                return Stored.of(obj)
            meta["resourceVersion"] = str(self.store.next_rv())
            stored = self.store.put(rt.key, key, obj, "ADDED")
            self._after_write(rt, stored, deleted=False)
            if rt.key == NS_GR:
                self._default_service_account(meta["name"])
            return stored

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        subresource: str,
        body: Any,
        *,
        opts: WriteOptions = PLAIN_WRITE,
    ) -> Stored:
        obj = self._check_body(rt, namespace, name, body)
        with self.store.lock:
            old = self._existing(rt, namespace, name)
            rv = obj["metadata"].get("resourceVersion")
            if not rv and rt.custom:
                cause = invalid_value_cause(
                    "metadata.resourceVersion", 0, "must be specified for an update"
                )
                raise invalid(rt.kind, rt.group, name, [cause])
            return self._write(rt, old, obj, subresource, opts)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        subresource: str,
        *,
        content_type: str,
        body: bytes,
        opts: WriteOptions = PLAIN_WRITE,
    ) -> Stored:
        ctype = content_type.split(";", maxsplit=1)[0].strip().lower()
        accepted = PATCH_TYPES if not rt.custom else (PATCH_TYPES[0], PATCH_TYPES[1])
        if ctype not in accepted:
            raise unsupported_media_type(ctype, (*accepted, "application/apply-patch+yaml"))
        try:
            patch = json.loads(body)
        except ValueError as exc:
            raise bad_request(f"error decoding patch: {exc}") from exc
        with self.store.lock:
            old = self._existing(rt, namespace, name)
            current = old.copy()
            try:
                if ctype == PATCH_TYPES[0]:
                    patched = json_patch(current, patch)
                elif ctype == PATCH_TYPES[1]:
                    if not isinstance(patch, dict):
                        raise bad_request("merge patch must be a JSON object")
                    patched = merge_patch(current, patch)
                else:
                    patched = strategic_merge_patch(rt.kind, current, patch)
            except PatchError as exc:
                raise as_invalid(rt.kind, rt.group, name, exc) from exc
            if not isinstance(patched, dict):
                raise bad_request("the patch did not produce an object")
            obj = self._check_body(rt, namespace, name, patched)
            return self._write(rt, old, obj, subresource, opts)

    def _write(
        self,
        rt: ResourceType,
        old: Stored,
        new: dict[str, Any],
        subresource: str,
        opts: WriteOptions,
    ) -> Stored:
        name = old.obj["metadata"]["name"]
        rv = new["metadata"].get("resourceVersion")
        if rv and rv != old.obj["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, rt.group, name)
        if subresource == "status":
            status = new.get("status")
            new = old.copy()
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif subresource:
            raise not_found(rt.plural, rt.group, name)
        elif rt.status_subresource:
            if "status" in old.obj:
                new["status"] = old.copy()["status"]
            else:
                new.pop("status", None)
        meta = new["metadata"]
        old_meta = old.obj["metadata"]
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if f in old_meta:
                meta[f] = old_meta[f]
            else:
                meta.pop(f, None)
        meta.pop("managedFields", None)
        meta["generation"] = old_meta.get("generation", 0)
        if not meta["generation"]:
            del meta["generation"]
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                detail = "no new finalizers can be added if the object is being deleted"
                raise invalid(
                    rt.kind, rt.group, name, [forbidden_cause("metadata.finalizers", detail)]
                )
        if subresource != "status":
            self._prepare(rt, new, old.obj, strict=opts.strict)
        builtin.default(rt.kind if not rt.group else "", new)
        self._validate(rt, new)
        if _strip_volatile(new) == _strip_volatile(old.obj):
            return old  # no-op: no new resourceVersion, no event (like the real server)
        if "generation" in old_meta and _without(new, "metadata", "status") != _without(
            old.obj, "metadata", "status"
        ):
            meta["generation"] = old_meta["generation"] + 1
        if opts.dry_run:
            return Stored.of(new)
        meta["resourceVersion"] = str(self.store.next_rv())
        key = (old_meta.get("namespace", ""), name)
        if old_meta.get("deletionTimestamp") and not meta.get("finalizers"):
            stored = self.store.remove(rt.key, key, new)
            self._after_write(rt, stored, deleted=True)
            self._collect_garbage(stored)
            self._namespace_emptied(key[0])
            return stored
        stored = self.store.put(rt.key, key, new, "MODIFIED")
        self._after_write(rt, stored, deleted=False)
        return stored

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> tuple[bool, Stored]:
        """Returns (deleted now, object); not deleted now means finalizers are pending."""
        options = options or {}
        with self.store.lock:
            old = self._existing(rt, namespace, name)
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old.obj["metadata"].get("uid"):
                raise conflict(
                    rt.plural,
                    rt.group,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object "
                    f"meta: {old.obj['metadata'].get('uid')}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != old.obj["metadata"].get(
                "resourceVersion"
            ):
                raise conflict(
                    rt.plural,
                    rt.group,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: "
                    f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                    f"{old.obj['metadata'].get('resourceVersion')}",
                )
            if dry_run:
                return True, old
            obj = old.copy()
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), name)
            if rt.key == NS_GR:
                return self._delete_namespace(rt, old)
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return False, old
                meta["deletionTimestamp"] = self.now()
                meta["deletionGracePeriodSeconds"] = 0
                meta["resourceVersion"] = str(self.store.next_rv())
                return False, self.store.put(rt.key, key, obj, "MODIFIED")
            meta["resourceVersion"] = str(self.store.next_rv())
            stored = self.store.remove(rt.key, key, obj)
            self._after_write(rt, stored, deleted=True)
            self._collect_garbage(stored)
            self._namespace_emptied(key[0])
            return True, stored

    def _collect_garbage(self, owner: Stored) -> None:
        """Delete the dependents of a deleted owner (background propagation, done at once).

        Like the garbage collector, a dependent goes only when none of its owners is left; its
        own finalizers are honoured (it gets a deletionTimestamp instead).
        """
        uid = owner.obj["metadata"].get("uid", "")
        for gr, (ns, name) in self.store.dependents(uid):
            dependent = self.store.get(gr, (ns, name))
            rtype = self.registry.storage_version(*gr)
            if dependent is None or rtype is None:
                continue
            refs = dependent.obj["metadata"].get("ownerReferences") or []
            if any(self.store.is_live(r.get("uid", "")) for r in refs if isinstance(r, dict)):
                continue
            try:
                self.delete(rtype, ns, name)
            except ApiError:
                continue

    def _delete_namespace(self, rt: ResourceType, old: Stored) -> tuple[bool, Stored]:
        """Mark the namespace Terminating; its content goes after ``namespace_cleanup_seconds``
        (see :attr:`namespace_cleanup_seconds`), then the namespace when it is empty."""
        name = old.obj["metadata"]["name"]
        current = old
        if not old.obj["metadata"].get("deletionTimestamp"):
            obj = old.copy()
            obj["metadata"]["deletionTimestamp"] = self.now()
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
            obj.setdefault("status", {})["phase"] = "Terminating"
            obj["metadata"]["resourceVersion"] = str(self.store.next_rv())
            current = self.store.put(NS_GR, ("", name), obj, "MODIFIED")
        if self.namespace_cleanup_seconds <= 0:
            self._empty_namespace(name)
        else:
            timer = threading.Timer(self.namespace_cleanup_seconds, self._empty_namespace, (name,))
            timer.daemon = True
            timer.start()
        after = self.store.get(NS_GR, ("", name))
        return after is None, after if after is not None else current

    def _empty_namespace(self, name: str) -> None:
        """What the namespace controller does: delete what a Terminating namespace holds."""
        with self.store.lock:
            for gr, key in self.store.namespaces_in_use(name):
                rtype = self.registry.storage_version(*gr)
                if rtype is None:
                    continue
                try:
                    self.delete(rtype, key[0], key[1])
                except ApiError:
                    continue
            ns = self.store.get(NS_GR, ("", name))
            if ns is not None and ns.obj["metadata"].get("deletionTimestamp"):
                self._namespace_emptied(name)

    def _namespace_emptied(self, namespace: str) -> None:
        if not namespace:
            return
        ns = self.store.get(NS_GR, ("", namespace))
        if ns is None or not ns.obj["metadata"].get("deletionTimestamp"):
            return
        if self.store.namespaces_in_use(namespace):
            return
        obj = ns.copy()
        obj["metadata"]["resourceVersion"] = str(self.store.next_rv())
        self._collect_garbage(self.store.remove(NS_GR, ("", namespace), obj))

    def delete_collection(
        self, rt: ResourceType, namespace: str | None, selector: Selector
    ) -> list[Stored]:
        with self.store.lock:
            items, _, _, _ = self.list_objects(rt, namespace, selector)
            out = []
            for s in items:
                meta = s.obj["metadata"]
                try:
                    _, obj = self.delete(rt, meta.get("namespace", ""), meta["name"])
                except ApiError:
                    continue
                out.append(obj)
            return out


def _obj_key(s: Stored) -> tuple[str, str]:
    meta = s.obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


def _b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    import base64

    try:
        return base64.urlsafe_b64decode(text.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from exc

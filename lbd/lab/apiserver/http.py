"""The HTTP front end: URL scheme, authentication, authorization, faults, watch streaming.

One thread per connection (``ThreadingHTTPServer``) with HTTP/1.1 keep-alive, so a client's
connection pool is reused across requests. Each response is written with one ``send`` (status
line, headers and body together) and ``TCP_NODELAY``, which avoids the Nagle / delayed-ACK
stalls that otherwise cost 40 ms per request. Watches are chunked responses of JSON lines fed by
the watcher's queue (a burst of events goes out as one chunk, one ``send``); an idle watch wakes
up every second to send bookmarks, honour ``timeoutSeconds`` and notice that its client went
away.

A client that goes away mid-request (a killed speaker, a closed watch) is normal operation, not
a server error: resets and broken pipes end the connection with one debug line, never a
traceback on stderr (which is what ``socketserver`` prints for an exception leaving ``handle``).
"""

from __future__ import annotations

import json
import logging
import queue
import select
import socket
import ssl
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from lbd.lab.apiserver import errors, negotiate, openapi, protobuf, resources, tables
from lbd.lab.apiserver.api import WriteOptions
from lbd.lab.apiserver.errors import ApiError
from lbd.lab.apiserver.negotiate import Representation
from lbd.lab.apiserver.rbac import Attributes, User
from lbd.lab.apiserver.resources import ResourceType
from lbd.lab.apiserver.selectors import build_selector
from lbd.lab.apiserver.store import CLOSE, Stored, TooOldError, WatchEvent

if TYPE_CHECKING:
    from lbd.lab.apiserver.server import LabApiServer

log = logging.getLogger("lbd.lab.apiserver")

# The peer closed or reset the connection (TLS: it went away without a close_notify).
PEER_GONE = (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-lbd-lab",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True, slots=True)
class Route:
    """A parsed resource URL."""

    rt: ResourceType
    namespace: str
    name: str
    subresource: str
    watch_prefix: bool


def parse_route(lab: LabApiServer, path: str) -> Route | dict[str, Any] | None:
    """A :class:`Route`, a discovery document, or None for an unknown path."""
    parts = [p for p in path.split("/") if p]
    reg = lab.registry
    if not parts:
        return None
    if parts[0] == "api":
        if len(parts) == 1:
            return resources.api_versions_doc(lab.address)
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) == 1:
            return resources.group_list_doc(reg)
        group = parts[1]
        if len(parts) == 2:
            versions = reg.groups().get(group)
            return resources.group_doc(group, versions) if versions and group else None
        version, rest = parts[2], parts[3:]
    else:
        return None
    if not reg.has_group_version(group, version):
        return None
    if not rest:
        return resources.resource_list_doc(reg, group, version)
    watch_prefix = False
    if rest[0] == "watch":
        watch_prefix, rest = True, rest[1:]
        if not rest:
            return None
    if len(rest) >= 3 and rest[0] == "namespaces":
        rt = reg.lookup(group, version, rest[2])
        if rt is not None and rt.namespaced and len(rest) <= 5:
            name = rest[3] if len(rest) > 3 else ""
            sub = rest[4] if len(rest) > 4 else ""
            return Route(rt, rest[1], name, sub, watch_prefix)
    rt = reg.lookup(group, version, rest[0])
    if rt is None or len(rest) > 3:
        return None
    if rt.namespaced and len(rest) > 1:
        return None
    return Route(
        rt, "", rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else "", watch_prefix
    )


def _first(query: dict[str, list[str]], key: str) -> str | None:
    vals = query.get(key)
    return vals[0] if vals else None


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1", "")


_MAX_LINE = 65536
#: watch events written with one send at most (a burst of writes becomes a few large chunks)
_BATCH = 256
TOO_LARGE_WAIT = 3.0
"""Seconds a read from a future resourceVersion waits (kube-apiserver's ``blockTimeout``)."""
_BODY_TYPES = ("application/json", "application/yaml", "application/x-yaml", "*/*")
#: what kube-apiserver names in a 415 for a built-in resource
_INPUT_TYPES = negotiate.BUILTIN_TYPES
_MAX_HEADERS = 100


class _Headers(dict[str, str]):
    """Request headers, looked up case-insensitively (keys are stored lower-case)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


TOO_MANY_REQUESTS = b"Too many requests, please try again later.\n"
"""kube-apiserver's 429 body (``apiserver/pkg/server/filters/priority-and-fairness.go``)."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "lbd-lab-apiserver"
    lab: LabApiServer  # set on the subclass the server builds
    _table_watch = False
    _rep = Representation()  # what the request's Accept selected (negotiate.py)

    # -- plumbing -------------------------------------------------------------------------------

    def handle(self) -> None:
        """Serve the connection's requests; a peer that disconnects just ends it."""
        try:
            super().handle()
        except PEER_GONE as exc:
            self.close_connection = True
            log.debug("client %s disconnected: %r", self.client_address, exc)

    def handle_one_request(self) -> None:
        """Read one request and serve it.

        Replaces the stdlib's version, whose header parsing goes through :mod:`email` and costs
        more than serving a typical request here. Header names are matched case-insensitively;
        a malformed request line or header block gets 400 and the connection is closed.
        """
        try:
            line = self.rfile.readline(_MAX_LINE + 1)
            if not line:
                self.close_connection = True
                return
            if len(line) > _MAX_LINE:
                self._reject(414, "request line too long")
                return
            parts = line.decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                self._reject(400, "malformed request line")
                return
            method, self.path, version = parts
            self.command, self.request_version = method, version
            self.requestline = line.decode("latin-1").strip()
            headers = _Headers()
            for _ in range(_MAX_HEADERS):
                raw = self.rfile.readline(_MAX_LINE + 1)
                if raw in (b"\r\n", b"\n", b""):
                    break
                name, sep, value = raw.decode("latin-1").partition(":")
                if not sep:
                    self._reject(400, "malformed header")
                    return
                headers[name.strip().lower()] = value.strip()
            else:
                self._reject(431, "too many headers")
                return
            self.headers = headers  # type: ignore[assignment]
            conn = headers.get("Connection", "").lower()
            self.close_connection = conn == "close" or (
                version == "HTTP/1.0" and conn != "keep-alive"
            )
            self._handle(method)
        except TimeoutError:
            self.close_connection = True

    def _reject(self, code: int, message: str) -> None:
        self.close_connection = True
        self._json(code, ApiError(code, "BadRequest", message).status())

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per request on stderr would dominate the cost of a request

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        reason = self.responses.get(code, ("",))[0]
        head = (
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-cache, private\r\n"
        )
        if code == 429:
            head += "Retry-After: 1\r\n"
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode() + b"\r\n" + body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj, separators=(",", ":")).encode())

    def _error(self, err: ApiError) -> None:
        if err.code == 429:
            # as kube-apiserver's priority and fairness refuses: plain text and Retry-After
            self._send(429, TOO_MANY_REQUESTS, "text/plain; charset=utf-8")
            return
        self._json(err.code, err.status())

    def _read_body(self) -> bytes:
        text = self.headers.get("Content-Length") or "0"
        if not text.isdigit():
            self.close_connection = True  # the body's end is unknown: this connection is done
            raise errors.bad_request(f"invalid Content-Length {text!r}")
        length = int(text)
        return self.rfile.read(length) if length > 0 else b""

    def _decode(
        self, raw: bytes, rt: ResourceType | None = None, *, delete_options: bool = False
    ) -> Any:
        """The request body as JSON values. The protobuf encoding, which kubectl's typed clients
        use for every built-in kind, is read for objects of a built-in ``rt`` and for
        ``delete_options`` (DeleteOptions)."""
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        builtin = rt is not None and not rt.custom
        if ctype == protobuf.CONTENT_TYPE and (builtin or delete_options):
            return self._decode_protobuf(raw, rt)
        if ctype not in _BODY_TYPES:
            raise errors.unsupported_media_type(
                ctype, negotiate.CUSTOM_TYPES if rt is not None and rt.custom else _INPUT_TYPES
            )
        try:
            if ctype in ("application/yaml", "application/x-yaml"):
                import yaml

                return yaml.safe_load(raw)
            return json.loads(raw or b"null")
        except ValueError as exc:
            raise errors.bad_request(f"error decoding request body: {exc}") from exc
        except Exception as exc:  # yaml.YAMLError
            raise errors.bad_request(f"error decoding request body: {exc}") from exc

    @staticmethod
    def _decode_protobuf(raw: bytes, rt: ResourceType | None) -> Any:
        try:
            return protobuf.decode(raw)
        except protobuf.UnknownKindError as exc:
            raise ApiError(415, "UnsupportedMediaType", str(exc)) from exc
        except (protobuf.ProtobufError, UnicodeDecodeError, ValueError) as exc:
            kind = f" (must be of type {rt.kind})" if rt is not None else ""
            raise errors.bad_request(
                f"the object provided is unrecognized{kind}: {exc} ({raw[:8].hex()})"
            ) from exc

    # -- entry points ---------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        lab = self.lab
        if lab.faults.refusing():
            self.close_connection = True
            lab.abort(self.connection)
            return
        lab.faults.wait_while_hanging()
        lab.count_request()
        self._rep = Representation()  # the connection's handler serves request after request
        raw = b""
        try:
            raw = self._read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
            url = urlsplit(self.path)
            query = parse_qs(url.query, keep_blank_values=True)
            user = self._authenticate()
            if url.path.startswith("/_lab/"):
                self._lab_endpoint(method, url.path, user, raw)
                return
            self._dispatch(method, url.path, query, user, raw)
        except ApiError as err:
            self._error(err)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.close_connection = True
        except Exception as exc:  # the server must survive any request
            lab.log_exception(exc)
            self._error(ApiError(500, "InternalError", f"Internal error occurred: {exc!r}"))

    def _authenticate(self) -> User:
        header = self.headers.get("Authorization") or ""
        if not header:
            # anonymous, as on a cluster with anonymous auth: RBAC lets it read /version and
            # health endpoints (system:public-info-viewer) and nothing else
            return self.lab.anonymous
        if not header.startswith("Bearer "):
            raise errors.unauthorized()
        user = self.lab.tokens.authenticate(header[7:].strip())
        if user is None:
            raise errors.unauthorized()
        return user

    def _faults(self, verb: str, path: str) -> None:
        lab = self.lab
        delay = lab.faults.latency(verb, path)
        if delay > 0:
            lab.faults.sleep(delay)
        code = lab.faults.take_failure(verb, path)
        if code is not None:
            raise errors.injected(code, f"injected fault: {verb} {path} fails with {code}")

    # -- the lab admin endpoint -----------------------------------------------------------------

    def _lab_endpoint(self, method: str, path: str, user: User, raw: bytes) -> None:
        if not user.is_admin:
            raise errors.forbidden_path(user.name, method.lower(), path)
        if path == "/_lab/audit":
            self._lab_audit(method)
            return
        if path != "/_lab/faults":
            raise errors.path_not_found()
        if method == "DELETE":
            self.lab.reset_faults()
            self._json(200, {"ok": True})
            return
        if method != "POST":
            raise errors.method_not_allowed()
        body = self._decode(raw)
        if not isinstance(body, dict):
            raise errors.bad_request("fault: body must be a JSON object with an 'action'")
        try:
            result = self.lab.apply_fault(body)
        except (ValueError, TypeError, KeyError) as exc:
            raise errors.bad_request(f"fault: {exc}") from exc
        self._json(200, {"ok": True, **result})

    def _lab_audit(self, method: str) -> None:
        """``GET``: every distinct authorization decision so far; ``DELETE``: start afresh."""
        if method == "DELETE":
            self.lab.reset_audit()
            self._json(200, {"ok": True})
        elif method == "GET":
            self._json(200, self.lab.audit_log.to_json())
        else:
            raise errors.method_not_allowed()

    # -- the Kubernetes API ---------------------------------------------------------------------

    def _dispatch(
        self, method: str, path: str, query: dict[str, list[str]], user: User, raw: bytes
    ) -> None:
        lab = self.lab
        if path in ("/version", "/version/"):
            self._nonresource(user, "get", path)
            if not negotiate.accepts_json(self.headers.get("Accept")):
                raise negotiate.not_acceptable_route((negotiate.JSON,))
            self._json(200, VERSION_INFO)
            return
        if path in ("/healthz", "/readyz", "/livez"):
            self._send(200, b"ok", "text/plain; charset=utf-8")
            return
        if path.startswith("/openapi/"):
            self._nonresource(user, "get", path)
            self._openapi(path, query)
            return
        route = parse_route(lab, path)
        if route is None:
            raise errors.path_not_found()
        if isinstance(route, dict):
            if method != "GET":
                raise errors.method_not_allowed()
            self._nonresource(user, "get", path)
            self._json(200, route)
            return
        rt = route.rt
        single = bool(route.name)
        watch = route.watch_prefix or _truthy(_first(query, "watch"))
        if method == "GET":
            verb = "get" if single and not watch else ("watch" if watch else "list")
        elif method == "POST" and not single:
            verb = "create"
        elif method == "PUT" and single:
            verb = "update"
        elif method == "PATCH" and single:
            verb = "patch"
        elif method == "DELETE":
            verb = "delete" if single else "deletecollection"
        else:
            raise errors.method_not_allowed()
        if route.subresource and (
            route.subresource != "status" or not rt.status_subresource or verb == "delete"
        ):
            if route.subresource != "status" or not rt.status_subresource:
                raise errors.path_not_found()
            raise errors.method_not_allowed()
        attrs = Attributes(
            verb=verb,
            group=rt.group,
            resource=rt.plural,
            subresource=route.subresource,
            namespace=route.namespace,
            name=route.name,
        )
        if not lab.authorize(user, attrs):
            raise errors.forbidden(user.name, attrs)
        self._faults(verb, path)
        if verb != "watch":  # a watch negotiates its own stream (see _watch)
            self._rep = negotiate.negotiate(
                self.headers.get("Accept"),
                custom=rt.custom,
                listing=verb in ("list", "deletecollection"),
            )
        api = lab.api
        opts = WriteOptions(
            dry_run=bool(query.get("dryRun")),
            strict=(_first(query, "fieldValidation") or "").lower() == "strict",
        )
        ns = route.namespace
        if verb == "get":
            stored = api.get(rt, ns, route.name)
            if self._rep.convert:
                rv = str(stored.obj["metadata"].get("resourceVersion", ""))
                self._converted(rt, [stored], rv, query)
            else:
                self._object(200, api.view(rt, stored))
        elif verb == "list":
            self._list(rt, ns, query)
        elif verb == "watch":
            self._watch(rt, ns, route.name, query)
        elif verb == "create":
            stored = api.create(rt, ns, self._decode(raw, rt), opts)
            self._object(201, api.view(rt, stored))
        elif verb == "update":
            body = self._decode(raw, rt)
            stored = api.update(rt, ns, route.name, route.subresource, body, opts=opts)
            self._object(200, api.view(rt, stored))
        elif verb == "patch":
            ctype = self.headers.get("Content-Type") or ""
            stored = api.patch(
                rt,
                ns,
                route.name,
                route.subresource,
                content_type=ctype,
                body=raw,
                opts=opts,
            )
            self._object(200, api.view(rt, stored))
        elif verb == "delete":
            options = self._decode(raw, delete_options=True) if raw.strip() else {}
            deleted, stored = api.delete(
                rt,
                ns,
                route.name,
                options if isinstance(options, dict) else {},
                dry_run=opts.dry_run,
            )
            if not deleted or rt.custom or rt.plural in ("services", "namespaces"):
                self._object(200 if deleted else 202, api.view(rt, stored))
            else:
                self._json(
                    200,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": {
                            "name": route.name,
                            "kind": rt.plural,
                            "uid": stored.obj["metadata"].get("uid"),
                            **({"group": rt.group} if rt.group else {}),
                        },
                    },
                )
        else:  # deletecollection
            selector = build_selector(
                _first(query, "labelSelector"), _first(query, "fieldSelector"), rt.field_labels
            )
            deleted_items = api.delete_collection(rt, ns or None, selector)
            self._object(200, self._list_bytes(rt, deleted_items, lab.store.resource_version))

    def _openapi(self, path: str, query: dict[str, list[str]]) -> None:
        """``/openapi/v3`` and its documents, and an empty ``/openapi/v2``. A document asked for
        by its current hash may be cached forever, as on kube-apiserver."""
        docs = self.lab.openapi
        if path.rstrip("/") == "/openapi/v2":
            proto = openapi.V2_PROTOBUF in (self.headers.get("Accept") or "")
            ctype = openapi.V2_PROTOBUF_ANSWER if proto else "application/json"
            self._send(200, openapi.v2_document(proto), ctype)
            return
        if path.rstrip("/") == "/openapi/v3":
            self._json(200, docs.index())
            return
        found = docs.lookup(path) if path.startswith("/openapi/v3/") else None
        if found is None:
            raise errors.path_not_found()
        body, digest = found
        immutable = _first(query, "hash") == digest
        reason = self.responses.get(200, ("",))[0]
        cache = "public, immutable" if immutable else "no-cache, private"
        head = (
            f"HTTP/1.1 200 {reason}\r\nContent-Type: application/json\r\n"
            f'Content-Length: {len(body)}\r\nCache-Control: {cache}\r\nEtag: "{digest}"\r\n'
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode() + b"\r\n" + body)

    def _nonresource(self, user: User, verb: str, path: str) -> None:
        if not self.lab.authorize(user, Attributes(verb=verb, path=path)):
            raise errors.forbidden_path(user.name, verb, path)

    def _list_bytes(
        self,
        rt: ResourceType,
        items: list[Stored],
        rv: int,
        token: str | None = None,
        remaining: int | None = None,
    ) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if token:
            meta["continue"] = token
        if remaining is not None:
            meta["remainingItemCount"] = remaining
        head = json.dumps(
            {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta},
            separators=(",", ":"),
        ).encode()
        view = self.lab.api.view
        return head[:-1] + b',"items":[' + b",".join(view(rt, s) for s in items) + b"]}"

    def _list(self, rt: ResourceType, ns: str, query: dict[str, list[str]]) -> None:
        selector = build_selector(
            _first(query, "labelSelector"), _first(query, "fieldSelector"), rt.field_labels
        )
        try:
            limit = int(_first(query, "limit") or 0)
        except ValueError as exc:
            raise errors.bad_request(f"limit: {exc}") from exc
        self._wait_for_version(_first(query, "resourceVersion") or "")
        items, rv, token, remaining = self.lab.api.list_objects(
            rt, ns or None, selector, limit=limit, continue_token=_first(query, "continue")
        )
        if self._rep.convert:
            list_meta: dict[str, Any] = {}
            if token:
                list_meta["continue"] = token
            if remaining is not None:
                list_meta["remainingItemCount"] = remaining
            self._converted(rt, items, str(rv), query, list_meta)
            return
        self._object(200, self._list_bytes(rt, items, rv, token, remaining))

    def _object(self, code: int, body: bytes) -> None:
        """An object (or list) in JSON, or in YAML when the request asked for it."""
        if self._rep.yaml:
            import yaml

            text = yaml.safe_dump(json.loads(body), sort_keys=False, allow_unicode=True)
            self._send(code, text.encode(), negotiate.YAML)
            return
        self._send(code, body)

    def _converted(
        self,
        rt: ResourceType,
        items: list[Stored],
        rv: str,
        query: dict[str, list[str]],
        list_meta: dict[str, Any] | None = None,
    ) -> None:
        """``items`` as the Table or PartialObjectMetadata(List) the request asked for."""
        rep = self._rep
        objs = [json.loads(self.lab.api.view(rt, s)) for s in items]
        doc: dict[str, Any]
        if rep.convert == "Table":
            include = tables.include_object(_first(query, "includeObject"))
            doc = tables.table(
                rt, objs, rv, include=include, api_version=rep.api_version, list_meta=list_meta
            )
        elif rep.convert == "PartialObjectMetadata":
            doc = tables.partial_metadata(objs[0], rep.api_version)
        else:
            doc = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": rep.api_version,
                "metadata": {**(list_meta or {}), "resourceVersion": rv},
                "items": [tables.partial_metadata(o, rep.api_version) for o in objs],
            }
        self._object(200, json.dumps(doc, separators=(",", ":")).encode())

    def _wait_for_version(self, rv_param: str) -> None:
        """A read "not older than" a version the store has not reached waits for it up to
        :data:`TOO_LARGE_WAIT` seconds, then fails as kube-apiserver's watch cache does."""
        if rv_param in ("", "0"):
            return
        try:
            wanted = int(rv_param)
        except ValueError as exc:
            raise errors.bad_request(f'resourceVersion: invalid value "{rv_param}"') from exc
        store = self.lab.store
        deadline = time.monotonic() + TOO_LARGE_WAIT
        while store.resource_version < wanted:
            if time.monotonic() >= deadline:
                raise errors.too_large_resource_version(wanted, store.resource_version)
            time.sleep(0.05)

    # -- watch ----------------------------------------------------------------------------------

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _watch(self, rt: ResourceType, ns: str, name: str, query: dict[str, list[str]]) -> None:
        lab = self.lab
        field_sel = _first(query, "fieldSelector")
        if name:
            field_sel = f"metadata.name={name}" + (f",{field_sel}" if field_sel else "")
        selector = build_selector(_first(query, "labelSelector"), field_sel, rt.field_labels)
        self._table_watch = "as=Table" in (self.headers.get("Accept") or "")
        rv_param = _first(query, "resourceVersion") or ""
        bookmarks = _truthy(_first(query, "allowWatchBookmarks"))
        initial_events = _truthy(_first(query, "sendInitialEvents"))
        try:
            timeout = float(_first(query, "timeoutSeconds") or lab.max_watch_seconds)
        except ValueError as exc:
            raise errors.bad_request(f"timeoutSeconds: {exc}") from exc
        try:
            since = None if rv_param in ("", "0") or initial_events else int(rv_param)
        except ValueError as exc:
            raise errors.bad_request(f'resourceVersion: invalid value "{rv_param}"') from exc
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Cache-Control: no-cache, private\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        try:
            watcher, replay, start_rv = lab.store.watch(rt.key, ns or None, since)
        except TooOldError as exc:
            status = errors.gone(exc.requested, exc.oldest).status()
            self._chunk(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        sent_rv = start_rv if since is None else since
        try:
            batch: list[bytes] = []
            for item in replay:
                if isinstance(item, WatchEvent):
                    line = self._event_line(rt, selector, item)
                    sent_rv = item.rv
                elif selector.matches(item.obj):
                    line = b'{"type":"ADDED","object":' + self._watch_view(rt, item) + b"}\n"
                else:
                    line = None
                if line is not None:
                    batch.append(line)
                if len(batch) >= _BATCH:
                    self._chunk(b"".join(batch))
                    batch = []
            if batch:
                self._chunk(b"".join(batch))
            if since is None and (bookmarks and initial_events):
                self._bookmark(rt, start_rv, initial_end=True)
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + lab.bookmark_interval
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                wait = min(deadline, next_bookmark) - now
                try:
                    ev = watcher.queue.get(timeout=min(max(wait, 0.0), 1.0))
                except queue.Empty:
                    ev = None
                if ev is CLOSE:
                    break
                if isinstance(ev, WatchEvent):
                    lab.faults.wait_while_hanging()
                    # drain what else is queued: one write for a burst instead of one per event
                    closing = False
                    lines = []
                    while True:
                        assert isinstance(ev, WatchEvent)
                        line = self._event_line(rt, selector, ev)
                        sent_rv = ev.rv
                        if line is not None:
                            lines.append(line)
                        if len(lines) >= _BATCH:
                            break
                        try:
                            ev = watcher.queue.get_nowait()
                        except queue.Empty:
                            break
                        if ev is CLOSE:
                            closing = True
                            break
                    if lines:
                        self._chunk(b"".join(lines))
                    if closing:
                        break
                    continue
                lab.faults.wait_while_hanging()
                if bookmarks and time.monotonic() >= next_bookmark:
                    # a bookmark must not claim a version whose events are still queued
                    with lab.store.lock:
                        if watcher.queue.empty():
                            sent_rv = max(sent_rv, lab.store.resource_version)
                        # nor one the store has not reached (a watch from the future, after a
                        # rewind): kube-apiserver stays silent then
                        reached = lab.store.resource_version >= sent_rv
                    if reached:
                        self._bookmark(rt, sent_rv)
                    next_bookmark = time.monotonic() + lab.bookmark_interval
                elif self._peer_gone():
                    self.close_connection = True
                    return
            self.wfile.write(b"0\r\n\r\n")
        finally:
            lab.store.unwatch(watcher)

    def _peer_gone(self) -> bool:
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return bool(sock.recv(1, socket.MSG_PEEK) == b"")
        except ValueError:  # TLS sockets cannot peek; their peer is noticed on the next write
            return False
        except OSError:
            return True

    def _bookmark(self, rt: ResourceType, rv: int, *, initial_end: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}
        self._chunk(json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n")

    def _watch_view(self, rt: ResourceType, stored: Stored) -> bytes:
        """The object of a watch event: itself, or a one-row Table for ``kubectl get -w``."""
        if self._table_watch:
            rv = stored.obj["metadata"].get("resourceVersion", "")
            doc = tables.table(rt, [stored.obj], rv)
            return json.dumps(doc, separators=(",", ":")).encode()
        return self.lab.api.view(rt, stored)

    def _event_line(self, rt: ResourceType, selector: Any, ev: WatchEvent) -> bytes | None:
        """The JSON line of ``ev`` as this watcher sees it, or None when it is filtered out."""
        etype = ev.type
        if not selector.empty:
            now = selector.matches(ev.new.obj)
            before = ev.old is not None and selector.matches(ev.old.obj)
            if etype == "MODIFIED":
                if now and not before:
                    etype = "ADDED"
                elif before and not now:
                    etype = "DELETED"
                elif not now:
                    return None
            elif (etype == "ADDED" and not now) or (etype == "DELETED" and not (before or now)):
                return None
        return (
            b'{"type":"' + etype.encode() + b'","object":' + self._watch_view(rt, ev.new) + b"}\n"
        )

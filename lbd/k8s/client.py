"""A thin, fast JSON client for the Kubernetes API.

API (used by the controller, the speaker and the lab tools)::

    kube = load_kube(kubeconfig=None)          # --kubeconfig, else $KUBECONFIG, else in-cluster,
                                               # else ~/.kube/config
    svc = kube.get(SERVICES.path(namespace="ns", name="web"))           # -> dict
    page = kube.get(SERVICES.path(), query={"labelSelector": "a=b"})    # -> dict (a List)
    kube.create(EVENTS.path(namespace="ns"), body)                      # -> dict
    kube.replace(path, body) / kube.patch(path, body, patch=PatchType.MERGE) / kube.delete(path)
    for event in kube.watch(SERVICES.path(), query={...}): ...          # dicts {type, object}
    kube.close()                               # its connections

Every failure is an :class:`ApiError` carrying the HTTP status and the ``Status`` reason
(``Conflict``, ``NotFound``, ``Gone``, ``TooManyRequests`` ...) and, when the server asked for
one, how long to wait before trying again (``retry_after``: the ``Retry-After`` header that
kube-apiserver's priority and fairness sends with a plain-text 429, or a Status's
``details.retryAfterSeconds``, as on ``429 storage is (re)initializing``); transport failures
(connection refused, reset, timeouts) are :class:`ApiUnavailableError`, a subclass with status 0,
so that callers can treat "the API server is not there" with one ``except``.

Design: the official client builds a model object for every returned item and walks it again to
serialise requests. With ten thousand Services that costs hundreds of megabytes and most of the
CPU time, so lbd reads and writes plain JSON dicts over a urllib3 pool. The official client
still loads what it is best at (in-cluster config, exec plugins, auth providers, token refresh:
its ``Configuration`` is reused as is, :func:`api_transport`); a kubeconfig with static
credentials is read without it (:mod:`lbd.k8s.kubeconfig`). The pool is sized for several
long-lived watch connections plus concurrent writers.
"""

from __future__ import annotations

import enum
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import quote, urlencode

import msgspec
import urllib3

from lbd.k8s.kubeconfig import Transport, static_transport

if TYPE_CHECKING:  # the official client is imported only when it is used (see load_kube)
    from kubernetes import client as k8s_client

# The one "ns/name" builder lives in meta (no client needed to read an object); re-exported.
from lbd.k8s.meta import object_key as object_key  # noqa: PLC0414 (explicit re-export)

JsonDict = dict[str, Any]

DEFAULT_TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds for ordinary requests; watches use their own read timeout."""

DEFAULT_POOL_SIZE = 32
"""Connections kept per host: one per watch (about ten across both programs) plus writers."""

RequestObserver = Callable[[str, str, str, float], None]
"""``observer(verb, resource, code, seconds)`` after each request: how lbd's metrics see the API
(:class:`lbd.metrics.ApiMetrics`); ``code`` is the HTTP status, or ``"error"`` when no answer
came (connection refused, reset, timeout)."""


def verb_and_resource(method: str, path: str, query: Mapping[str, Any] | None) -> tuple[str, str]:
    """The Kubernetes verb and resource of a request, as the API server's audit log names
    them: ``("list", "services")``, ``("patch", "services/status")``, ``("watch", "leases")``.
    A path outside ``/api`` and ``/apis`` (``/readyz``, ``/metrics``) is resource ``"-"``."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return method.lower(), "-"
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]  # a namespaced resource (a bare /namespaces/NAME is the Namespace)
    resource = rest[0] if rest else "-"
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource += "/" + rest[2]
    if method == "GET":
        verb = "get" if named else "watch" if (query or {}).get("watch") else "list"
    else:
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch"}
        verb = verbs.get(method, "delete" if named else "deletecollection")
    return verb, resource


class RequestOptions(TypedDict, total=False):
    """What a request may carry besides its method and path (every key optional)."""

    query: Mapping[str, Any] | None
    """Query parameters; a None value is left out."""
    body: Any
    """Sent as JSON."""
    content_type: str | None
    """Of the body (default ``application/json``; a patch names its :class:`PatchType`)."""
    timeout: tuple[float, float] | None
    """(connect, read) seconds instead of the client's."""


class PatchType(enum.Enum):
    """Content types of PATCH requests."""

    MERGE = "application/merge-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    JSON = "application/json-patch+json"


class ApiError(Exception):
    """A failed API request: HTTP ``status`` and the ``Status`` object's ``reason``."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        body: JsonDict | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}
        self.retry_after = retry_after
        """Seconds the server asked us to wait before retrying (None: it did not say)."""

    @property
    def retryable(self) -> bool:
        """True for answers worth retrying: conflicts, throttling, server errors, no server."""
        return self.status in (0, 409, 429) or self.status >= 500


class ApiUnavailableError(ApiError):
    """The API server could not be reached or did not answer in time (status 0)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "Unavailable", message)


@dataclass(frozen=True)
class Resource:
    """One API resource type: where it lives and whether it is namespaced."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The URL path: collection (all namespaces or one), object, or an object's subresource."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base

    def object_path(self, obj: Mapping[str, Any], subresource: str | None = None) -> str:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") if self.namespaced else None
        return self.path(namespace=ns, name=meta["name"], subresource=subresource)


SERVICES = Resource("", "v1", "services", "Service", True)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", False)
NODES = Resource("", "v1", "nodes", "Node", False)
EVENTS = Resource("", "v1", "events", "Event", True)
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", True)
PODS = Resource("", "v1", "pods", "Pod", True)
IPADDRESSPOOLS = Resource("lbd.io", "v1beta1", "ipaddresspools", "IPAddressPool", False)
L2ADVERTISEMENTS = Resource("lbd.io", "v1beta1", "l2advertisements", "L2Advertisement", False)
SERVICEL2STATUSES = Resource("lbd.io", "v1beta1", "servicel2statuses", "ServiceL2Status", True)


class Kube:
    """JSON requests over a :class:`~lbd.k8s.kubeconfig.Transport` (its pool and credentials)."""

    def __init__(
        self, transport: Transport, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
    ) -> None:
        self.transport = transport
        self._pool = transport.pool
        self._auth = transport.auth_headers
        self._host = transport.host
        self._timeout = timeout
        self.observer: RequestObserver | None = None
        """Set by the program that exports metrics (``ApiMetrics.observe``)."""

    def close(self) -> None:
        """Close the connections (and the official client, when it made the transport)."""
        self.transport.close()

    # -- plumbing -------------------------------------------------------------------------
    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "lbd"}
        if content_type:
            headers["Content-Type"] = content_type
        headers.update(self._auth())
        return headers

    def _url(self, path: str, query: Mapping[str, Any] | None) -> str:
        url = self._host + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        return url

    def _open(
        self, method: str, path: str, *, stream: bool = False, **options: Unpack[RequestOptions]
    ) -> urllib3.BaseHTTPResponse:
        query, body = options.get("query"), options.get("body")
        content_type = options.get("content_type")
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        if data is not None and content_type is None:
            content_type = "application/json"
        connect, read = options.get("timeout") or self._timeout
        started = time.monotonic()
        observer = self.observer
        try:
            resp = self._pool.request(
                method,
                self._url(path, query),
                body=data,
                headers=self._headers(content_type),
                timeout=urllib3.Timeout(connect=connect, read=read),
                retries=False,
                preload_content=not stream,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if observer is not None:
                observer(*verb_and_resource(method, path, query), "error", _since(started))
            raise ApiUnavailableError(f"{method} {path}: {exc}") from exc
        if observer is not None:
            verb, resource = verb_and_resource(method, path, query)
            observer(verb, resource, str(resp.status), _since(started))
        if resp.status >= 400:
            raw = resp.data if not stream else resp.read()
            if stream:
                resp.release_conn()
            raise _error_from(resp.status, raw, f"{method} {path}", resp.headers.get("Retry-After"))
        return resp

    def request(
        self,
        method: str,
        path: str,
        *,
        decode: Callable[[bytes], JsonDict] | None = None,
        **options: Unpack[RequestOptions],
    ) -> JsonDict:
        """Send one request and return the decoded JSON answer (``{}`` for an empty body);
        ``decode``: another decoder for the body than :func:`decode_json` (errors are always
        decoded by :func:`decode_json`)."""
        resp = self._open(method, path, **options)
        try:
            raw = resp.data
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiUnavailableError(f"{method} {path}: {exc}") from exc
        if not raw:
            return {}
        decoded: JsonDict = (decode or decode_json)(raw)
        return decoded

    def request_text(self, path: str) -> str:
        """GET a non-JSON document (``/metrics``, ``/readyz``) as text."""
        resp = self._open("GET", path)
        try:
            return bytes(resp.data).decode()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiUnavailableError(f"GET {path}: {exc}") from exc

    # -- verbs ----------------------------------------------------------------------------
    def get(
        self,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        decode: Callable[[bytes], JsonDict] | None = None,
    ) -> JsonDict:
        return self.request("GET", path, query=query, decode=decode)

    def create(self, path: str, body: JsonDict) -> JsonDict:
        return self.request("POST", path, body=body)

    def replace(self, path: str, body: JsonDict) -> JsonDict:
        return self.request("PUT", path, body=body)

    def patch(self, path: str, body: Any, *, patch: PatchType = PatchType.MERGE) -> JsonDict:
        return self.request("PATCH", path, body=body, content_type=patch.value)

    def delete(self, path: str, *, body: JsonDict | None = None) -> JsonDict:
        return self.request("DELETE", path, body=body)

    def watch(
        self,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        read_timeout: float = 330.0,
        on_open: Any = None,
    ) -> Iterator[JsonDict]:
        """Stream watch events (``{"type": ..., "object": {...}}``) until the server ends it.

        ``on_open(response)`` is called with the open response so that another thread can
        ``shutdown()`` it to end the stream early (informer ``stop()``).
        """
        q = dict(query or {})
        q["watch"] = "true"
        resp = self._open(
            "GET", path, query=q, timeout=(self._timeout[0], read_timeout), stream=True
        )
        if on_open is not None:
            on_open(resp)
        try:
            for line in _lines(resp):
                if line.strip():
                    event: JsonDict = decode_json(line)
                    yield event
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise ApiUnavailableError(f"watch {path}: {exc}") from exc
        finally:
            resp.release_conn()


def decode_json(raw: bytes) -> Any:
    """One JSON document from the API server, decoded with msgspec: 2 to 3 times the speed of
    the standard library on big lists (10 000 Services, 15.5 MB: 0.28 s -> about 0.12 s;
    tests/bench/bench_status.py), and exact: an integer of any size stays an int, which a
    custom resource may hold (an IPv6 pool's address count in its status). orjson, used here
    before, turns an integer beyond 64 bits into a float without a word (ijl/orjson#308).
    What msgspec refuses (a number beyond a float's range, malformed JSON, for the standard
    library's error message) goes through :func:`json.loads`."""
    try:
        return _JSON.decode(raw)
    except msgspec.DecodeError:
        return json.loads(raw)


_JSON: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def _since(started: float) -> float:
    return max(0.0, time.monotonic() - started)


def _lines(resp: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """Split a streamed body into lines as soon as each line has arrived."""
    buf = b""
    read1 = getattr(resp, "read1", None)
    while True:
        chunk = read1(65536) if read1 is not None else resp.read(1)
        if not chunk:
            break
        buf += chunk
        while True:
            idx = buf.find(b"\n")
            if idx < 0:
                break
            yield buf[:idx]
            buf = buf[idx + 1 :]
    if buf:
        yield buf


def _error_from(status: int, raw: bytes, what: str, retry_after: str | None = None) -> ApiError:
    body: JsonDict = {}
    try:
        decoded = decode_json(raw) if raw else {}
        if isinstance(decoded, dict):
            body = decoded
    except ValueError:
        pass  # kube-apiserver's own 429 (priority and fairness) is plain text
    reason = str(body.get("reason") or _REASONS.get(status, "Unknown"))
    message = str(body.get("message") or raw[:200].decode(errors="replace").strip() or what)
    return ApiError(status, reason, message, body, retry_after=_retry_after(retry_after, body))


def _retry_after(header: str | None, body: JsonDict) -> float | None:
    """``Retry-After`` in seconds (RFC 9110 section 10.2.3; an HTTP date is not used by
    kube-apiserver), else the Status's ``details.retryAfterSeconds``."""
    for value in (header, (body.get("details") or {}).get("retryAfterSeconds")):
        try:
            seconds = float(value) if value is not None else None
        except (TypeError, ValueError):
            continue
        if seconds is not None and seconds >= 0:
            return seconds
    return None


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class KubeconfigError(ValueError):
    """No usable client configuration; the message names where it was looked for (the flag,
    ``$KUBECONFIG``, the in-cluster files) and why it is unusable, on one line."""


DEFAULT_KUBECONFIG = "~/.kube/config"


def _source(kubeconfig: str | None, flag: str) -> tuple[str | None, str]:
    """(kubeconfig file or None for in-cluster, how the user names it): ``--kubeconfig``, else
    ``$KUBECONFIG``, else in-cluster config, else ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG")
    path = kubeconfig or env
    if path:
        where = f"{flag} {path}" if kubeconfig else f"$KUBECONFIG={path}"
        if not os.path.isfile(path):
            raise KubeconfigError(f"{where}: no such file")
        return path, where
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None, "in-cluster configuration"
    default = os.path.expanduser(DEFAULT_KUBECONFIG)
    if not os.path.isfile(default):
        raise KubeconfigError(
            f"no Kubernetes configuration: give {flag} FILE or set $KUBECONFIG "
            "(not running in a cluster: $KUBERNETES_SERVICE_HOST is unset; no "
            "~/.kube/config)"
        )
    return default, "~/.kube/config"


def _official_configuration(path: str | None, where: str) -> k8s_client.Configuration:
    """The official loader's ``Configuration`` for :func:`_source`'s answer (None: in-cluster);
    :class:`KubeconfigError`, naming ``where``, when it cannot be loaded."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    cfg = k8s_client.Configuration()
    try:
        if path is None:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(config_file=path, client_configuration=cfg)  # type: ignore[no-untyped-call]
    except Exception as exc:  # the loader raises YAML, OS, key and config errors
        raise KubeconfigError(f"{where}: {' '.join(str(exc).split())}") from exc
    return cfg


def api_transport(
    cfg: k8s_client.Configuration, *, pool_size: int = DEFAULT_POOL_SIZE
) -> Transport:
    """A :class:`Transport` through an official ``ApiClient`` made from ``cfg``: its pool, and
    its credentials as ``auth_settings()`` gives them for each request (it re-reads refreshed
    tokens: in-cluster token rotation, exec plugins)."""
    from kubernetes import client as k8s_client

    cfg.connection_pool_maxsize = pool_size
    api_client = k8s_client.ApiClient(cfg)

    def headers() -> dict[str, str]:
        out: dict[str, str] = {}
        settings: dict[str, Any] = dict(cfg.auth_settings())
        for setting in settings.values():
            if setting.get("in") == "header" and setting.get("value"):
                out[str(setting["key"])] = str(setting["value"])
        return out

    return Transport(
        host=str(cfg.host).rstrip("/"),
        pool=api_client.rest_client.pool_manager,
        auth_headers=headers,
        closer=api_client.close,
    )


def load_kube(
    kubeconfig: str | None = None,
    *,
    flag: str = "--kubeconfig",
    pool_size: int = DEFAULT_POOL_SIZE,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
) -> Kube:
    """A :class:`Kube` from a kubeconfig or the in-cluster config (:func:`_source` says which).

    A kubeconfig with static credentials is read by :func:`lbd.k8s.kubeconfig.static_transport`
    without importing the official client (0.3 s of every ``lbd status``); anything else, and
    the in-cluster config, by ``kubernetes.config``.
    """
    path, where = _source(kubeconfig, flag)
    transport = static_transport(path, pool_size=pool_size) if path is not None else None
    if transport is None:
        transport = api_transport(_official_configuration(path, where), pool_size=pool_size)
    return Kube(transport, timeout=timeout)

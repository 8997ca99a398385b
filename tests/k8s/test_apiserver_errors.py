"""Bad requests get the status codes a real API server answers, and never hurt the server.

These use raw HTTP on purpose: the official client cannot send malformed JSON, wrong methods or
unknown content types, which is exactly what is tested here.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from lbd.lab.apiserver import LabApiServer

SVC = "/api/v1/namespaces/default/services"


def _request(
    server: LabApiServer,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    token: str | None = None,
) -> tuple[int, dict[str, Any]]:
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
    headers = {"Authorization": f"Bearer {token or server.admin_token}"}
    if body is not None:
        headers["Content-Type"] = content_type
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, json.loads(raw) if raw.startswith(b"{") else {}


def _svc(name: str = "web", **extra: Any) -> bytes:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"ports": [{"port": 80}]},
            **extra,
        }
    ).encode()


@pytest.mark.parametrize(
    ("method", "path", "body", "ctype", "code", "reason"),
    [
        ("POST", SVC, b"{not json", "application/json", 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/default/widgets", None, "", 404, "NotFound"),
        ("GET", "/apis/nope.io/v1/things", None, "", 404, "NotFound"),
        ("GET", f"{SVC}/web/bogus", None, "", 404, "NotFound"),
        ("PUT", SVC, _svc(), "application/json", 405, "MethodNotAllowed"),
        ("POST", f"{SVC}/web", _svc(), "application/json", 405, "MethodNotAllowed"),
        ("DELETE", f"{SVC}/web/status", None, "", 405, "MethodNotAllowed"),
        (
            "POST",
            SVC,
            json.dumps(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
            ).encode(),
            "application/json",
            400,
            "BadRequest",
        ),
        (
            "POST",
            SVC,
            json.dumps(
                {"apiVersion": "apps/v1", "kind": "Service", "metadata": {"name": "x"}}
            ).encode(),
            "application/json",
            400,
            "BadRequest",
        ),
        ("PUT", f"{SVC}/other", _svc("web"), "application/json", 400, "BadRequest"),
        ("PATCH", f"{SVC}/web", b"{}", "application/xml", 415, "UnsupportedMediaType"),
        (
            "PATCH",
            f"{SVC}/web",
            b'{"spec": {}}',
            "application/json-patch+json",
            400,
            "BadRequest",
        ),
        ("PATCH", f"{SVC}/web", b"[1,2", "application/merge-patch+json", 400, "BadRequest"),
        ("POST", SVC, json.dumps([1, 2]).encode(), "application/json", 400, "BadRequest"),
        ("GET", f"{SVC}?labelSelector=a%20in%20(", None, "", 400, "BadRequest"),
        ("GET", f"{SVC}?watch=1&resourceVersion=abc", None, "", 400, "BadRequest"),
    ],
    ids=[
        "malformed json",
        "unknown resource",
        "unknown group",
        "unknown subresource",
        "put on collection",
        "post on object",
        "delete status",
        "wrong kind",
        "wrong apiVersion",
        "name mismatch",
        "patch content type",
        "json patch not a list",
        "malformed merge patch",
        "body not an object",
        "bad label selector",
        "bad watch version",
    ],
)
def test_bad_request_status(
    lab_api: LabApiServer,
    method: str,
    path: str,
    body: bytes | None,
    ctype: str,
    code: int,
    reason: str,
) -> None:
    assert _request(lab_api, "POST", SVC, _svc())[0] == 201
    status, out = _request(lab_api, method, path, body, ctype)
    assert (status, out.get("kind"), out.get("reason"), out.get("code")) == (
        code,
        "Status",
        reason,
        code,
    )
    # nothing was lost and nothing went wrong inside
    assert _request(lab_api, "GET", f"{SVC}/web")[0] == 200
    assert lab_api.internal_errors == []


def test_unauthenticated_requests(lab_api: LabApiServer) -> None:
    url = urlsplit(lab_api.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
    conn.request("GET", "/version")
    assert conn.getresponse().read() and True  # public, like system:public-info-viewer
    conn.request("GET", SVC)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 403 and 'User "system:anonymous"' in body["message"]
    conn.close()
    assert _request(lab_api, "GET", SVC, token="wrong")[0] == 401


def test_many_bad_requests_keep_the_server_healthy(
    lab_api: LabApiServer, admin_client: client.ApiClient
) -> None:
    v1: Any = client.CoreV1Api(admin_client)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "keep"}, "data": {"a": "1"}})
    junk = [
        b"",
        b"null",
        b"{",
        b"[]",
        b'{"metadata": 5}',
        b'{"metadata": {"labels": 5}}',
        b'{"metadata": {"name": 5}}',
        b'{"metadata": {"labels": {"a": 1}}}',
        b'{"metadata": {"finalizers": "x"}}',
        b'{"metadata": {"ownerReferences": [1]}}',
        b'{"metadata": {"resourceVersion": 7}}',
        b'{"kind": 5, "apiVersion": []}',
    ]
    for body in junk:
        for method in ("POST", "PUT", "PATCH"):
            path = "/api/v1/namespaces/default/configmaps" + ("" if method == "POST" else "/keep")
            for ctype in ("application/json", "application/merge-patch+json"):
                status, _ = _request(lab_api, method, path, body, ctype)
                assert 400 <= status < 500, (method, body, ctype, status)
    assert v1.read_namespaced_config_map("keep", "default").data == {"a": "1"}
    assert lab_api.internal_errors == []


@pytest.mark.parametrize(
    "raw",
    [b"HELLO\r\n\r\n", b"GET /api HTTP/1.1\r\nno-colon-here\r\n\r\n", b"GET / FTP/9\r\n\r\n"],
    ids=["garbage request line", "header without colon", "not http"],
)
def test_malformed_http_is_400_and_the_server_goes_on(lab_api: LabApiServer, raw: bytes) -> None:
    import socket

    url = urlsplit(lab_api.url)
    with socket.create_connection((url.hostname or "", url.port or 0), timeout=5) as sock:
        sock.sendall(raw)
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert _request(lab_api, "GET", "/api/v1/namespaces")[0] == 200
    assert lab_api.internal_errors == []


def test_bad_content_length_is_400(lab_api: LabApiServer) -> None:
    import socket

    url = urlsplit(lab_api.url)
    with socket.create_connection((url.hostname or "", url.port or 0), timeout=5) as sock:
        sock.sendall(
            b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\n"
            b"Authorization: Bearer " + lab_api.admin_token.encode() + b"\r\n"
            b"Content-Length: lots\r\n\r\n{}"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")
    assert lab_api.internal_errors == []


def test_malformed_protobuf_is_400_and_protobuf_custom_resources_415(
    lab_api: LabApiServer,
) -> None:
    """kubectl's typed clients send built-in kinds as protobuf (tests/k8s/test_kubectl_*.py):
    a body that is not a protobuf object gets kube-apiserver's 400; custom resources are JSON
    or YAML only, as on kube-apiserver."""
    status, out = _request(
        lab_api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        b"k8s\x00\x0a\x0f",
        "application/vnd.kubernetes.protobuf",
    )
    assert (status, out["reason"]) == (400, "BadRequest")
    assert "the object provided is unrecognized (must be of type ConfigMap)" in out["message"]
    lab_api.apply_dir(Path(__file__).resolve().parents[2] / "crds")
    status, out = _request(
        lab_api,
        "POST",
        "/apis/lbd.io/v1beta1/ipaddresspools",
        b"k8s\x00",
        "application/vnd.kubernetes.protobuf",
    )
    assert (status, out["reason"]) == (415, "UnsupportedMediaType")
    assert lab_api.internal_errors == []


@pytest.mark.parametrize(
    ("method", "path", "body", "ctype"),
    [
        ("POST", SVC, {"metadata": {"name": "x"}, "spec": 5}, "application/json"),
        ("POST", SVC, {"metadata": {"name": "x"}, "spec": {"ports": "80"}}, "application/json"),
        (
            "POST",
            SVC,
            {"metadata": {"name": "x"}, "spec": {"ports": [{"port": True}]}},
            "application/json",
        ),
        (
            "PATCH",
            f"{SVC}/web/status",
            {"status": {"loadBalancer": {"ingress": 5}}},
            "application/merge-patch+json",
        ),
        ("PATCH", f"{SVC}/web", {"spec": {"selector": {"app": 1}}}, "application/merge-patch+json"),
        (
            "POST",
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
            {"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": 3},
            "application/json",
        ),
    ],
    ids=[
        "spec not an object",
        "ports not a list",
        "bool port",
        "ingress not a list",
        "selector",
        "endpoints",
    ],
)
def test_wrongly_typed_fields_are_400(
    lab_api: LabApiServer, method: str, path: str, body: dict[str, Any], ctype: str
) -> None:
    assert _request(lab_api, "POST", SVC, _svc())[0] == 201
    status, out = _request(lab_api, method, path, json.dumps(body).encode(), ctype)
    assert (status, out["reason"]) == (400, "BadRequest"), out
    assert "cannot be handled as a" in out["message"]
    assert lab_api.internal_errors == []


def test_watch_as_table_for_kubectl_get_w(lab_api: LabApiServer) -> None:
    """``kubectl get -w`` asks for Tables; each event then carries a one-row Table."""
    assert _request(lab_api, "POST", SVC, _svc())[0] == 201
    url = urlsplit(lab_api.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
    conn.request(
        "GET",
        f"{SVC}?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Dweb",
        headers={
            "Authorization": f"Bearer {lab_api.admin_token}",
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        },
    )
    events = [json.loads(line) for line in conn.getresponse().read().splitlines() if line]
    conn.close()
    assert [e["type"] for e in events] == ["ADDED"]
    table = events[0]["object"]
    assert table["kind"] == "Table" and table["rows"][0]["cells"][0] == "web"

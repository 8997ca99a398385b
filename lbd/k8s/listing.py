"""Listing every object of a kind, page by page (``limit``/``continue``, as client-go pages).

API::

    items, resource_version = list_pages(kube, SERVICES)   # kind/apiVersion set on each item
    list_pages(kube, SERVICES, decode=decode_lean_list)    # pages decoded by lbd.k8s.decode

The list's ``resourceVersion`` is the point in the server's history the whole list shows (a
consistent read): the controller's views need it to tell a late watch event from a newer one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lbd.k8s.client import ApiError, JsonDict, Kube, Resource

LIST_PAGE = 500
"""Objects per page: bounds the size of one response (client-go uses 500 too)."""

Decoder = Callable[[bytes], JsonDict]
"""A page's body -> the list as dicts (:func:`lbd.k8s.decode.decode_lean_list`)."""


def list_pages(
    kube: Kube,
    resource: Resource,
    namespace: str | None = None,
    selectors: Mapping[str, str] | None = None,
    *,
    limit: int = LIST_PAGE,
    decode: Decoder | None = None,
) -> tuple[list[JsonDict], str]:
    """Every object of ``resource`` (each with its ``apiVersion`` and ``kind``: list items of
    built-in kinds come without them) and the list's resourceVersion. ``selectors``: a
    ``labelSelector`` and/or ``fieldSelector``, sent with every page; ``limit``: objects per
    page; ``decode``: how a page's body is decoded (None: the client's general decoder).

    A continue token outlives its snapshot when etcd compacts past the first page's revision:
    the server answers ``410 Expired``. As client-go's pager does (``FullListIfExpired``), the
    list is then read again in one request without ``limit``, so the result is still one
    consistent picture rather than pages of two different moments.
    """
    items: list[JsonDict] = []
    cont: str | None = None
    while True:
        query: dict[str, Any] = {**(selectors or {})}
        if limit:
            query["limit"] = limit
        if cont:
            query["continue"] = cont
        try:
            page = kube.get(resource.path(namespace=namespace), query=query, decode=decode)
        except ApiError as exc:
            if exc.status != 410 or not cont:
                raise
            items, cont, limit = [], None, 0
            continue
        for item in page.get("items") or []:
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
            items.append(item)
        meta = page.get("metadata") or {}
        cont = meta.get("continue") or None
        if not cont:
            return items, str(meta.get("resourceVersion") or "")

"""Paged lists (:func:`lbd.k8s.listing.list_pages`): pages followed by their continue token,
and an expired token (``410 Expired``, etcd compacted past the first page) read again as one
full list, as client-go's pager does, never as pages of two moments glued together."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import pytest

from lbd.k8s.client import SERVICES, ApiError, JsonDict, Kube
from lbd.k8s.decode import decode_lean_list
from lbd.k8s.listing import Decoder, list_pages


class PagedServer:
    """``kube.get`` over ``names`` in pages of the request's ``limit``; a continue token
    listed in ``expire`` gets ``expired_with`` instead of its page."""

    def __init__(self, names: list[str], *, expire: str = "", expired_with: int = 410) -> None:
        self.names = names
        self.expire = expire
        self.expired_with = expired_with
        self.queries: list[dict[str, Any]] = []

    def get(
        self, path: str, *, query: Mapping[str, Any] | None = None, decode: Decoder | None = None
    ) -> JsonDict:
        page = self.page(path, query)
        return page if decode is None else decode(json.dumps(page).encode())

    def page(self, path: str, query: Mapping[str, Any] | None) -> JsonDict:
        assert path == "/api/v1/services"
        q = dict(query or {})
        self.queries.append(q)
        cont = str(q.get("continue") or "")
        if cont and cont == self.expire:
            reason = "Expired" if self.expired_with == 410 else "Forbidden"
            raise ApiError(self.expired_with, reason, "the continue token is too old")
        start = int(cont or 0)
        limit = int(q.get("limit") or len(self.names))
        end = min(len(self.names), start + limit)
        meta: JsonDict = {"resourceVersion": "7"}
        if end < len(self.names):
            meta["continue"] = str(end)
        items = [{"metadata": {"name": n, "namespace": "ns"}} for n in self.names[start:end]]
        return {"metadata": meta, "items": items}


def names_of(items: list[JsonDict]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


def test_pages_are_followed_and_items_get_their_kind() -> None:
    server = PagedServer([f"s{i}" for i in range(7)])
    items, rv = list_pages(
        cast(Kube, server), SERVICES, selectors={"labelSelector": "a=b"}, limit=3
    )
    assert names_of(items) == [f"s{i}" for i in range(7)]
    assert rv == "7"
    assert {(i["apiVersion"], i["kind"]) for i in items} == {("v1", "Service")}
    assert [q.get("continue") for q in server.queries] == [None, "3", "6"]
    assert all(q["limit"] == 3 and q["labelSelector"] == "a=b" for q in server.queries)


def test_an_expired_continue_token_lists_everything_again_in_one_request() -> None:
    server = PagedServer([f"s{i}" for i in range(7)], expire="3")
    items, _ = list_pages(cast(Kube, server), SERVICES, limit=3)
    assert names_of(items) == [f"s{i}" for i in range(7)]  # the first page is not kept twice
    assert len(server.queries) == 3
    full = server.queries[-1]
    assert "limit" not in full and "continue" not in full


@pytest.mark.parametrize(("cont", "status"), [("", 410), ("3", 403)])
def test_other_failures_are_the_callers(cont: str, status: int) -> None:
    # a 410 on the first page is no expired token; a 403 on a later page is no reason to relist
    server = PagedServer([f"s{i}" for i in range(7)], expire=cont, expired_with=status)
    if not cont:
        server.get = _gone  # type: ignore[method-assign]
    with pytest.raises(ApiError) as err:
        list_pages(cast(Kube, server), SERVICES, limit=3)
    assert err.value.status == status


def _gone(path: str, *, query: Mapping[str, Any] | None = None, decode: Any = None) -> JsonDict:
    raise ApiError(410, "Gone", "no such history")


class RawPagedServer(PagedServer):
    """The same pages, with managedFields on each page's first item."""

    def page(self, path: str, query: Mapping[str, Any] | None) -> JsonDict:
        page = super().page(path, query)
        page["items"][0]["metadata"]["managedFields"] = [{"manager": "kubectl"}]
        return page


def test_pages_can_be_read_by_another_decoder() -> None:
    server = RawPagedServer([f"s{i}" for i in range(5)])
    items, rv = list_pages(cast(Kube, server), SERVICES, limit=2, decode=decode_lean_list)
    assert names_of(items) == [f"s{i}" for i in range(5)] and rv == "7"
    assert all("managedFields" not in i["metadata"] for i in items)
    assert {(i["apiVersion"], i["kind"]) for i in items} == {("v1", "Service")}

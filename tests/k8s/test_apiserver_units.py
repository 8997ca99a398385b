"""The lab API server's pure pieces: patches, selectors, schema pruning, printer columns."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbd.lab.apiserver.errors import ApiError
from lbd.lab.apiserver.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from lbd.lab.apiserver.schema import prune_and_default, validate
from lbd.lab.apiserver.selectors import build_selector
from lbd.lab.apiserver.tables import _path

# -- JSON merge patch: RFC 7386 appendix A examples ------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(st.dictionaries(st.text(max_size=3), json_values, max_size=4), json_values)
def test_merge_patch_never_mutates_its_inputs(target: dict[str, Any], patch: Any) -> None:
    before = copy.deepcopy((target, patch))
    merge_patch(target, patch)
    assert (target, patch) == before


# -- JSON patch: RFC 6902 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "ops", "result"),
    [
        (
            {"foo": "bar"},
            [{"op": "add", "path": "/baz", "value": "qux"}],
            {"foo": "bar", "baz": "qux"},
        ),
        (
            {"foo": ["bar", "baz"]},
            [{"op": "add", "path": "/foo/1", "value": "q"}],
            {"foo": ["bar", "q", "baz"]},
        ),
        ({"foo": [1]}, [{"op": "add", "path": "/foo/-", "value": 2}], {"foo": [1, 2]}),
        ({"a": 1, "b": 2}, [{"op": "remove", "path": "/a"}], {"b": 2}),
        ({"a": 1}, [{"op": "replace", "path": "/a", "value": 3}], {"a": 3}),
        ({"a": {"b": 1}}, [{"op": "move", "from": "/a/b", "path": "/c"}], {"a": {}, "c": 1}),
        ({"a": [1]}, [{"op": "copy", "from": "/a", "path": "/b"}], {"a": [1], "b": [1]}),
        (
            {"a/b": 1, "m~n": 2},
            [{"op": "remove", "path": "/a~1b"}, {"op": "remove", "path": "/m~0n"}],
            {},
        ),
        ({"a": 1}, [{"op": "test", "path": "/a", "value": 1}], {"a": 1}),
    ],
    ids=["add", "insert", "append", "remove", "replace", "move", "copy", "escapes", "test"],
)
def test_json_patch(doc: Any, ops: list[dict[str, Any]], result: Any) -> None:
    assert json_patch(doc, ops) == result


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/a", "value": 2}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/missing", "value": 1}],
        [{"op": "add", "path": "/list/5", "value": 1}],
        [{"op": "add", "path": "/x/y", "value": 1}],
    ],
    ids=["test fails", "remove missing", "replace missing", "index out of range", "no parent"],
)
def test_json_patch_failures(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(PatchError):
        json_patch({"a": 1, "list": []}, ops)


def test_json_patch_must_be_a_list() -> None:
    with pytest.raises(ApiError) as exc:
        json_patch({}, {"op": "add"})
    assert exc.value.code == 400


# -- strategic merge patch ------------------------------------------------------------------


def test_smp_kubectl_apply_directives() -> None:
    """What kubectl apply sends when a port changes from 80 to 81."""
    svc = {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 9, "name": "x"}]}}
    patch = {
        "spec": {
            "$setElementOrder/ports": [{"port": 81}, {"port": 9}],
            "ports": [{"port": 81, "name": "http"}, {"$patch": "delete", "port": 80}],
        }
    }
    out = strategic_merge_patch("Service", svc, patch)
    assert out["spec"]["ports"] == [{"port": 81, "name": "http"}, {"port": 9, "name": "x"}]


def test_smp_replace_and_retain_keys() -> None:
    obj = {"spec": {"a": 1, "b": {"c": 1, "d": 2}}}
    assert strategic_merge_patch("X", obj, {"spec": {"b": {"$patch": "replace", "e": 3}}}) == {
        "spec": {"a": 1, "b": {"e": 3}}
    }
    assert strategic_merge_patch("X", obj, {"spec": {"$retainKeys": ["b"], "b": {"c": 5}}}) == {
        "spec": {"b": {"c": 5, "d": 2}}
    }


def test_smp_list_without_strategy_is_replaced() -> None:
    obj = {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1"}]}}}
    patch = {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.2"}]}}}
    out = strategic_merge_patch("Service", obj, patch)
    assert out["status"]["loadBalancer"]["ingress"] == [{"ip": "198.18.100.2"}]


def test_smp_item_without_merge_key_is_an_error() -> None:
    with pytest.raises(PatchError):
        strategic_merge_patch("Node", {}, {"status": {"conditions": [{"status": "True"}]}})


# -- selectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a in (x, y)", {"a": "y"}, True),
        ("a notin (x)", {"a": "x"}, False),
        ("a", {"a": ""}, True),
        ("!a", {"a": ""}, False),
        ("a=b,c", {"a": "b"}, False),
        ("app.kubernetes.io/name=lbd", {"app.kubernetes.io/name": "lbd"}, True),
    ],
)
def test_label_selector(selector: str, labels: dict[str, str], matches: bool) -> None:
    sel = build_selector(selector, None, ())
    assert sel.matches({"metadata": {"labels": labels}}) is matches


def test_field_selector_on_supported_fields_only() -> None:
    sel = build_selector(None, "spec.nodeName=n1,metadata.namespace!=x", ("spec.nodeName",))
    assert sel.matches({"metadata": {"namespace": "a"}, "spec": {"nodeName": "n1"}})
    assert not sel.matches({"metadata": {"namespace": "x"}, "spec": {"nodeName": "n1"}})
    with pytest.raises(ApiError) as exc:
        build_selector(None, "spec.other=1", ("spec.nodeName",))
    assert exc.value.code == 400


# -- structural schema ----------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "mode": {"type": "string", "default": "auto"},
                "opt": {"type": "string", "nullable": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "any": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"n": {"type": "integer", "default": 0}},
                    },
                },
            },
        }
    },
}


def test_prune_and_default() -> None:
    obj = {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "a", "junk": 1},
        "spec": {
            "opt": None,
            "gone": None,
            "labels": {"k": "v"},
            "any": {"free": [1]},
            "items": [{"extra": 1}],
            "typo": 1,
        },
        "status": {"x": 1},
    }
    pruned = prune_and_default(obj, SCHEMA)
    assert obj == {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "a", "junk": 1},
        "spec": {
            "mode": "auto",
            "opt": None,
            "labels": {"k": "v"},
            "any": {"free": [1]},
            "items": [{"n": 0}],
        },
    }
    assert sorted(pruned) == ["spec.gone", "spec.items[0].extra", "spec.typo", "status"]


def test_validation_causes_name_the_path() -> None:
    causes = validate({"spec": {"labels": {"k": 1}, "items": [{"n": "x"}]}}, SCHEMA)
    assert {c.field for c in causes} == {"spec.labels.k", "spec.items[0].n"}
    assert json.dumps([c.message for c in causes])


# -- printer columns ------------------------------------------------------------------------


def test_printer_column_json_paths() -> None:
    obj = {
        "status": {"conditions": [{"type": "A", "status": "F"}, {"type": "Ready", "status": "T"}]}
    }
    assert _path(obj, '.status.conditions[?(@.type=="Ready")].status') == "T"
    # kube-apiserver's printer columns show the first match of a path
    assert _path(obj, ".status.conditions[*].type") == "A"
    assert _path(obj, ".status.conditions[0].status") == "F"
    assert _path(obj, ".spec.missing") is None


def test_tables_for_kubectl_get() -> None:
    from lbd.lab.apiserver.resources import Registry
    from lbd.lab.apiserver.tables import table

    reg = Registry()
    svc_rt = reg.lookup("", "v1", "services")
    assert svc_rt is not None
    svc = {
        "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"type": "LoadBalancer", "clusterIP": "198.19.0.2", "ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1"}]}},
    }
    out = table(svc_rt, [svc], "5")
    names = [(c["name"], c["priority"]) for c in out["columnDefinitions"]]
    assert names == [
        ("Name", 0),
        ("Type", 0),
        ("Cluster-IP", 0),
        ("External-IP", 0),
        ("Port(s)", 0),
        ("Age", 0),
        ("Selector", 1),
    ]
    assert out["rows"][0]["cells"][:5] == [
        "web",
        "LoadBalancer",
        "198.19.0.2",
        "198.18.100.1",
        "80/TCP",
    ]
    ev_rt = reg.lookup("", "v1", "events")
    assert ev_rt is not None
    ev = {
        "metadata": {"name": "e"},
        "involvedObject": {"kind": "Service", "name": "web"},
        "type": "Warning",
        "reason": "AllocationFailed",
        "message": "no pool",
    }
    cells = table(ev_rt, [ev], "5")["rows"][0]["cells"]
    # LAST SEEN, TYPE, REASON, OBJECT, SUBOBJECT, SOURCE, MESSAGE, FIRST SEEN, COUNT, NAME
    assert cells == [
        "<unknown>",
        "Warning",
        "AllocationFailed",
        "service/web",
        "",
        "",
        "no pool",
        "<unknown>",
        1,
        "e",
    ]


def test_cli_arguments() -> None:
    import argparse

    from lbd.lab.apiserver.cli import _listen, _token

    assert _listen("198.18.0.1:6443") == ("198.18.0.1", 6443)
    assert _listen("[2001:db8::1]:6443") == ("2001:db8::1", 6443)
    assert _token("t=system:serviceaccount:lbd-system:lbd-speaker,g1,g2") == (
        "t",
        "system:serviceaccount:lbd-system:lbd-speaker",
        ["g1", "g2"],
    )
    for bad in ("nouser", "=user", "t="):
        with pytest.raises(argparse.ArgumentTypeError):
            _token(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        _listen("6443")


def test_human_durations_are_kubectls() -> None:
    from lbd.lab.apiserver.tables import human_duration

    cases = {
        0: "0s",
        119: "119s",
        125: "2m5s",
        600: "10m",
        3 * 3600 + 5 * 60: "3h5m",
        9 * 3600: "9h",
        50 * 3600: "2d2h",
        9 * 86400: "9d",
        800 * 86400: "2y70d",
        -1.5: "0s",
        -5: "<invalid>",
    }
    assert {s: human_duration(s) for s in cases} == cases

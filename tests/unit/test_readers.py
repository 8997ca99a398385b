"""The readers' cheap paths for the usual shape give way on odd input, and no reader raises on
what a user (or a speaker) wrote: ObjectRef.of, conditions, ServiceL2Status, Service."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbd.k8s.conditions import ObservedCondition, conditions_of
from lbd.k8s.l2status import observe_l2status
from lbd.k8s.meta import ObjectRef
from lbd.k8s.service import CONDITION_TYPE, observe_service

# JSON values, and maps with the field names the readers look for (so a draw reaches them)
KEYS = st.sampled_from(
    [
        "metadata", "spec", "status", "name", "namespace", "uid", "resourceVersion",
        "annotations", "labels", "creationTimestamp", "apiVersion", "kind", "type", "ports",
        "port", "protocol", "ipFamilies", "clusterIPs", "clusterIP", "loadBalancer", "ingress",
        "ip", "ipMode", "conditions", "node", "announced", "interfaces", "vips", "reason",
        "message", "serviceName", "serviceNamespace", "since", "lbd.io/address-pool",
    ]
)  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(deadline=None, max_examples=300)  # timing varies on a loaded CI machine
@given(st.dictionaries(KEYS, JSON, max_size=6))
def test_no_reader_raises_on_any_json(obj: dict[str, Any]) -> None:
    view = observe_service(obj)
    _ = view.request, view == observe_service(obj)
    observe_l2status(obj)
    ObjectRef.of(obj)


@pytest.mark.parametrize(
    ("obj", "want"),
    [
        ({}, ObjectRef("v1", "", "", "")),
        ({"metadata": None, "apiVersion": None}, ObjectRef("v1", "", "", "")),
        ({"metadata": ["x"], "kind": 7}, ObjectRef("v1", "7", "", "")),
        (
            {"metadata": {"name": 1, "namespace": "", "uid": 0, "resourceVersion": 12}},
            ObjectRef("v1", "", "", "1", "", "12"),
        ),
        (
            {"apiVersion": "lbd.io/v1beta1", "kind": "K", "metadata": {"name": "a", "uid": "u"}},
            ObjectRef("lbd.io/v1beta1", "K", "", "a", "u", ""),
        ),
    ],
)
def test_object_ref_of_odd_metadata(obj: dict[str, Any], want: ObjectRef) -> None:
    assert ObjectRef.of(obj) == want


def test_conditions_keep_only_maps_and_find_reads_every_field() -> None:
    conds = conditions_of([1, None, {"type": "a", "status": True, "reason": None}, "x"])
    assert conds == ({"type": "a", "status": True, "reason": None},)
    assert conditions_of({"type": "a"}) == () and conditions_of(None) == ()
    assert ObservedCondition.find(conds, "a") == ObservedCondition(
        type="a", status="True", reason="", message="", last_transition=""
    )
    assert ObservedCondition.find(conds, "b") is None


def test_l2status_odd_fields() -> None:
    view = observe_l2status(
        {
            "metadata": {"namespace": "ns", "name": "web"},
            "status": {
                "node": "n1",
                "interfaces": [{"name": "eth0"}, {"name": 3}, "eth1", {}],
                "vips": ["198.18.0.1", 7, None],
                "announced": "yes",  # not a bool: the default (announced when a node is named)
            },
        }
    )
    assert view.key == "ns/web" and view.interfaces == ("eth0",) and view.vips == ("198.18.0.1",)
    assert view.announced and view.reason == "Announced"
    for interfaces in (5, "eth0", {"name": "eth0"}):  # not a list: none
        odd = observe_l2status({"status": {"node": "n1", "interfaces": interfaces}})
        assert odd.interfaces == ()
    bare = observe_l2status({"metadata": {"namespace": "ns", "name": "web"}, "status": None})
    assert (bare.node, bare.announced, bare.reason, bare.written) == ("", False, "", False)


def test_service_odd_fields_read_as_before() -> None:
    view = observe_service(
        {
            "metadata": {"namespace": "ns", "name": "web", "annotations": None},
            "spec": {"type": "LoadBalancer", "clusterIPs": "10.0.0.1", "clusterIP": "10.0.0.1"},
            "status": {"conditions": [None, {"type": CONDITION_TYPE, "status": "False"}]},
        }
    )
    assert view.cluster_ips == ()  # clusterIPs is not a list
    assert view.condition is not None and view.condition.status == "False"
    assert view.findings == () and view.pool_hint is None and view.recorded_pool is None
    spec_ips = observe_service({"spec": {"clusterIP": "10.0.0.1", "clusterIPs": []}})
    assert spec_ips.cluster_ips == ("10.0.0.1",)
    assert observe_service({"spec": {"clusterIPs": ["None", "", "fd00::1"]}}).cluster_ips == (
        "fd00::1",
    )

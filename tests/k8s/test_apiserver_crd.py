"""CustomResourceDefinitions: applying one serves its resource, with schema defaults, pruning,
validation, status subresource and scope, through the official client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from lbd.lab.apiserver import LabApiServer
from tests.k8s.conftest import new_watch

REPO = Path(__file__).resolve().parents[2]
GROUP = "example.lbd.io"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "color": {
                                        "type": "string",
                                        "enum": ["blue", "red"],
                                        "default": "blue",
                                    },
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "tags": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "name": {"type": "string"},
                                                "weight": {"type": "integer", "default": 1},
                                            },
                                        },
                                    },
                                    "extra": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"ready": {"type": "boolean"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}

GADGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"gadgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Cluster",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def custom(admin_client: client.ApiClient) -> Any:
    ext: Any = client.ApiextensionsV1Api(admin_client)
    ext.create_custom_resource_definition(WIDGET_CRD)
    ext.create_custom_resource_definition(GADGET_CRD)
    return client.CustomObjectsApi(admin_client)


def _widget(name: str = "w", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": 1, **spec},
    }


def _causes(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, str]:
    status = json.loads(exc.value.body or "{}")
    assert status["reason"] == "Invalid", status
    return {c["field"]: c["message"] for c in status["details"]["causes"]}


def test_applying_a_crd_serves_its_resource(admin_client: client.ApiClient, custom: Any) -> None:
    crd: Any = client.ApiextensionsV1Api(admin_client).read_custom_resource_definition(
        f"widgets.{GROUP}"
    )
    assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"
    resources: Any = client.CustomObjectsApi(admin_client)
    discovered = resources.get_api_resources(GROUP, "v1")
    assert {r.name for r in discovered.resources} >= {"widgets", "widgets/status"}
    custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", _widget())
    got = custom.get_namespaced_custom_object(GROUP, "v1", "default", "widgets", "w")
    assert got["metadata"]["generation"] == 1 and got["metadata"]["uid"]
    listed = custom.list_namespaced_custom_object(GROUP, "v1", "default", "widgets")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w"]
    assert listed["metadata"]["resourceVersion"]


def test_defaults_are_applied_and_unknown_fields_pruned(custom: Any) -> None:
    body = _widget(tags=[{"name": "a"}], unknown="x", extra={"free": {"form": 1}})
    body["topLevelJunk"] = 1
    w = custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", body)
    assert w["spec"] == {
        "size": 1,
        "color": "blue",
        "tags": [{"name": "a", "weight": 1}],
        "extra": {"free": {"form": 1}},
    }
    assert "topLevelJunk" not in w


def test_strict_field_validation_rejects_unknown_fields(custom: Any) -> None:
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(
            GROUP, "v1", "default", "widgets", _widget(colour="red"), field_validation="Strict"
        )
    assert exc.value.status == 400
    assert 'unknown field "spec.colour"' in json.loads(exc.value.body or "{}")["message"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"size": 0}, "spec.size"),
        ({"size": "big"}, "spec.size"),
        ({"size": 1, "color": "green"}, "spec.color"),
        ({"size": 1, "port": 1.5}, "spec.port"),
        ({"size": 1, "tags": [{"name": 5}]}, "spec.tags[0].name"),
        ({}, "spec.size"),
    ],
    ids=["below minimum", "wrong type", "not in enum", "not int-or-string", "nested", "required"],
)
def test_schema_validation_names_the_field(custom: Any, spec: dict[str, Any], field: str) -> None:
    body = _widget()
    body["spec"] = spec
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", body)
    assert exc.value.status == 422
    assert field in _causes(exc)


def test_int_or_string_accepts_both(custom: Any) -> None:
    custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", _widget("a", port=80))
    custom.create_namespaced_custom_object(
        GROUP, "v1", "default", "widgets", _widget("b", port="http")
    )


def test_status_subresource_and_generation(custom: Any) -> None:
    args = (GROUP, "v1", "default", "widgets", "w")
    created = custom.create_namespaced_custom_object(
        GROUP, "v1", "default", "widgets", {**_widget(), "status": {"ready": True}}
    )
    assert "status" not in created  # status is dropped on create
    after_status = custom.patch_namespaced_custom_object_status(
        *args, {"spec": {"size": 5}, "status": {"ready": True}}
    )
    assert after_status["status"] == {"ready": True} and after_status["spec"]["size"] == 1
    assert after_status["metadata"]["generation"] == 1  # status writes do not bump it
    after_spec = custom.patch_namespaced_custom_object(
        *args, {"spec": {"size": 2}, "status": {"ready": False}}
    )
    assert after_spec["spec"]["size"] == 2 and after_spec["status"] == {"ready": True}
    assert after_spec["metadata"]["generation"] == 2
    labelled = custom.patch_namespaced_custom_object(*args, {"metadata": {"labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 2  # metadata changes do not bump it


def test_update_requires_resource_version_and_rejects_stale(custom: Any) -> None:
    args = (GROUP, "v1", "default", "widgets", "w")
    w = custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", _widget())
    without = _widget(size=3)
    with pytest.raises(ApiException) as exc:
        custom.replace_namespaced_custom_object(*args, without)
    assert exc.value.status == 422
    custom.patch_namespaced_custom_object(*args, {"spec": {"size": 4}})
    stale = _widget(size=3)
    stale["metadata"]["resourceVersion"] = w["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as exc:
        custom.replace_namespaced_custom_object(*args, stale)
    assert exc.value.status == 409


def test_strategic_merge_patch_is_unsupported_for_custom_resources(custom: Any) -> None:
    custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", _widget())
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(
            GROUP,
            "v1",
            "default",
            "widgets",
            "w",
            {"spec": {"size": 2}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert exc.value.status == 415


def test_cluster_scoped_resource(custom: Any) -> None:
    custom.create_cluster_custom_object(
        GROUP,
        "v1",
        "gadgets",
        {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": "g"}, "x": 1},
    )
    assert custom.get_cluster_custom_object(GROUP, "v1", "gadgets", "g")["x"] == 1
    with pytest.raises(ApiException) as exc:
        custom.get_namespaced_custom_object(GROUP, "v1", "default", "gadgets", "g")
    assert exc.value.status == 404


def test_watch_custom_objects(custom: Any) -> None:
    start = custom.list_namespaced_custom_object(GROUP, "v1", "default", "widgets")
    custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", _widget())
    custom.delete_namespaced_custom_object(GROUP, "v1", "default", "widgets", "w")
    events = [
        (e["type"], e["object"]["metadata"]["name"])
        for e in new_watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            "v1",
            "default",
            "widgets",
            resource_version=start["metadata"]["resourceVersion"],
            timeout_seconds=1,
        )
    ]
    assert events == [("ADDED", "w"), ("DELETED", "w")]


def test_deleting_the_crd_stops_serving_it(admin_client: client.ApiClient, custom: Any) -> None:
    custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", _widget())
    ext: Any = client.ApiextensionsV1Api(admin_client)
    ext.delete_custom_resource_definition(f"widgets.{GROUP}")
    with pytest.raises(ApiException) as exc:
        custom.list_namespaced_custom_object(GROUP, "v1", "default", "widgets")
    assert exc.value.status == 404
    ext.create_custom_resource_definition(WIDGET_CRD)
    listed = custom.list_namespaced_custom_object(GROUP, "v1", "default", "widgets")
    assert listed["items"] == []  # objects went with their definition


def test_invalid_crd_is_rejected(admin_client: client.ApiClient) -> None:
    bad = json.loads(json.dumps(WIDGET_CRD))
    bad["metadata"]["name"] = "wrong.example.lbd.io"
    ext: Any = client.ApiextensionsV1Api(admin_client)
    with pytest.raises(ApiException) as exc:
        ext.create_custom_resource_definition(bad)
    assert exc.value.status == 422
    assert "metadata.name" in _causes(exc)


def test_project_crds_load_and_accept_the_example_pool() -> None:
    crds = REPO / "crds"
    if not crds.is_dir() or not any(crds.glob("*.yaml")):
        pytest.skip("crds/ has no CRDs yet")
    server = LabApiServer(crds_dir=crds).start()
    try:
        from tests.k8s.conftest import api_client

        with api_client(server) as api:
            ext: Any = client.ApiextensionsV1Api(api)
            names = {c.spec.names.kind for c in ext.list_custom_resource_definition().items}
            assert {"IPAddressPool", "L2Advertisement"} <= names
            examples = REPO / "deploy" / "examples"
            docs = []
            for path in sorted(examples.glob("*.yaml")) if examples.is_dir() else []:
                docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
            pools = [d for d in docs if d.get("kind") == "IPAddressPool"]
            custom: Any = client.CustomObjectsApi(api)
            for pool in pools:
                group, version = pool["apiVersion"].split("/")
                custom.create_cluster_custom_object(group, version, "ipaddresspools", pool)
            listed = custom.list_cluster_custom_object("lbd.io", "v1beta1", "ipaddresspools")
            assert len(listed["items"]) == len(pools)
    finally:
        server.stop()


def test_served_versions_share_objects(admin_client: client.ApiClient) -> None:
    crd = json.loads(json.dumps(GADGET_CRD))
    v1 = crd["spec"]["versions"][0]
    crd["spec"]["versions"] = [{**v1, "name": "v1alpha1", "storage": False}, v1]
    ext: Any = client.ApiextensionsV1Api(admin_client)
    ext.create_custom_resource_definition(crd)
    groups: Any = client.ApisApi(admin_client).get_api_versions()
    group = next(g for g in groups.groups if g.name == GROUP)
    assert group.preferred_version.version == "v1"
    assert {v.version for v in group.versions} == {"v1", "v1alpha1"}
    custom: Any = client.CustomObjectsApi(admin_client)
    custom.create_cluster_custom_object(
        GROUP,
        "v1",
        "gadgets",
        {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": "g"}},
    )
    old = custom.get_cluster_custom_object(GROUP, "v1alpha1", "gadgets", "g")
    assert old["apiVersion"] == f"{GROUP}/v1alpha1"  # the None conversion: only apiVersion


def test_crd_with_unusable_schema_is_rejected(admin_client: client.ApiClient) -> None:
    bad = json.loads(json.dumps(WIDGET_CRD))
    props = bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    props["spec"]["properties"]["color"]["pattern"] = "(["  # not a regular expression
    ext: Any = client.ApiextensionsV1Api(admin_client)
    with pytest.raises(ApiException) as exc:
        ext.create_custom_resource_definition(bad)
    assert exc.value.status == 422
    assert "spec.versions[0].schema.openAPIV3Schema" in _causes(exc)

"""Identities and RBAC: tokens, 401, 403 messages, rules from YAML files and from the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from lbd.lab.apiserver import LabApiServer
from tests.k8s.conftest import api_client

REPO = Path(__file__).resolve().parents[2]
SA = "system:serviceaccount:lbd-system:lbd-controller"

RBAC_YAML = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: lbd-controller, namespace: lbd-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ctl}
rules:
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [services/status]
  verbs: [patch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [lbd-controller]
  verbs: [get, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ctl}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ctl}
subjects:
- {kind: ServiceAccount, name: lbd-controller, namespace: lbd-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-writer, namespace: team}
rules:
- apiGroups: ["*"]
  resources: ["*"]
  verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: cm-writer, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-writer}
subjects:
- {kind: Group, name: devs}
"""


@pytest.fixture
def rbac_server(tmp_path: Path) -> Any:
    path = tmp_path / "rbac.yaml"
    path.write_text(RBAC_YAML)
    server = LabApiServer(rbac_files=[path]).start()
    try:
        admin: Any = client.CoreV1Api(api_client(server))
        # the namespace of the Role in the file was created when the file was loaded
        assert "team" in {n.metadata.name for n in admin.list_namespace().items}
        admin.create_namespace({"metadata": {"name": "lbd-system"}})
        admin.create_namespaced_service(
            "default",
            {
                "metadata": {"name": "web"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            },
        )
        server.add_token("ctl-token", SA)
        server.add_token("dev-token", "alice", ["devs"])
        yield server
    finally:
        server.stop()


def _status(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(exc.value.body or "{}")
    return out


def test_service_account_can_do_what_its_role_grants(rbac_server: LabApiServer) -> None:
    v1: Any = client.CoreV1Api(api_client(rbac_server, "ctl-token"))
    services = v1.list_service_for_all_namespaces().items
    assert [s.metadata.name for s in services] == ["kubernetes", "web"]
    v1.patch_namespaced_service_status(
        "web",
        "default",
        {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.100.1"}]}}},
        _content_type="application/merge-patch+json",
    )


def test_forbidden_message_names_user_verb_resource_group_and_namespace(
    rbac_server: LabApiServer,
) -> None:
    v1: Any = client.CoreV1Api(api_client(rbac_server, "ctl-token"))
    with pytest.raises(ApiException) as exc:
        v1.patch_namespaced_service(
            "web",
            "default",
            {"metadata": {"labels": {"a": "b"}}},
            _content_type="application/merge-patch+json",
        )
    assert exc.value.status == 403
    status = _status(exc)
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        f'services "web" is forbidden: User "{SA}" cannot patch resource "services" in API '
        'group "" in the namespace "default"'
    )
    with pytest.raises(ApiException) as exc:
        v1.list_node()
    assert _status(exc)["message"] == (
        f'nodes is forbidden: User "{SA}" cannot list resource "nodes" in API group "" at the '
        "cluster scope"
    )
    with pytest.raises(ApiException) as exc:
        v1.replace_namespaced_service_status(
            "web", "default", v1.read_namespaced_service("web", "default")
        )
    assert 'cannot update resource "services/status"' in _status(exc)["message"]


def test_resource_names_restrict_the_rule(rbac_server: LabApiServer) -> None:
    admin: Any = client.CoordinationV1Api(api_client(rbac_server))
    for name in ("lbd-controller", "other"):
        admin.create_namespaced_lease("lbd-system", {"metadata": {"name": name}, "spec": {}})
    coord: Any = client.CoordinationV1Api(api_client(rbac_server, "ctl-token"))
    assert coord.read_namespaced_lease("lbd-controller", "lbd-system").metadata.name
    with pytest.raises(ApiException) as exc:
        coord.read_namespaced_lease("other", "lbd-system")
    assert exc.value.status == 403
    assert 'in API group "coordination.k8s.io"' in _status(exc)["message"]


def test_role_binding_to_group_applies_only_in_its_namespace(rbac_server: LabApiServer) -> None:
    v1: Any = client.CoreV1Api(api_client(rbac_server, "dev-token"))
    v1.create_namespaced_config_map("team", {"metadata": {"name": "c"}})
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    assert exc.value.status == 403


def test_rbac_objects_created_through_the_api_are_enforced(rbac_server: LabApiServer) -> None:
    v1: Any = client.CoreV1Api(api_client(rbac_server, "ctl-token"))
    with pytest.raises(ApiException):
        v1.list_namespaced_config_map("default")
    rbac: Any = client.RbacAuthorizationV1Api(api_client(rbac_server))
    rbac.create_namespaced_role(
        "default",
        {
            "metadata": {"name": "cm-read"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "cm-read"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-read"},
            "subjects": [{"kind": "User", "name": SA}],
        },
    )
    assert v1.list_namespaced_config_map("default").items == []


def test_unknown_token_is_401(rbac_server: LabApiServer) -> None:
    v1: Any = client.CoreV1Api(api_client(rbac_server, "no-such-token"))
    with pytest.raises(ApiException) as exc:
        v1.list_namespace()
    assert exc.value.status == 401
    assert _status(exc)["reason"] == "Unauthorized"


def test_discovery_is_open_to_any_authenticated_user(rbac_server: LabApiServer) -> None:
    api: Any = client.CoreV1Api(api_client(rbac_server, "dev-token"))
    assert api.get_api_resources().group_version == "v1"


def test_fault_endpoint_is_admin_only(rbac_server: LabApiServer) -> None:
    def post(token: str | None) -> int:
        api = api_client(rbac_server, token)
        req = api.param_serialize(
            "POST", "/_lab/faults", body={"action": "reset"}, auth_settings=["BearerToken"]
        )
        return int(api.call_api(*req).status)

    assert post("dev-token") == 403
    assert post(None) == 200


def test_deploy_rbac_loads_and_grants_the_controller_its_calls() -> None:
    rbac = REPO / "deploy" / "base" / "rbac.yaml"
    if not rbac.is_file():
        pytest.skip("deploy/base/rbac.yaml not written yet")
    server = LabApiServer(rbac_files=[rbac]).start()
    try:
        server.add_token("t", SA)
        admin: Any = client.CoreV1Api(api_client(server))
        admin.create_namespaced_service(
            "default", {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
        )
        v1: Any = client.CoreV1Api(api_client(server, "t"))
        v1.list_service_for_all_namespaces()
        with pytest.raises(ApiException) as exc:
            v1.list_pod_for_all_namespaces()
        assert exc.value.status == 403
    finally:
        server.stop()

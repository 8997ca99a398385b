"""Defaulting and validation of the built-in types, the parts clients observe.

A real API server runs a registry strategy per type. Only the behaviour lbd (or a user reading
its output) can see is reproduced: Services get a ClusterIP, ``ipFamilies`` / ``ipFamilyPolicy``,
port protocols and node ports, and a reset status on create; invalid Service types, ports and
EndpointSlice address types are rejected with 422 causes naming the field. Cluster IPs come from
198.19.0.0/16 and 2001:db8:ffff::/112 (documentation ranges: they are only strings here, no
traffic ever goes to them).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Iterator
from typing import Any

from lbd.lab.apiserver.errors import ApiError, Cause

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

#: kinds whose names must be DNS-1035 labels (Service) or RFC 1123 labels (Namespace)
_NAME_RULES: dict[str, tuple[re.Pattern[str], int, str]] = {
    "Service": (
        _DNS_LABEL,
        63,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
        "with an alphabetic character, and end with an alphanumeric character",
    ),
    "Namespace": (
        _RFC1123_LABEL,
        63,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
        "'-', and must start and end with an alphanumeric character",
    ),
}
_SUBDOMAIN_RULE = (
    _DNS_SUBDOMAIN,
    253,
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character",
)
#: RBAC objects allow path-segment names ("system:controller:..." etc.)
_PATH_SEGMENT_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def validate_name(kind: str, name: str) -> list[Cause]:
    if kind in _PATH_SEGMENT_KINDS:
        if name in (".", "..") or "/" in name or "%" in name:
            return [Cause("FieldValueInvalid", f'Invalid value: "{name}"', "metadata.name")]
        return []
    pattern, limit, text = _NAME_RULES.get(kind, _SUBDOMAIN_RULE)
    if len(name) > limit:
        return [
            Cause(
                "FieldValueInvalid",
                f'Invalid value: "{name}": must be no more than {limit} characters',
                "metadata.name",
            )
        ]
    if not pattern.match(name):
        return [Cause("FieldValueInvalid", f'Invalid value: "{name}": {text}', "metadata.name")]
    return []


NODE_PORTS = (30000, 32767)
"""kube-apiserver's default ``--service-node-port-range``."""


KUBERNETES_SERVICE_IP = "198.19.0.1"
"""The ``default/kubernetes`` Service's address: the first of the Service range."""


class IpAllocator:
    """Hands out cluster IPs (never reused within a server's life) and node ports.

    Node ports are unique, as kube-apiserver's are: a port is held by one Service until that
    Service is deleted or no longer needs it (:meth:`sync` after every Service write), and a
    full range refuses the Service with kube-apiserver's error (500 ``failed to allocate a
    nodePort: range is full``): with the default 2 768 ports, a cluster with more
    LoadBalancer Services than that needs ``allocateLoadBalancerNodePorts: false``.
    """

    def __init__(self, node_ports: tuple[int, int] = NODE_PORTS) -> None:
        self._v4 = ipaddress.ip_network("198.19.0.0/16").hosts()
        self._v6 = ipaddress.ip_network("2001:db8:ffff::/112").hosts()
        next(self._v4)  # .1: KUBERNETES_SERVICE_IP
        self._first, self._last = node_ports
        self._cursor = self._first
        self._held: dict[tuple[str, str], frozenset[int]] = {}
        self._in_use: set[int] = set()
        self._pending: set[int] = set()  # handed out to the write in progress

    def ip(self, family: str) -> str:
        it: Iterator[Any] = self._v6 if family == "IPv6" else self._v4
        return str(next(it))

    def node_port(self) -> int:
        size = self._last - self._first + 1
        for _ in range(size):
            port = self._cursor
            self._cursor = self._first if port >= self._last else port + 1
            if port not in self._in_use and port not in self._pending:
                self._pending.add(port)
                return port
        raise ApiError(
            500,
            "InternalError",
            "Internal error occurred: failed to allocate a nodePort: range is full",
        )

    def sync(self, key: tuple[str, str], service: dict[str, Any] | None) -> None:
        """Record the node ports ``key`` holds after a write (``None``: deleted)."""
        self._pending.clear()
        ports = frozenset(node_ports_of(service)) if service is not None else frozenset()
        old = self._held.pop(key, frozenset())
        self._in_use -= old
        if ports:
            self._held[key] = ports
            self._in_use |= ports


def node_ports_of(service: dict[str, Any]) -> list[int]:
    spec = service.get("spec") or {}
    ports = [p.get("nodePort") for p in spec.get("ports") or [] if isinstance(p, dict)]
    ports.append(spec.get("healthCheckNodePort"))
    return [p for p in ports if isinstance(p, int) and p > 0]


def _family_of(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def prepare_service_create(obj: dict[str, Any], alloc: IpAllocator) -> None:
    spec = obj["spec"] = obj.get("spec") or {}
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    stype = spec["type"]
    if stype == "ExternalName":
        obj["status"] = {"loadBalancer": {}}
        return
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if stype in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if stype == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    policy = spec.setdefault("ipFamilyPolicy", "SingleStack")
    families = spec.get("ipFamilies")
    if not families:
        requested = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        requested = [ip for ip in requested if ip != "None"]
        if requested:
            families = [_family_of(ip) for ip in requested]
        elif policy in ("PreferDualStack", "RequireDualStack"):
            families = ["IPv4", "IPv6"]
        else:
            families = ["IPv4"]
        if policy != "SingleStack" and len(families) == 1:
            families = [families[0], "IPv6" if families[0] == "IPv4" else "IPv4"]
        spec["ipFamilies"] = families
    if spec.get("clusterIP") == "None":
        spec["clusterIPs"] = ["None"]
    else:
        ips = list(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
        for fam in families[len(ips) :]:
            ips.append(alloc.ip(fam))
        spec["clusterIPs"] = ips
        spec["clusterIP"] = ips[0]
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    # kube-apiserver gives ports of the same number one node port (TCP and UDP 53 share it),
    # a requested one if any of them asks for one
    by_number = {p.get("port"): p["nodePort"] for p in reversed(ports) if p.get("nodePort")}
    for port in ports:
        port.setdefault("protocol", "TCP")
        if "port" in port:
            port.setdefault("targetPort", port["port"])
        if (
            stype in ("NodePort", "LoadBalancer")
            and (stype == "NodePort" or spec.get("allocateLoadBalancerNodePorts", True))
            and "nodePort" not in port
        ):
            if port.get("port") not in by_number:
                by_number[port.get("port")] = alloc.node_port()
            port["nodePort"] = by_number[port.get("port")]
    if stype == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local":
        spec.setdefault("healthCheckNodePort", alloc.node_port())
    obj["status"] = {"loadBalancer": {}}


def prepare_service_update(new: dict[str, Any], old: dict[str, Any], alloc: IpAllocator) -> None:
    """Keep what the server allocated when an update leaves it out (cluster IPs, node ports),
    and drop what no longer applies when ``type`` changes, as the Service registry does: an
    unchanged ``externalTrafficPolicy``, ``loadBalancerClass`` or
    ``allocateLoadBalancerNodePorts`` and the node ports go when the new type has no use for
    them, and ``status.loadBalancer`` is cleared when the Service stops being a LoadBalancer
    (controllers see their ingress disappear without writing it themselves)."""
    spec = new["spec"] = new.get("spec") or {}
    old_spec = old.get("spec", {})
    new_type, old_type = spec.get("type", "ClusterIP"), old_spec.get("type", "ClusterIP")
    if new_type != "LoadBalancer" and isinstance(new.get("status"), dict):
        new["status"]["loadBalancer"] = {}
    if old_type == "LoadBalancer" and new_type != "LoadBalancer":
        for key in ("loadBalancerClass", "allocateLoadBalancerNodePorts"):
            if key in spec and spec.get(key) == old_spec.get(key):
                del spec[key]
    external = ("NodePort", "LoadBalancer")
    if old_type in external and new_type not in external:
        if spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
            spec.pop("externalTrafficPolicy", None)
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.pop("nodePort", None)
    local_lb = new_type == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
    if not local_lb and spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
        spec.pop("healthCheckNodePort", None)  # no longer used, and not set by this write
    elif local_lb and "healthCheckNodePort" not in spec and old_spec.get("healthCheckNodePort"):
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]
    if new_type == "ExternalName":
        return
    for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        if key not in spec and key in old_spec:
            spec[key] = old_spec[key]
    if new_type in external:
        old_node_ports = {
            (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
            for p in old_spec.get("ports") or []
            if isinstance(p, dict)
        }
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and "nodePort" not in port:
                np = old_node_ports.get((port.get("port"), port.get("protocol", "TCP")))
                if np:
                    port["nodePort"] = np
    prepare_service_create_defaults(new, alloc)


def prepare_service_create_defaults(obj: dict[str, Any], alloc: IpAllocator) -> None:
    status = obj.get("status")
    prepare_service_create(obj, alloc)
    if status is not None:
        obj["status"] = status


_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
_PROTOCOLS = ("TCP", "UDP", "SCTP")


def validate_service(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    spec = obj.get("spec") or {}
    stype = spec.get("type", "ClusterIP")
    if stype not in _SERVICE_TYPES:
        causes.append(
            Cause(
                "FieldValueNotSupported",
                f'Unsupported value: "{stype}": supported values: '
                + ", ".join(f'"{t}"' for t in _SERVICE_TYPES),
                "spec.type",
            )
        )
    ports = spec.get("ports") or []
    if not ports and stype != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(Cause("FieldValueRequired", "Required value", "spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        if not isinstance(port, dict):
            causes.append(Cause("FieldValueInvalid", "must be an object", f"spec.ports[{i}]"))
            continue
        # kube-apiserver: with more than one port, each needs a name, and names are unique
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            causes.append(Cause("FieldValueRequired", "Required value", f"spec.ports[{i}].name"))
        elif name and name in names:
            causes.append(
                Cause("FieldValueDuplicate", f'Duplicate value: "{name}"', f"spec.ports[{i}].name")
            )
        names.add(name)
        p = port.get("port")
        if not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= 65535:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {p!r}: must be between 1 and 65535, inclusive",
                    f"spec.ports[{i}].port",
                )
            )
        proto = port.get("protocol", "TCP")
        if proto not in _PROTOCOLS:
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f'Unsupported value: "{proto}": supported values: "SCTP", "TCP", "UDP"',
                    f"spec.ports[{i}].protocol",
                )
            )
    for key in ("externalTrafficPolicy", "internalTrafficPolicy"):
        val = spec.get(key)
        if val is not None and val not in ("Cluster", "Local"):
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f'Unsupported value: "{val}": supported values: "Cluster", "Local"',
                    f"spec.{key}",
                )
            )
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if ingress and spec.get("type", "ClusterIP") != "LoadBalancer":
        # kube-apiserver (ValidateServiceStatusUpdate): only a LoadBalancer shows an ingress
        causes.append(
            Cause(
                "FieldValueForbidden",
                "Forbidden: may only be used when `spec.type` is 'LoadBalancer'",
                "status.loadBalancer.ingress",
            )
        )
    for i, ing in enumerate(ingress):
        ip = ing.get("ip") if isinstance(ing, dict) else None
        mode = ing.get("ipMode") if isinstance(ing, dict) else None
        if mode is not None and mode not in ("VIP", "Proxy"):
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f'Unsupported value: "{mode}": supported values: "Proxy", "VIP"',
                    f"status.loadBalancer.ingress[{i}].ipMode",
                )
            )
        elif mode is not None and not ip:
            causes.append(
                Cause(
                    "FieldValueForbidden",
                    "Forbidden: may not be specified when `ip` is not set",
                    f"status.loadBalancer.ingress[{i}].ipMode",
                )
            )
        if ip is not None:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                causes.append(
                    Cause(
                        "FieldValueInvalid",
                        f'Invalid value: "{ip}": must be a valid IP address',
                        f"status.loadBalancer.ingress[{i}].ip",
                    )
                )
    return causes


def validate_endpoint_slice(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    at = obj.get("addressType")
    if at not in ("IPv4", "IPv6", "FQDN"):
        causes.append(
            Cause(
                "FieldValueNotSupported" if at else "FieldValueRequired",
                f'Unsupported value: "{at}": supported values: "FQDN", "IPv4", "IPv6"'
                if at
                else "Required value",
                "addressType",
            )
        )
    for i, ep in enumerate(obj.get("endpoints") or []):
        if not isinstance(ep, dict) or not ep.get("addresses"):
            causes.append(
                Cause("FieldValueRequired", "Required value", f"endpoints[{i}].addresses")
            )
    return causes


def prepare_secret(obj: dict[str, Any]) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.setdefault("data", {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def prepare_pod_create(obj: dict[str, Any]) -> None:
    """A new Pod's status, as kube-apiserver sets it: Pending, with its QoS class."""
    obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj.get("spec") or {})}


def _qos_class(spec: dict[str, Any]) -> str:
    """``BestEffort`` without any CPU or memory request or limit, ``Guaranteed`` when every
    container limits both and requests what it limits, ``Burstable`` otherwise."""
    containers = [
        c
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
        if isinstance(c, dict)
    ]
    guaranteed, any_set = bool(containers), False
    for c in containers:
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        for name in ("cpu", "memory"):
            if name in requests or name in limits:
                any_set = True
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


_STR_MAP = {str: str}
_RULE = {
    "verbs": [str],
    "apiGroups": [str],
    "resources": [str],
    "resourceNames": [str],
    "nonResourceURLs": [str],
}
_BINDING = {
    "roleRef": {"kind": str, "name": str, "apiGroup": str},
    "subjects": [{"kind": str, "name": str, "namespace": str, "apiGroup": str}],
}
_CONDITIONS = [{"type": str, "status": str, "reason": str, "message": str}]
#: The JSON shape of the fields this module reads: a dict is an object with those fields (others
#: are not checked), a one-element list a list of that shape, ``{str: str}`` a string map.
_SHAPES: dict[str, dict[str, Any]] = {
    "Service": {
        "spec": {
            "type": str,
            "ports": [
                {
                    "port": int,
                    "nodePort": int,
                    "protocol": str,
                    "name": str,
                    "targetPort": (int, str),
                }
            ],
            "clusterIP": str,
            "clusterIPs": [str],
            "ipFamilies": [str],
            "ipFamilyPolicy": str,
            "externalTrafficPolicy": str,
            "internalTrafficPolicy": str,
            "selector": _STR_MAP,
            "allocateLoadBalancerNodePorts": bool,
            "loadBalancerClass": str,
            "sessionAffinity": str,
        },
        "status": {
            "loadBalancer": {
                "ingress": [{"ip": str, "hostname": str, "ipMode": str, "ports": [dict]}]
            },
            "conditions": _CONDITIONS,
        },
    },
    "EndpointSlice": {
        "addressType": str,
        "endpoints": [{"addresses": [str], "nodeName": str, "conditions": dict}],
        "ports": [{"port": int, "name": str, "protocol": str}],
    },
    "Node": {"spec": dict, "status": {"conditions": _CONDITIONS, "addresses": [dict]}},
    "Namespace": {"spec": dict, "status": dict},
    "ConfigMap": {"data": _STR_MAP},
    "Secret": {"data": _STR_MAP, "stringData": dict, "type": str},
    "Lease": {"spec": {"holderIdentity": str, "leaseDurationSeconds": int}},
    "Event": {"involvedObject": dict, "reason": str, "message": str, "type": str},
    # RBAC objects are read on every request of a non-admin: a malformed one must not get in
    "Role": {"rules": [_RULE]},
    "ClusterRole": {"rules": [_RULE], "aggregationRule": dict},
    "RoleBinding": _BINDING,
    "ClusterRoleBinding": _BINDING,
    "CustomResourceDefinition": {
        "spec": {
            "group": str,
            "scope": str,
            "names": {
                "plural": str,
                "singular": str,
                "kind": str,
                "listKind": str,
                "shortNames": [str],
                "categories": [str],
            },
            "versions": [
                {
                    "name": str,
                    "served": bool,
                    "storage": bool,
                    "schema": {"openAPIV3Schema": dict},
                    "subresources": {"status": dict, "scale": dict},
                    "additionalPrinterColumns": [{"name": str, "type": str, "jsonPath": str}],
                }
            ],
        }
    },
}


def _shape_error(value: Any, shape: Any, path: str) -> str | None:
    if value is None:
        return None  # JSON null is "unset" for Go structs
    if isinstance(shape, dict) and shape == _STR_MAP:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            return f"{path}: expected a map of strings"
        return None
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{path}: expected an object, got {type(value).__name__}"
        for key, sub in shape.items():
            err = _shape_error(value.get(key), sub, f"{path}.{key}" if path else key)
            if err:
                return err
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{path}: expected a list, got {type(value).__name__}"
        for i, item in enumerate(value):
            err = _shape_error(item, shape[0], f"{path}[{i}]")
            if err:
                return err
        return None
    types = shape if isinstance(shape, tuple) else (shape,)
    if isinstance(value, bool) and bool not in types:
        return f"{path}: expected {'/'.join(t.__name__ for t in types)}, got bool"
    if not isinstance(value, types):
        return f"{path}: expected {'/'.join(t.__name__ for t in types)}, got {type(value).__name__}"
    return None


def shape_error(kind: str, obj: dict[str, Any]) -> str | None:
    """Why ``obj`` could not be decoded into the Go type of ``kind`` (None: it could)."""
    shape = _SHAPES.get(kind)
    return _shape_error(obj, shape, "") if shape else None


def default(kind: str, obj: dict[str, Any]) -> None:
    """Defaulting that runs on every write, status writes included (core/v1 kinds only)."""
    if kind != "Service" or (obj.get("spec") or {}).get("type") != "LoadBalancer":
        return
    # LoadBalancerIPMode (GA in 1.32): an ingress IP without ipMode reads back as "VIP", so a
    # controller comparing what it wrote with what it reads must expect the field
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    for ing in ingress:
        if isinstance(ing, dict) and ing.get("ip") and ing.get("ipMode") is None:
            ing["ipMode"] = "VIP"


def validate(kind: str, obj: dict[str, Any]) -> list[Cause]:
    if kind == "Service":
        return validate_service(obj)
    if kind == "EndpointSlice":
        return validate_endpoint_slice(obj)
    return []

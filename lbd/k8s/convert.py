"""Converters: Service / Namespace dicts from the API -> :mod:`lbd.core.model` values.

API::

    annotation(svc, "loadBalancerIPs") -> str | None  # lbd.io, metallb.io, metallb.universe.tf
    is_load_balancer(svc) -> bool
    class_matches(svc, lb_class) -> bool              # --lb-class (None: Services with no class)
    service_request(svc, namespace_labels) -> ServiceRequest | FieldError
    ingress_addresses(svc) -> tuple[str, ...]         # canonical, status.loadBalancer.ingress
    allocated_pool(svc) -> str | None                 # lbd.io/ip-allocated-from-pool

MetalLB compatibility: each of ``loadBalancerIPs``, ``address-pool`` and ``allow-shared-ip`` is
read from ``lbd.io/``, else ``metallb.io/``, else ``metallb.universe.tf/``: the first prefix that
carries the annotation wins, so a Service moved from MetalLB needs no edit and an lbd annotation
added later overrides the old one.

Everything malformed in a Service becomes one :class:`~lbd.core.config.FieldError` naming the
field (``metadata.annotations[lbd.io/loadBalancerIPs]``, ``spec.ipFamilies[1]`` ...) and the
reason; nothing here raises on user input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lbd.core.config import FieldError, parse_requested_ips
from lbd.core.model import (
    Family,
    FamilyPolicy,
    Port,
    ServiceRequest,
    canonical_address,
    service_key,
)

PREFIXES = ("lbd.io/", "metallb.io/", "metallb.universe.tf/")
"""Annotation prefixes in order of precedence."""

ALLOCATED_FROM = "lbd.io/ip-allocated-from-pool"
SHARING_CROSS_NAMESPACE = "lbd.io/sharing-cross-namespace"


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    ann = (obj.get("metadata") or {}).get("annotations")
    return ann if isinstance(ann, Mapping) else {}


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels")
    if not isinstance(labels, Mapping):
        return {}
    return {str(k): str(v) for k, v in labels.items()}


def annotation_source(svc: Mapping[str, Any], name: str) -> tuple[str, str] | None:
    """(full annotation key, value) of the first prefix carrying ``name``, or None."""
    ann = _annotations(svc)
    for prefix in PREFIXES:
        key = prefix + name
        if key in ann:
            return key, str(ann[key])
    return None


def annotation(svc: Mapping[str, Any], name: str) -> str | None:
    found = annotation_source(svc, name)
    return None if found is None else found[1]


def is_load_balancer(svc: Mapping[str, Any]) -> bool:
    return (svc.get("spec") or {}).get("type") == "LoadBalancer"


def lb_class(svc: Mapping[str, Any]) -> str | None:
    value = (svc.get("spec") or {}).get("loadBalancerClass")
    return str(value) if value else None


def class_matches(svc: Mapping[str, Any], wanted: str | None) -> bool:
    """Unset ``--lb-class``: only Services without a class. Set: exactly that class."""
    return lb_class(svc) == (wanted or None)


def ingress_addresses(svc: Mapping[str, Any]) -> tuple[str, ...]:
    """Addresses in ``status.loadBalancer.ingress`` (canonical; hostnames and garbage skipped)."""
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    out: list[str] = []
    for item in ingress if isinstance(ingress, list) else []:
        ip = item.get("ip") if isinstance(item, Mapping) else None
        if not ip:
            continue
        try:
            addr = canonical_address(str(ip))
        except ValueError:
            continue
        if addr not in out:
            out.append(addr)
    return tuple(out)


def allocated_pool(svc: Mapping[str, Any]) -> str | None:
    value = _annotations(svc).get(ALLOCATED_FROM)
    return str(value) if value else None


def _ann_path(key: str) -> str:
    return f"metadata.annotations[{key}]"


def _requested(svc: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[str, ...] | FieldError:
    found = annotation_source(svc, "loadBalancerIPs")
    from_ann: tuple[str, ...] = ()
    if found is not None:
        parsed = parse_requested_ips(found[1], path=_ann_path(found[0]))
        if isinstance(parsed, FieldError):
            return parsed
        from_ann = parsed
    lb_ip = spec.get("loadBalancerIP")
    from_spec: tuple[str, ...] = ()
    if lb_ip:
        parsed = parse_requested_ips(str(lb_ip), path="spec.loadBalancerIP")
        if isinstance(parsed, FieldError):
            return parsed
        from_spec = parsed
    if from_ann and from_spec and set(from_spec) != set(from_ann):
        assert found is not None
        return FieldError(
            "spec.loadBalancerIP",
            f"{','.join(from_spec)} differs from {found[0]} {','.join(from_ann)}",
        )
    return from_ann or from_spec


def _families(spec: Mapping[str, Any]) -> tuple[Family, ...] | FieldError:
    raw = spec.get("ipFamilies")
    if raw is None or raw == []:
        return (Family.IPV4,)
    if not isinstance(raw, list):
        return FieldError("spec.ipFamilies", "must be a list")
    out: list[Family] = []
    for i, item in enumerate(raw):
        try:
            fam = Family(str(item))
        except ValueError:
            return FieldError(f"spec.ipFamilies[{i}]", f"{item!r} is not IPv4 or IPv6")
        if fam in out:
            return FieldError(f"spec.ipFamilies[{i}]", f"{fam} listed twice")
        out.append(fam)
    return tuple(out)


def _ports(spec: Mapping[str, Any]) -> frozenset[Port] | FieldError:
    raw = spec.get("ports") or []
    if not isinstance(raw, list):
        return FieldError("spec.ports", "must be a list")
    out: set[Port] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            return FieldError(f"spec.ports[{i}]", "must be an object")
        try:
            port = int(item.get("port"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return FieldError(f"spec.ports[{i}].port", "must be an integer")
        out.add(Port(str(item.get("protocol") or "TCP"), port))
    return frozenset(out)


def service_request(
    svc: Mapping[str, Any], namespace_labels: Mapping[str, str] | None = None
) -> ServiceRequest | FieldError:
    """What the allocator needs of a LoadBalancer Service, or the first problem found in it."""
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    requested = _requested(svc, spec)
    if isinstance(requested, FieldError):
        return requested
    families = _families(spec)
    if isinstance(families, FieldError):
        return families
    try:
        policy = FamilyPolicy(str(spec.get("ipFamilyPolicy") or FamilyPolicy.SINGLE_STACK))
    except ValueError:
        return FieldError(
            "spec.ipFamilyPolicy",
            f"{spec.get('ipFamilyPolicy')!r} is not SingleStack, PreferDualStack "
            "or RequireDualStack",
        )
    ports = _ports(spec)
    if isinstance(ports, FieldError):
        return ports
    pool = annotation_source(svc, "address-pool")
    if pool is not None and not pool[1].strip():
        return FieldError(_ann_path(pool[0]), "must name a pool")
    sharing = annotation(svc, "allow-shared-ip")
    cross = _annotations(svc).get(SHARING_CROSS_NAMESPACE)
    cross_ns = frozenset(p.strip() for p in str(cross or "").split(",") if p.strip())
    selector = spec.get("selector") or {}
    return ServiceRequest(
        key=service_key(namespace, name),
        namespace=namespace,
        name=name,
        labels=_labels(svc),
        namespace_labels=dict(namespace_labels or {}),
        created=str(meta.get("creationTimestamp") or ""),
        ip_families=families,
        family_policy=policy,
        requested=requested,
        pool=pool[1].strip() if pool is not None else None,
        sharing_key=sharing.strip() if sharing and sharing.strip() else None,
        sharing_namespaces=cross_ns,
        ports=ports,
        traffic_policy=str(spec.get("externalTrafficPolicy") or "Cluster"),
        selector=tuple(sorted((str(k), str(v)) for k, v in selector.items()))
        if isinstance(selector, Mapping)
        else (),
    )

"""Services: every field lbd reads, read once into an :class:`ObservedService`; the writes.

API::

    view = observe_service(obj)          # the one reader of a Service, controller and speaker
    view.key, view.ours(lb_class), view.request_in(namespace_labels), view.addresses,
    view.pool_hint, view.condition, view.created, view.labels ...
    # writing: lbd.k8s.service_writer.ServiceWriter

Reading (each field here and nowhere else):

- MetalLB compatibility: each of ``loadBalancerIPs``, ``address-pool``, ``allow-shared-ip`` and
  ``ip-allocated-from-pool`` is read from ``lbd.io/``, else ``metallb.io/``, else
  ``metallb.universe.tf/``: the first prefix that carries the annotation wins, so a Service moved
  from MetalLB needs no edit and an lbd annotation added later overrides the old one. The
  controller and the speaker use the same :attr:`ObservedService.pool_hint`, so they agree on
  which pool a migrated Service came from.
- ``status.loadBalancer.ingress``: the canonical IPs, in order, duplicates dropped. Entries
  without an IP (hostnames) are not ours; an entry whose IP is garbage is skipped and reported in
  :attr:`~ObservedService.address_errors` (the controller rewrites the list; the speaker
  announces the valid ones). Controller and speaker see the same addresses.
- Annotation findings (:attr:`ObservedService.findings`, issue 14 point 4): an ``lbd.io/`` key
  lbd does not know (with the nearest known key, by :mod:`difflib`), the same setting under two
  prefixes with different values (which one wins), and a key under the deprecated
  ``metallb.universe.tf/`` prefix (its ``lbd.io/`` name). They are facts about the object, read
  here with everything else; the controller presents them (Events once per change,
  :mod:`lbd.controller.annotations`). ``ip-allocated-from-pool`` takes no part: controllers
  write it, and after a migration the old one rightly names MetalLB's pool.
- Everything malformed in the request becomes one :class:`~lbd.core.config.FieldError` naming
  the field (``metadata.annotations[lbd.io/loadBalancerIPs]``, ``spec.ipFamilies[1]`` ...) and
  the reason; nothing here raises on user input.

This module imports nothing of the API client, so the speaker (and a bare ``lbd --help``) can
read Services without it; the writes are in :mod:`lbd.k8s.service_writer`.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from lbd.core.config import FieldError, parse_requested_ips
from lbd.core.model import (
    Family,
    FamilyPolicy,
    Port,
    ServiceKey,
    ServiceRequest,
    canonical_address,
    service_key,
)
from lbd.k8s.conditions import Conditions, ObservedCondition, conditions_of
from lbd.k8s.frozen import quick_init
from lbd.k8s.meta import ObjectRef, annotations_of, labels_of, meta_field

PREFIXES = ("lbd.io/", "metallb.io/", "metallb.universe.tf/")
"""Annotation prefixes in order of precedence."""
LBD_PREFIX, _, DEPRECATED_PREFIX = PREFIXES
SETTINGS = ("loadBalancerIPs", "address-pool", "allow-shared-ip")
"""Annotation names a user sets, read under every prefix (:data:`PREFIXES`)."""

ALLOCATED_FROM = "lbd.io/ip-allocated-from-pool"
"""Written by the controller (after the address); read under every prefix."""
SHARING_CROSS_NAMESPACE = "lbd.io/sharing-cross-namespace"
CONDITION_TYPE = "lbd.io/AddressAssigned"
ANNOUNCED_TYPE = "lbd.io/Announced"
"""Whether a node answers ARP/NDP for the addresses (lbd.controller.announce, docs/API.md)."""
IP_MODE = "VIP"
KNOWN_LBD_KEYS = (
    *(LBD_PREFIX + name for name in SETTINGS),
    ALLOCATED_FROM,
    SHARING_CROSS_NAMESPACE,
    "lbd.io/migrated-from",  # lbd.tools.migrate marks what it converted
)
"""Every ``lbd.io/`` annotation of a Service that lbd reads or writes."""


class FindingKind(StrEnum):
    UNKNOWN = "UnknownAnnotation"
    """An ``lbd.io/`` key lbd does not know (a typo: it is ignored)."""
    CONFLICT = "ConflictingAnnotations"
    """The same setting under two prefixes with different values."""
    DEPRECATED = "DeprecatedAnnotation"
    """A ``metallb.universe.tf/`` key (MetalLB's old prefix) that lbd reads."""


@dataclass(frozen=True, order=True)
class AnnotationFinding:
    """Something about a Service's annotations that a user should hear of."""

    kind: FindingKind
    key: str
    """UNKNOWN and DEPRECATED: the key in question; CONFLICT: the key that wins."""
    hint: str = ""
    """UNKNOWN: the nearest known key ("" when none is close); DEPRECATED: its lbd.io/ key."""
    values: tuple[tuple[str, str], ...] = ()
    """CONFLICT: every (key, value) of the setting, the winner first."""


Obj = Mapping[str, Any]


@quick_init  # built for every listed object: lbd.k8s.frozen
@dataclass(frozen=True)
class ObservedService:
    """One Service as read: everything the controller and the speaker decide from."""

    ref: ObjectRef
    key: ServiceKey
    created: str
    load_balancer: bool
    lb_class: str | None
    deferred_request: DeferredRequest
    """:attr:`request`, read when first asked for (see :class:`DeferredRequest`)."""
    addresses: tuple[str, ...]
    address_errors: tuple[FieldError, ...]
    ingress_exact: bool
    """The ingress list is exactly ``[{ip, ipMode: VIP}]`` of :attr:`addresses`."""
    pool_hint: str | None
    """``ip-allocated-from-pool`` under any prefix (lbd.io first)."""
    recorded_pool: str | None
    """``lbd.io/ip-allocated-from-pool`` itself: what the controller wrote."""
    condition: ObservedCondition | None
    """Our ``lbd.io/AddressAssigned`` condition."""
    conditions: Conditions = field(repr=False)
    """The whole list as read, for a writer that must keep the others' conditions."""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    traffic_policy_local: bool = False
    cluster_ips: tuple[str, ...] = ()
    """``spec.clusterIPs`` (else ``spec.clusterIP``), "None" left out: what ``lbd doctor``
    infers the service CIDRs from."""
    findings: tuple[AnnotationFinding, ...] = ()
    """What a user should hear of about the annotations (sorted; see the module doc)."""
    announced: ObservedCondition | None = None
    """Our ``lbd.io/Announced`` condition."""

    def ours(self, lb_class: str | None) -> bool:
        """A LoadBalancer Service of our class (``--lb-class``; unset: Services without one)."""
        return self.load_balancer and self.class_matches(lb_class)

    def class_matches(self, lb_class: str | None) -> bool:
        return self.lb_class == (lb_class or None)

    @property
    def request(self) -> ServiceRequest | FieldError:
        """What the allocator needs (no namespace labels yet: :meth:`request_in`), or the
        problem."""
        return self.deferred_request.get()

    @property
    def marked(self) -> bool:
        """Carries something the controller writes (its condition or pool annotation)."""
        return self.condition is not None or self.recorded_pool is not None

    def request_in(self, namespace_labels: Mapping[str, str]) -> ServiceRequest | FieldError:
        """The request with its namespace's labels (serviceAllocation namespace selectors)."""
        request = self.request
        if isinstance(request, FieldError) or not namespace_labels:
            return request
        return replace(request, namespace_labels=dict(namespace_labels))


RequestInputs = tuple[str, str, str, Mapping[str, Any], Mapping[str, str], Mapping[str, str]]
"""What a Service's request is read from: namespace, name, creationTimestamp, spec,
annotations, labels (the arguments of :func:`_request`)."""


class DeferredRequest:
    """A Service's :class:`ServiceRequest` (or its :class:`FieldError`), read from the spec and
    annotations the first time someone asks, then kept.

    Only the controller's allocation asks; ``lbd status``, ``lbd doctor`` and the speaker read
    10 000 Services and never do, and reading the request was 40% of reading a Service (12 of
    31 us; reading the 10 000 Services of tests/bench/bench_status.py's cluster took 0.45 s of
    CPU before, 0.24 s after). Until it is asked for, the view keeps the Service's ``spec``
    map (the raw object's own, no copy) and the annotations map it built; once read, only the
    result is kept. In the controller a view from a watch event shares that map with the
    informer's store; one from its takeover list keeps a map of its own, and for a Service the
    controller never allocates for (not a LoadBalancer) keeps it until the Service changes. That is
    the request the Service had when it was read because objects are never changed in place
    once read (informers and lists replace them; lbd copies an object before it edits one).

    Equal when the requests are equal (both are read to compare), so views compare exactly as
    they did when the request was a plain field (:meth:`lbd.k8s.cache.ViewCache.reset` diffs
    views). Two threads asking at once may both read it: the same input gives an equal result.
    """

    __slots__ = ("_inputs", "_value")

    def __init__(self, inputs: RequestInputs) -> None:
        self._inputs: RequestInputs | None = inputs
        self._value: ServiceRequest | FieldError | None = None

    def get(self) -> ServiceRequest | FieldError:
        inputs = self._inputs
        if inputs is None:
            assert self._value is not None
            return self._value
        value = _request(*inputs)
        self._value = value  # before the inputs go: a thread that sees them gone finds it
        self._inputs = None
        return value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeferredRequest):
            return NotImplemented
        return self is other or self.get() == other.get()

    def __hash__(self) -> int:
        return hash(self.get())

    def __repr__(self) -> str:
        return repr(self.get())


def annotation_source(annotations: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(full key, value) of the first prefix carrying ``name``, or None."""
    for prefix in PREFIXES:
        key = prefix + name
        if key in annotations:
            return key, annotations[key]
    return None


def observe_service(obj: Obj) -> ObservedService:
    """Read one Service dict (never raises on user input)."""
    spec = obj.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    status = obj.get("status")
    status = status if isinstance(status, dict) else {}
    annotations = annotations_of(obj)
    labels = labels_of(obj)
    ref = ObjectRef.of(obj)
    namespace, name = ref.namespace, ref.name
    created = meta_field(obj, "creationTimestamp")
    lb = status.get("loadBalancer")
    addresses, errors, exact = _ingress(lb.get("ingress") if isinstance(lb, dict) else None)
    conditions = conditions_of(status.get("conditions"))
    hint = annotation_source(annotations, "ip-allocated-from-pool") if annotations else None
    lb_class = spec.get("loadBalancerClass")
    return ObservedService(
        ref=ref,
        key=service_key(namespace, name),
        created=created,
        load_balancer=spec.get("type") == "LoadBalancer",
        lb_class=str(lb_class) if lb_class else None,
        deferred_request=DeferredRequest((namespace, name, created, spec, annotations, labels)),
        addresses=addresses,
        address_errors=errors,
        ingress_exact=exact,
        pool_hint=hint[1] if hint is not None and hint[1] else None,
        recorded_pool=annotations.get(ALLOCATED_FROM) or None,
        condition=ObservedCondition.find(conditions, CONDITION_TYPE),
        conditions=conditions,
        labels=labels,
        traffic_policy_local=spec.get("externalTrafficPolicy") == "Local",
        cluster_ips=_cluster_ips(spec),
        findings=annotation_findings(annotations),
        announced=ObservedCondition.find(conditions, ANNOUNCED_TYPE),
    )


def _cluster_ips(spec: Mapping[str, Any]) -> tuple[str, ...]:
    raw = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    if not isinstance(raw, list):
        return ()
    return tuple([str(ip) for ip in raw if ip and ip != "None"])


def annotation_findings(annotations: Mapping[str, str]) -> tuple[AnnotationFinding, ...]:
    """Unknown ``lbd.io/`` keys, settings that disagree across prefixes, deprecated keys."""
    if not annotations:
        return ()  # most Services
    ours = [key for key in annotations if key.startswith(PREFIXES)]
    out: list[AnnotationFinding] = []
    for key in ours:
        if key.startswith(LBD_PREFIX) and key not in KNOWN_LBD_KEYS:
            near = difflib.get_close_matches(key, KNOWN_LBD_KEYS, n=1, cutoff=0.6)
            out.append(AnnotationFinding(FindingKind.UNKNOWN, key, near[0] if near else ""))
    if len(ours) < 2 and not any(key.startswith(DEPRECATED_PREFIX) for key in ours):
        # No conflict without two keys, no deprecation without the old prefix: most Services
        # (read for every one of 10 000 by lbd status, tests/bench/bench_status.py).
        return tuple(out)
    for name in SETTINGS:
        present = [(p + name, annotations[p + name]) for p in PREFIXES if p + name in annotations]
        if len({_setting_value(name, v) for _k, v in present}) > 1:
            out.append(
                AnnotationFinding(FindingKind.CONFLICT, present[0][0], values=tuple(present))
            )
        if DEPRECATED_PREFIX + name in annotations:
            out.append(
                AnnotationFinding(
                    FindingKind.DEPRECATED, DEPRECATED_PREFIX + name, LBD_PREFIX + name
                )
            )
    return tuple(sorted(out))


def _setting_value(name: str, value: str) -> object:
    """A setting's value as compared across prefixes ("a, b" and "a,b" are the same IPs)."""
    if name == "loadBalancerIPs":
        return frozenset(v.strip() for v in value.split(",") if v.strip())
    return value.strip()


def _ingress(raw: Any) -> tuple[tuple[str, ...], tuple[FieldError, ...], bool]:
    path = "status.loadBalancer.ingress"
    if raw is None:
        return (), (), True
    if not isinstance(raw, list):
        return (), (FieldError(path, "must be a list"),), False
    out: list[str] = []
    errors: list[FieldError] = []
    exact = True
    for i, entry in enumerate(raw):
        ip = entry.get("ip") if isinstance(entry, dict) else None
        if not ip:
            exact = False  # a hostname entry: not ours, and not what we write
            continue
        try:
            addr = _canonical(str(ip))
        except ValueError:
            errors.append(FieldError(f"{path}[{i}].ip", f"not an IP address: {ip!r}"))
            exact = False
            continue
        if addr in out:
            exact = False
            continue
        out.append(addr)
        exact = exact and addr == ip and entry.get("ipMode") == IP_MODE
    return tuple(out), tuple(errors), exact and len(out) == len(raw)


@functools.lru_cache(maxsize=65536)
def _canonical(ip: str) -> str:
    """Canonical text of an address (cached: the same few thousand are read over and over)."""
    return canonical_address(ip)


def _ann_path(key: str) -> str:
    return f"metadata.annotations[{key}]"


def _requested(
    annotations: Mapping[str, str], spec: Mapping[str, Any]
) -> tuple[str, ...] | FieldError:
    found = annotation_source(annotations, "loadBalancerIPs")
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
        if not isinstance(item, dict):
            return FieldError(f"spec.ports[{i}]", "must be an object")
        try:
            port = int(item.get("port"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return FieldError(f"spec.ports[{i}].port", "must be an integer")
        out.add(Port(str(item.get("protocol") or "TCP"), port))
    return frozenset(out)


def _request(  # noqa: PLR0917 (each argument is one part of the object, read once)
    namespace: str,
    name: str,
    created: str,
    spec: Mapping[str, Any],
    annotations: Mapping[str, str],
    labels: Mapping[str, str],
) -> ServiceRequest | FieldError:
    """What the allocator needs of a LoadBalancer Service, or the first problem found in it."""
    requested = _requested(annotations, spec)
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
    pool = annotation_source(annotations, "address-pool")
    if pool is not None and not pool[1].strip():
        return FieldError(_ann_path(pool[0]), "must name a pool")
    sharing = annotation_source(annotations, "allow-shared-ip")
    sharing_key = sharing[1].strip() if sharing is not None else ""
    cross = annotations.get(SHARING_CROSS_NAMESPACE, "")
    selector = spec.get("selector") or {}
    return ServiceRequest(
        key=service_key(namespace, name),
        namespace=namespace,
        name=name,
        labels=labels,
        created=created,
        ip_families=families,
        family_policy=policy,
        requested=requested,
        pool=pool[1].strip() if pool is not None else None,
        sharing_key=sharing_key or None,
        sharing_namespaces=frozenset(p.strip() for p in cross.split(",") if p.strip()),
        ports=ports,
        traffic_policy=str(spec.get("externalTrafficPolicy") or "Cluster"),
        selector=tuple(sorted((str(k), str(v)) for k, v in selector.items()))
        if isinstance(selector, Mapping)
        else (),
    )

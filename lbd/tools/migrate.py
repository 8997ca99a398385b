"""MetalLB's address configuration -> lbd's, with a report of everything that does not carry over.

``lbd migrate from-metallb`` decides here; :mod:`lbd.tools.migrate_cli` only reads and prints.
:func:`from_metallb` takes Kubernetes objects as dicts (parsed YAML files or API list items) and
returns a :class:`Migration`: the lbd objects to apply and one :class:`Finding` per thing a
person should know, so nothing is dropped silently. Pure: no I/O, no clock, no randomness.

The mapping (MetalLB's ``metallb.io/v1beta1`` API, ``api/v1beta1/*_types.go`` upstream):

* ``IPAddressPool`` -> lbd ``IPAddressPool``: ``addresses``, ``autoAssign``, ``avoidBuggyIPs``
  and ``serviceAllocation`` (``priority``, ``namespaces``, ``namespaceSelectors``,
  ``serviceSelectors``) mean the same in both (docs/API.md), so the spec is copied. lbd's pools
  are cluster-scoped: the namespace goes (it is kept in the ``lbd.io/migrated-from``
  annotation), and two pools of one name in two namespaces cannot both convert. MetalLB reads
  priority 0 as "no priority" (its allocator's ``sortPools``), lbd an absent one: 0 becomes
  absent. Labels stay (``ipAddressPoolSelectors`` select pools by them).
* ``L2Advertisement`` -> lbd ``L2Advertisement``: ``ipAddressPools``,
  ``ipAddressPoolSelectors``, ``nodeSelectors``, ``interfaces``, ``serviceSelectors`` are copied.
  ``preferredNodeSelectors`` has no equivalent: lbd's owner of an address is the first node of
  a ranking of live eligible nodes (docs/SPEAKER.md), with no weights.
* BGP (``BGPPeer``, ``BGPAdvertisement``, ``Community`` and its aliases, ``BFDProfile``): lbd
  announces at layer 2 only, so these are reported, and a pool that only a BGPAdvertisement
  announced is reported as not announced.
* Services need no change: lbd reads ``loadBalancerIPs``, ``address-pool`` and
  ``allow-shared-ip`` under ``metallb.io/`` and ``metallb.universe.tf/`` too
  (:mod:`lbd.k8s.service`); any other MetalLB annotation on a Service is reported.
* MetalLB's status objects (``ServiceL2Status``, ``ServiceBGPStatus``, ``ConfigurationState``)
  and objects of other APIs are ignored, and say so.

Every converted object is validated as the lbd controller would (:func:`build_config`): one
with field errors is not written (``invalid``, the field path and reason), pools that overlap
are written and reported (``conflicting``: neither gives new addresses until fixed).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lbd.core.config import Config, PoolInput, build_config, parse_advertisement
from lbd.core.model import Advertisement
from lbd.k8s.service import PREFIXES

METALLB_GROUP = "metallb.io"
METALLB_API = "metallb.io/v1beta1"
LBD_API = "lbd.io/v1beta1"
MIGRATED_FROM = "lbd.io/migrated-from"
"""Annotation on each converted object: ``metallb.io/v1beta1 IPAddressPool NS/NAME``."""

POOL_FIELDS = ("addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation")
ALLOCATION_FIELDS = ("priority", "namespaces", "namespaceSelectors", "serviceSelectors")
ADVERTISEMENT_FIELDS = (
    "ipAddressPools",
    "ipAddressPoolSelectors",
    "nodeSelectors",
    "interfaces",
    "serviceSelectors",
)
SERVICE_ANNOTATIONS_READ = ("loadBalancerIPs", "address-pool", "allow-shared-ip")
"""Service annotation names lbd reads under every prefix of :data:`PREFIXES`."""
METALLB_BOOKKEEPING = ("ip-allocated-from-pool",)
"""Service annotations MetalLB writes itself; lbd writes its own ``lbd.io/`` one."""

# Metadata the API server fills in: never copied, nothing to report.
_SERVER_METADATA = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    }
)
# Annotations that belong to the tool that applied the MetalLB object, not to the object.
_TOOL_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "meta.helm.sh/release-name",
    "meta.helm.sh/release-namespace",
)

_BGP_KINDS = {
    "BGPPeer": "a BGP session; lbd announces at layer 2 (ARP/NDP) only",
    "BGPAdvertisement": "a BGP announcement; lbd announces at layer 2 (ARP/NDP) only",
    "Community": "BGP community aliases; lbd announces at layer 2 (ARP/NDP) only",
    "BFDProfile": "BFD timers of BGP sessions; lbd announces at layer 2 (ARP/NDP) only",
}
_STATUS_KINDS = {
    "ServiceL2Status": "MetalLB's own status; lbd's speaker writes lbd.io ServiceL2Status",
    "ServiceBGPStatus": "MetalLB's own BGP status",
    "ConfigurationState": "MetalLB's own status of its configuration",
}
_OLD_KINDS = {
    "AddressPool": "MetalLB's deprecated AddressPool: rewrite it as an IPAddressPool (and an "
    "L2Advertisement) as MetalLB's own upgrade notes describe, then convert that",
}


class FindingKind(StrEnum):
    """What happened to a part of the input; the first two are left out of the output."""

    NOT_CONVERTED = "not converted"  # no lbd equivalent: left out
    INVALID = "invalid"  # lbd's validation rejects the converted object: left out
    CONFLICTING = "conflicting"  # written; overlaps another pool, gives no new addresses
    NOT_ANNOUNCED = "not announced"  # written; no L2Advertisement selects the pool
    DIFFERS = "differs"  # written; lbd behaves differently here
    KEPT = "kept"  # Service annotations lbd reads as they are
    IGNORED = "ignored"  # not MetalLB configuration


@dataclass(frozen=True)
class Finding:
    """One thing a person should know: what (``subject``, ``path``) and why."""

    kind: FindingKind
    subject: str  # "IPAddressPool metallb-system/first-pool"; "" for the input as a whole
    path: str  # "spec.preferredNodeSelectors"; "" for the whole object
    message: str

    def __str__(self) -> str:
        where = " ".join(p for p in (self.subject, self.path) if p)
        return f"{self.kind}: {where}: {self.message}" if where else f"{self.kind}: {self.message}"


@dataclass(frozen=True)
class Migration:
    """The lbd objects to apply (pools by name, then advertisements by name) and the findings.

    ``config`` is the converted configuration as the lbd controller would validate it (what
    ``--check`` allocates from).
    """

    objects: tuple[Mapping[str, Any], ...]
    findings: tuple[Finding, ...]
    config: Config = field(default_factory=Config)

    def counts(self) -> dict[str, int]:
        """Converted objects per kind (``{"IPAddressPool": 2, "L2Advertisement": 1}``)."""
        out: dict[str, int] = defaultdict(int)
        for obj in self.objects:
            out[str(obj["kind"])] += 1
        return dict(out)


# --------------------------------------------------------------------------- helpers


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def describe(obj: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` (or ``Kind name``) of any object, for findings."""
    meta = _meta(obj)
    name = str(meta.get("name") or "<no name>")
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns}/{name}" if ns else f"{obj.get('kind')} {name}"


def _group(api_version: object) -> str:
    text = str(api_version or "")
    return text.rpartition("/")[0] if "/" in text else ""


@dataclass
class _Converter:
    """Collects findings while converting; one per call of :func:`from_metallb`."""

    findings: list[Finding] = field(default_factory=list)

    def note(self, kind: FindingKind, obj: Mapping[str, Any] | None, path: str, msg: str) -> None:
        self.findings.append(Finding(kind, describe(obj) if obj else "", path, msg))

    # -- metadata ---------------------------------------------------------------------------
    def metadata(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = _meta(obj)
        out: dict[str, Any] = {"name": meta["name"]}
        labels = meta.get("labels")
        if isinstance(labels, Mapping) and labels:
            out["labels"] = dict(labels)
        annotations = {
            str(k): str(v)
            for k, v in (meta.get("annotations") or {}).items()
            if k not in _TOOL_ANNOTATIONS
        }
        source = f"{obj.get('apiVersion')} {obj.get('kind')} "
        source += f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
        annotations[MIGRATED_FROM] = source
        out["annotations"] = annotations
        known = {"name", "namespace", "labels", "annotations", *_SERVER_METADATA}
        for key in sorted(set(meta) - known):
            self.note(
                FindingKind.NOT_CONVERTED,
                obj,
                f"metadata.{key}",
                "belongs to the MetalLB object's life cycle (owner, finalizers, generated name); "
                "left out",
            )
        return out

    def copy_fields(
        self, obj: Mapping[str, Any], spec: Mapping[str, Any], known: Iterable[str], path: str
    ) -> dict[str, Any]:
        """The known fields of ``spec`` (deep copies); the others are reported, not copied."""
        known = tuple(known)
        for key in sorted(set(spec) - set(known)):
            self.note(
                FindingKind.NOT_CONVERTED,
                obj,
                f"{path}.{key}",
                f"not a field of MetalLB's {obj.get('kind')} that lbd knows; left out",
            )
        return {k: copy.deepcopy(spec[k]) for k in known if k in spec}

    # -- kinds ------------------------------------------------------------------------------
    def pool(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        spec = obj.get("spec")
        if not isinstance(spec, Mapping):
            self.note(FindingKind.INVALID, obj, "spec", "must be an object; left out")
            return None
        out_spec = self.copy_fields(obj, spec, POOL_FIELDS, "spec")
        allocation = out_spec.get("serviceAllocation")
        if isinstance(allocation, Mapping):
            allocation = self.copy_fields(
                obj, allocation, ALLOCATION_FIELDS, "spec.serviceAllocation"
            )
            priority = allocation.get("priority")
            if isinstance(priority, int) and not isinstance(priority, bool) and priority <= 0:
                # MetalLB's sortPools ranks only priorities > 0; 0 (the Go zero value, what
                # omitempty hides) and negatives come last, as an absent priority does in lbd.
                del allocation["priority"]
                if priority < 0:
                    self.note(
                        FindingKind.DIFFERS,
                        obj,
                        "spec.serviceAllocation.priority",
                        f"{priority}: MetalLB ranks a priority below 1 like no priority; "
                        "lbd would rank it first, so it is left out",
                    )
            out_spec["serviceAllocation"] = allocation
        return self.lbd_object(obj, out_spec)

    def advertisement(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        spec = obj.get("spec")
        if spec is None:
            spec = {}  # MetalLB's documented "announce every pool" example has no spec at all
        if not isinstance(spec, Mapping):
            self.note(FindingKind.INVALID, obj, "spec", "must be an object; left out")
            return None
        if "preferredNodeSelectors" in spec:
            self.note(
                FindingKind.NOT_CONVERTED,
                obj,
                "spec.preferredNodeSelectors",
                "lbd has no weighted node preference: the owner of an address is the first "
                "live eligible node of a ranking (docs/SPEAKER.md); restrict with "
                "nodeSelectors instead",
            )
            spec = {k: v for k, v in spec.items() if k != "preferredNodeSelectors"}
        return self.lbd_object(obj, self.copy_fields(obj, spec, ADVERTISEMENT_FIELDS, "spec"))

    def lbd_object(self, obj: Mapping[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": LBD_API,
            "kind": obj["kind"],
            "metadata": self.metadata(obj),
            "spec": spec,
        }

    def service(self, obj: Mapping[str, Any]) -> None:
        if (obj.get("spec") or {}).get("type") != "LoadBalancer":
            return  # nothing of it concerns a load balancer
        annotations = _meta(obj).get("annotations") or {}
        kept: list[str] = []
        for key in sorted(annotations):
            prefix = next((p for p in PREFIXES[1:] if key.startswith(p)), None)
            if prefix is None:
                continue
            name = key[len(prefix) :]
            if name in SERVICE_ANNOTATIONS_READ:
                kept.append(key)
            elif name not in METALLB_BOOKKEEPING:
                self.note(
                    FindingKind.NOT_CONVERTED,
                    obj,
                    f"metadata.annotations[{key}]",
                    "lbd does not read this annotation",
                )
        if kept:
            self.note(
                FindingKind.KEPT,
                obj,
                "metadata.annotations",
                f"{', '.join(kept)}: lbd reads these as they are, no edit needed",
            )
        lb_class = (obj.get("spec") or {}).get("loadBalancerClass")
        if lb_class:
            self.note(
                FindingKind.DIFFERS,
                obj,
                "spec.loadBalancerClass",
                f"{lb_class}: lbd handles it only when run with --lb-class={lb_class} "
                "(Helm value loadBalancerClass)",
            )

    def other(self, obj: Mapping[str, Any]) -> None:
        kind = str(obj.get("kind"))
        data = obj.get("data")
        if (
            kind == "ConfigMap"
            and isinstance(data, Mapping)
            and "address-pools" in str(data.get("config", ""))
        ):
            self.note(
                FindingKind.NOT_CONVERTED,
                obj,
                "data.config",
                "MetalLB's old ConfigMap configuration: convert it to MetalLB's CRs first "
                "(MetalLB ships a converter for this), then convert those",
            )
        elif kind not in ("Namespace",):
            self.note(FindingKind.IGNORED, obj, "", "not MetalLB configuration")


def _selected_by(advs: Iterable[Advertisement], name: str, labels: Mapping[str, str]) -> list[str]:
    return sorted(a.name for a in advs if a.selects_pool(name, labels))


def _bgp_selector(obj: Mapping[str, Any]) -> Advertisement | None:
    """The pools a BGPAdvertisement announces (only its pool fields), to name it in findings."""
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        return None
    pools = {k: spec[k] for k in ("ipAddressPools", "ipAddressPoolSelectors") if k in spec}
    adv = parse_advertisement(str(_meta(obj).get("name")), pools)
    return adv if isinstance(adv, Advertisement) else None


# --------------------------------------------------------------------------- the conversion


def from_metallb(objects: Iterable[Mapping[str, Any]], namespace: str | None = None) -> Migration:
    """Convert MetalLB objects (any mix of kinds) into lbd's, reporting what does not carry over.

    ``namespace``: MetalLB's namespace; MetalLB objects elsewhere are ignored, as MetalLB
    itself ignores them. None takes every namespace.
    """
    conv = _Converter()
    pools: dict[str, tuple[Mapping[str, Any], dict[str, Any]]] = {}
    advs: dict[str, tuple[Mapping[str, Any], dict[str, Any]]] = {}
    bgp_advs: list[Advertisement] = []
    ordered = sorted(
        objects,
        key=lambda o: (str(_meta(o).get("namespace") or ""), str(_meta(o).get("name") or "")),
    )
    for obj in ordered:
        kind = str(obj.get("kind"))
        if _group(obj.get("apiVersion")) != METALLB_GROUP:
            if kind == "Service":
                conv.service(obj)
            else:
                conv.other(obj)
            continue
        ns = _meta(obj).get("namespace")
        if namespace is not None and ns != namespace:
            conv.note(
                FindingKind.IGNORED,
                obj,
                "",
                f"MetalLB reads its configuration only from its own namespace ({namespace})",
            )
            continue
        if kind in _BGP_KINDS:
            conv.note(FindingKind.NOT_CONVERTED, obj, "", _BGP_KINDS[kind])
            if kind == "BGPAdvertisement" and (sel := _bgp_selector(obj)) is not None:
                bgp_advs.append(sel)
            continue
        if kind in _STATUS_KINDS:
            conv.note(FindingKind.IGNORED, obj, "", _STATUS_KINDS[kind])
            continue
        if kind in _OLD_KINDS:
            conv.note(FindingKind.NOT_CONVERTED, obj, "", _OLD_KINDS[kind])
            continue
        if kind not in ("IPAddressPool", "L2Advertisement"):
            conv.note(FindingKind.NOT_CONVERTED, obj, "", "a MetalLB kind lbd has no use for")
            continue
        if obj.get("apiVersion") != METALLB_API:
            conv.note(
                FindingKind.NOT_CONVERTED,
                obj,
                "apiVersion",
                f"{obj.get('apiVersion')}: MetalLB serves {kind} as {METALLB_API} only",
            )
            continue
        name = _meta(obj).get("name")
        if not isinstance(name, str) or not name:
            conv.note(FindingKind.INVALID, obj, "metadata.name", "required; left out")
            continue
        into = pools if kind == "IPAddressPool" else advs
        if name in into:
            conv.note(
                FindingKind.NOT_CONVERTED,
                obj,
                "metadata.name",
                f"{describe(into[name][0])} has the same name; lbd's {kind}s are "
                "cluster-scoped, so rename one and convert again",
            )
            continue
        converted = conv.pool(obj) if kind == "IPAddressPool" else conv.advertisement(obj)
        if converted is not None:
            into[name] = (obj, converted)
    return _validated(conv, pools, advs, bgp_advs)


def _validated(
    conv: _Converter,
    pools: Mapping[str, tuple[Mapping[str, Any], dict[str, Any]]],
    advs: Mapping[str, tuple[Mapping[str, Any], dict[str, Any]]],
    bgp_advs: list[Advertisement],
) -> Migration:
    """Validate as the controller would; keep what passes; report the rest and the gaps."""
    config = build_config(
        {
            n: PoolInput(
                o["spec"],
                o["metadata"].get("labels") or {},
                # of overlapping pools the older keeps working (docs/IPAM.md): MetalLB's age
                created=str(source.get("metadata", {}).get("creationTimestamp") or ""),
            )
            for n, (source, o) in pools.items()
        },
        {n: o["spec"] for n, (_, o) in advs.items()},
    )
    for errors, source in (
        (config.invalid, pools),
        (config.invalid_advertisements, advs),
    ):
        for name, field_errors in sorted(errors.items()):
            for error in field_errors:
                conv.note(FindingKind.INVALID, source[name][0], error.path, error.reason)
    for name, others in sorted(config.conflicting.items()):
        conv.note(
            FindingKind.CONFLICTING,
            pools[name][0],
            "spec.addresses",
            f"overlaps older pool {', '.join(sorted(others))}: lbd gives this pool no new "
            "addresses until the overlap is removed (the older pool keeps working)",
        )
    valid_advs = list(config.advertisements.values())
    for name, pool in sorted(config.pools.items()):
        if _selected_by(valid_advs, name, pool.labels):
            continue
        bgp = _selected_by(bgp_advs, name, pool.labels)
        why = f" (MetalLB announced it by BGPAdvertisement {', '.join(bgp)})" if bgp else ""
        conv.note(
            FindingKind.NOT_ANNOUNCED,
            pools[name][0],
            "",
            f"no L2Advertisement selects this pool{why}: lbd assigns its addresses but no node "
            "answers ARP/NDP for them",
        )
    _note_order(conv, config)
    no_interfaces = sorted(n for n, a in config.advertisements.items() if not a.interfaces)
    if no_interfaces:
        conv.note(
            FindingKind.DIFFERS,
            None,
            "",
            f"L2Advertisements {', '.join(no_interfaces)}: with no interfaces listed, lbd "
            "answers on the interfaces with an address in the VIP's subnet, else on every up "
            "broadcast interface; MetalLB on every interface",
        )
    objects = [o for n, (_, o) in sorted(pools.items()) if n in config.pools]
    objects += [o for n, (_, o) in sorted(advs.items()) if n in config.advertisements]
    return Migration(tuple(objects), tuple(conv.findings), config)


def _note_order(conv: _Converter, config: Config) -> None:
    """Where MetalLB's choice between pools is random and lbd's is by name, say so."""
    ties: dict[int | None, list[str]] = defaultdict(list)
    for name, pool in sorted(config.pools.items()):
        if pool.allocation is not None:
            ties[pool.allocation.priority].append(name)
    for priority, names in sorted(ties.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        if len(names) > 1:
            what = f"priority {priority}" if priority is not None else "no priority"
            conv.note(
                FindingKind.DIFFERS,
                None,
                "",
                f"IPAddressPools {', '.join(names)}: MetalLB picks at random among pools of "
                f"equal serviceAllocation priority ({what}); lbd tries them by name",
            )
    plain = [n for n, p in sorted(config.pools.items()) if p.allocation is None and p.auto_assign]
    if len(plain) > 1:
        conv.note(
            FindingKind.DIFFERS,
            None,
            "",
            f"IPAddressPools {', '.join(plain)}: MetalLB tries the pools that assign "
            "automatically in no set order; lbd tries them by name",
        )

"""CR specs (plain dicts, as the API returns them) -> validated values, or errors with field paths.

Validation is pure and total: every function here returns either a value or a list of
:class:`FieldError` (``path`` like ``spec.addresses[2]``, ``reason`` a sentence a user can act on),
never raises on bad input. The adapters put the first error into the pool's ``Invalid`` condition.

Decisions:

* A CIDR with host bits set (``198.18.100.1/24``) is read as its network (``198.18.100.0/24``),
  as MetalLB reads it (Go's ``net.ParseCIDR``), so a pool moved from MetalLB keeps working; the
  pool carries a warning naming the network used, which the controller turns into a Warning
  Event on the pool. Refusing it would hand out nothing from a pool that worked before.
* A range ``start-end`` must be of one family with ``start <= end``; spaces around ``-`` are
  accepted. A bare address means a /32 or /128.
* Entries of one pool may not overlap or repeat (``spec.addresses[3]: overlaps spec.addresses[1]``);
  that is always a typo. Overlaps *between* pools do not make a pool invalid: the pool created
  first (creationTimestamp, then name) keeps working and every newer pool that overlaps an older
  one is *conflicting* (naming the older pools), keeps its existing assignments and gives no new
  addresses until the overlap is gone (docs/IPAM.md). So a mistaken new pool cannot freeze a
  working one.
* ``serviceAllocation.priority`` 0 or unset means "no priority" (MetalLB's meaning): such a pool
  ranks after every pool that has one. A negative priority is an error.
* Duplicate label selectors in a list, duplicate match expressions in one selector and duplicate
  values in one expression are errors with the field path, as MetalLB rejects them (values are
  compared as sets, so ``[a, b]`` and ``[b, a]`` are the same expression).
* Unknown fields are errors. The API server prunes them for structural CRDs, so they only reach
  this code from hand-written input (the lab, tests) where a typo should not pass silently.
* :func:`build_config` takes all pools at once because overlap is a property of the whole set.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lbd.core.model import (
    Advertisement,
    Family,
    LabelSelector,
    Pool,
    PoolRange,
    SelectorOperator,
    SelectorRequirement,
    ServiceAllocation,
)


@dataclass(frozen=True)
class FieldError:
    """One problem in a spec: where (``spec.addresses[2]``) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class PoolInput:
    """What :func:`build_config` needs of one IPAddressPool: its spec and its metadata labels."""

    spec: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    created: str = ""
    """RFC 3339 creationTimestamp: of two overlapping pools the older keeps working."""


@dataclass(frozen=True)
class Config:
    """The whole address configuration.

    ``pools`` holds every valid pool, including conflicting ones (they keep their assignments);
    ``conflicting`` maps each newer pool that overlaps older ones to the names of those older
    pools; ``invalid`` maps an invalid pool to its errors. A pool is in exactly one of ``pools``
    and ``invalid``. ``warnings`` maps a valid pool to what was read differently from how it
    was written (a CIDR with host bits set), for a Warning Event.
    """

    pools: Mapping[str, Pool] = field(default_factory=dict, hash=False)
    invalid: Mapping[str, tuple[FieldError, ...]] = field(default_factory=dict, hash=False)
    conflicting: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    advertisements: Mapping[str, Advertisement] = field(default_factory=dict, hash=False)
    invalid_advertisements: Mapping[str, tuple[FieldError, ...]] = field(
        default_factory=dict, hash=False
    )
    warnings: Mapping[str, tuple[FieldError, ...]] = field(default_factory=dict, hash=False)

    def usable_pools(self) -> tuple[Pool, ...]:
        """Valid pools that are not conflicting, by name: the ones that give new addresses."""
        return tuple(p for n, p in sorted(self.pools.items()) if n not in self.conflicting)


# --------------------------------------------------------------------------- addresses


def parse_address_entry(text: str) -> PoolRange | str:
    """One ``spec.addresses`` entry -> a range, or the reason it is not one.

    A CIDR with host bits set gives its network; :func:`host_bits_note` says so.
    """
    entry = text.strip()
    if not entry:
        return "empty entry"
    if "/" in entry:
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return f"{entry!r} is not a valid CIDR"
        fam = Family.IPV4 if net.version == 4 else Family.IPV6
        return PoolRange(fam, int(net.network_address), int(net.broadcast_address), entry)
    if "-" in entry:
        start_text, _, end_text = entry.partition("-")
        try:
            start = ipaddress.ip_address(start_text.strip())
            end = ipaddress.ip_address(end_text.strip())
        except ValueError:
            return (
                f"{entry!r} is not a valid range (want start-end, e.g. 198.18.100.10-198.18.100.20)"
            )
        if start.version != end.version:
            return f"{entry!r} mixes IPv4 and IPv6"
        if int(start) > int(end):
            return f"{entry!r} has start after end"
        fam = Family.IPV4 if start.version == 4 else Family.IPV6
        return PoolRange(fam, int(start), int(end), entry)
    try:
        ip = ipaddress.ip_address(entry)
    except ValueError:
        return f"{entry!r} is not an address, CIDR or range"
    fam = Family.IPV4 if ip.version == 4 else Family.IPV6
    return PoolRange(fam, int(ip), int(ip), entry)


def host_bits_note(entry: str) -> str | None:
    """``"10.0.0.1/24"`` -> how it is read (``10.0.0.0/24``); None for anything else."""
    text = entry.strip()
    if "/" not in text:
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)
        ip = ipaddress.ip_interface(text).ip
    except ValueError:
        return None
    if int(net.network_address) == int(ip):
        return None
    return f"{text} has host bits set; read as {net} (as MetalLB reads it)"


def _parse_addresses(
    value: object, errors: list[FieldError], warnings: list[FieldError] | None = None
) -> tuple[PoolRange, ...]:
    if value is None:
        errors.append(FieldError("spec.addresses", "required"))
        return ()
    if not isinstance(value, list):
        errors.append(FieldError("spec.addresses", "must be a list of strings"))
        return ()
    if not value:
        errors.append(FieldError("spec.addresses", "must not be empty"))
        return ()
    ranges: list[tuple[int, PoolRange]] = []
    for i, item in enumerate(value):
        path = f"spec.addresses[{i}]"
        if not isinstance(item, str):
            errors.append(FieldError(path, "must be a string"))
            continue
        parsed = parse_address_entry(item)
        if isinstance(parsed, str):
            errors.append(FieldError(path, parsed))
            continue
        note = host_bits_note(item)
        if note is not None and warnings is not None:
            warnings.append(FieldError(path, note))
        for j, earlier in ranges:
            if earlier.overlaps(parsed):
                what = "duplicates" if earlier == parsed else "overlaps"
                errors.append(FieldError(path, f"{what} spec.addresses[{j}] ({earlier})"))
                break
        else:
            ranges.append((i, parsed))
    return tuple(r for _, r in ranges)


def parse_requested_ips(
    text: str, *, path: str = "lbd.io/loadBalancerIPs"
) -> tuple[str, ...] | FieldError:
    """``"198.18.100.7,2001:db8::7"`` -> canonical addresses (at most one per family).

    Errors: an entry that is not an address, an empty entry, two addresses of one family.
    An empty or blank annotation means "nothing requested" and gives ``()``.
    """
    if not text.strip():
        return ()
    out: list[str] = []
    seen: dict[int, str] = {}
    for part in text.split(","):
        entry = part.strip()
        try:
            ip = ipaddress.ip_address(entry)
        except ValueError:
            return FieldError(path, f"{entry!r} is not an IP address")
        if ip.version in seen:
            return FieldError(
                path, f"two IPv{ip.version} addresses ({seen[ip.version]}, {ip}); one per family"
            )
        seen[ip.version] = str(ip)
        out.append(str(ip))
    return tuple(out)


def merge_requested(
    annotation: str | None, load_balancer_ip: str | None
) -> tuple[str, ...] | FieldError:
    """Merge ``lbd.io/loadBalancerIPs`` and ``spec.loadBalancerIP``: both set and different is
    an error (docs/API.md); either alone is parsed as the request."""
    from_annotation = parse_requested_ips(annotation or "")
    if isinstance(from_annotation, FieldError):
        return from_annotation
    from_spec = parse_requested_ips(load_balancer_ip or "", path="spec.loadBalancerIP")
    if isinstance(from_spec, FieldError):
        return from_spec
    if from_annotation and from_spec and set(from_spec) != set(from_annotation):
        return FieldError(
            "spec.loadBalancerIP",
            f"{','.join(from_spec)} differs from lbd.io/loadBalancerIPs "
            f"{','.join(from_annotation)}",
        )
    return from_annotation or from_spec


# --------------------------------------------------------------------------- selectors

# Kubernetes label syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue).
_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_NAME_RE = re.compile(rf"^{_NAME}$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label key (``prefix/name``), or None."""
    if not key:
        return "key must not be empty"
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        return f"{key!r}: prefix must be a DNS subdomain"
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        return f"{key!r}: name must be 1-63 alphanumerics, '-', '_' or '.', alphanumeric at ends"
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None (empty is valid)."""
    if value and (len(value) > 63 or not _NAME_RE.match(value)):
        return f"{value!r}: must be at most 63 alphanumerics, '-', '_' or '.', alphanumeric at ends"
    return None


def parse_selector(value: object, path: str, errors: list[FieldError]) -> LabelSelector | None:
    """A LabelSelector dict -> value; problems are appended to ``errors`` (returns None then)."""
    if not isinstance(value, Mapping):
        errors.append(FieldError(path, "must be a label selector (matchLabels, matchExpressions)"))
        return None
    before = len(errors)
    for unknown in sorted(set(value) - {"matchLabels", "matchExpressions"}):
        errors.append(FieldError(f"{path}.{unknown}", "unknown field"))
    labels: list[tuple[str, str]] = []
    raw_labels = value.get("matchLabels") or {}
    if not isinstance(raw_labels, Mapping):
        errors.append(FieldError(f"{path}.matchLabels", "must be a map of strings"))
    else:
        for k, v in raw_labels.items():
            p = f"{path}.matchLabels[{k}]"
            if not isinstance(k, str) or not isinstance(v, str):
                errors.append(FieldError(p, "keys and values must be strings"))
                continue
            problem = label_key_problem(k) or label_value_problem(v)
            if problem:
                errors.append(FieldError(p, problem))
            labels.append((k, v))
    exprs: list[SelectorRequirement] = []
    raw_exprs = value.get("matchExpressions") or []
    if not isinstance(raw_exprs, list):
        errors.append(FieldError(f"{path}.matchExpressions", "must be a list"))
        raw_exprs = []
    seen: dict[SelectorRequirement, int] = {}
    for i, raw in enumerate(raw_exprs):
        p = f"{path}.matchExpressions[{i}]"
        req = _parse_requirement(raw, p, errors)
        if req is None:
            continue
        if req in seen:  # values compare as sets: [a, b] repeats [b, a] (as in MetalLB)
            errors.append(FieldError(p, f"duplicates {path}.matchExpressions[{seen[req]}]"))
            continue
        seen[req] = i
        exprs.append(req)
    if len(errors) != before:
        return None
    return LabelSelector(tuple(sorted(labels)), tuple(exprs))


def _parse_requirement(
    raw: object, path: str, errors: list[FieldError]
) -> SelectorRequirement | None:
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, "must be {key, operator, values}"))
        return None
    unknown_fields = sorted(set(raw) - {"key", "operator", "values"})
    if unknown_fields:
        errors.extend(FieldError(f"{path}.{u}", "unknown field") for u in unknown_fields)
        return None
    key = raw.get("key")
    if not isinstance(key, str):
        errors.append(FieldError(f"{path}.key", "required string"))
        return None
    problem = label_key_problem(key)
    if problem:
        errors.append(FieldError(f"{path}.key", problem))
        return None
    raw_op = raw.get("operator")
    if not isinstance(raw_op, str) or raw_op not in set(SelectorOperator):
        errors.append(
            FieldError(
                f"{path}.operator",
                f"unknown operator {raw_op!r} (In, NotIn, Exists, DoesNotExist)",
            )
        )
        return None
    op = SelectorOperator(str(raw_op))
    values = raw.get("values") or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        errors.append(FieldError(f"{path}.values", "must be a list of strings"))
        return None
    if op in (SelectorOperator.IN, SelectorOperator.NOT_IN) and not values:
        errors.append(FieldError(f"{path}.values", f"must not be empty for {op}"))
        return None
    if op in (SelectorOperator.EXISTS, SelectorOperator.DOES_NOT_EXIST) and values:
        errors.append(FieldError(f"{path}.values", f"must be empty for {op}"))
        return None
    first: dict[str, int] = {}
    for j, v in enumerate(values):
        problem = label_value_problem(v)
        if problem:
            errors.append(FieldError(f"{path}.values", problem))
            return None
        if v in first:
            errors.append(FieldError(f"{path}.values[{j}]", f"duplicates values[{first[v]}] ({v})"))
            return None
        first[v] = j
    return SelectorRequirement(key, op, frozenset(values))


def _parse_selector_list(
    value: object, path: str, errors: list[FieldError]
) -> tuple[LabelSelector, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.append(FieldError(path, "must be a list of label selectors"))
        return ()
    out: list[LabelSelector] = []
    seen: dict[LabelSelector, int] = {}
    for i, raw in enumerate(value):
        sel = parse_selector(raw, f"{path}[{i}]", errors)
        if sel is None:
            continue
        # Compared as parsed (labels sorted, expressions as sets), as MetalLB compares them.
        canonical = LabelSelector(sel.match_labels, tuple(sorted(sel.match_expressions, key=repr)))
        if canonical in seen:
            errors.append(FieldError(f"{path}[{i}]", f"duplicates {path}[{seen[canonical]}]"))
            continue
        seen[canonical] = i
        out.append(sel)
    return tuple(out)


def _parse_name_list(
    value: object, path: str, errors: list[FieldError], what: str
) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.append(FieldError(path, f"must be a list of {what}s"))
        return ()
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        p = f"{path}[{i}]"
        if not isinstance(item, str) or not item:
            errors.append(FieldError(p, f"must be a non-empty {what}"))
        elif item in seen:
            errors.append(FieldError(p, f"duplicates {path}[{seen[item]}] ({item})"))
        else:
            seen[item] = i
    return tuple(seen)


def _parse_bool(
    spec: Mapping[str, Any], name: str, default: bool, errors: list[FieldError]
) -> bool:
    value = spec.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        errors.append(FieldError(f"spec.{name}", "must be true or false"))
        return default
    return value


# --------------------------------------------------------------------------- pools

_POOL_FIELDS = {"addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation"}
_ALLOCATION_FIELDS = {"priority", "namespaces", "namespaceSelectors", "serviceSelectors"}


def _parse_allocation(value: object, errors: list[FieldError]) -> ServiceAllocation | None:
    if value is None:
        return None
    path = "spec.serviceAllocation"
    if not isinstance(value, Mapping):
        errors.append(FieldError(path, "must be an object"))
        return None
    for unknown in sorted(set(value) - _ALLOCATION_FIELDS):
        errors.append(FieldError(f"{path}.{unknown}", "unknown field"))
    priority = value.get("priority")
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        errors.append(FieldError(f"{path}.priority", "must be an integer"))
        priority = None
    elif priority is not None and priority < 0:
        errors.append(
            FieldError(f"{path}.priority", "must be 0 (no priority) or a positive integer")
        )
        priority = None
    if priority == 0:
        priority = None  # MetalLB's meaning: 0 is "no priority", ranked after every pool with one
    namespaces = _parse_name_list(
        value.get("namespaces"), f"{path}.namespaces", errors, "namespace"
    )
    return ServiceAllocation(
        priority=priority,
        namespaces=frozenset(namespaces),
        namespace_selectors=_parse_selector_list(
            value.get("namespaceSelectors"), f"{path}.namespaceSelectors", errors
        ),
        service_selectors=_parse_selector_list(
            value.get("serviceSelectors"), f"{path}.serviceSelectors", errors
        ),
    )


def parse_pool(
    name: str,
    spec: object,
    labels: Mapping[str, str] | None = None,
    *,
    warnings: list[FieldError] | None = None,
) -> Pool | tuple[FieldError, ...]:
    """One IPAddressPool spec -> :class:`Pool`, or every error found in it.

    ``warnings`` (if given) receives what was read differently from how it was written.
    """
    errors: list[FieldError] = []
    if not isinstance(spec, Mapping):
        return (FieldError("spec", "must be an object"),)
    for unknown in sorted(set(spec) - _POOL_FIELDS):
        errors.append(FieldError(f"spec.{unknown}", "unknown field"))
    ranges = _parse_addresses(spec.get("addresses"), errors, warnings)
    auto_assign = _parse_bool(spec, "autoAssign", True, errors)
    avoid_buggy = _parse_bool(spec, "avoidBuggyIPs", False, errors)
    allocation = _parse_allocation(spec.get("serviceAllocation"), errors)
    if errors:
        return tuple(errors)
    return Pool(
        name=name,
        ranges=tuple(sorted(ranges)),
        auto_assign=auto_assign,
        avoid_buggy_ips=avoid_buggy,
        allocation=allocation,
        labels=dict(labels or {}),
    )


def find_conflicts(
    pools: Iterable[Pool], created: Mapping[str, str] | None = None
) -> dict[str, frozenset[str]]:
    """Each pool that overlaps an older pool, mapped to the names of those older pools.

    Older means created earlier (``created``: pool name -> RFC 3339 creationTimestamp, which
    sorts like the time it names), then the smaller name. The oldest of overlapping pools is not
    in the result: it keeps working (docs/IPAM.md).
    """
    created = created or {}

    def rank(name: str) -> tuple[str, str]:
        return (created.get(name, ""), name)

    out: dict[str, frozenset[str]] = {}
    for name, others in find_overlaps(pools).items():
        older = frozenset(o for o in others if rank(o) < rank(name))
        if older:
            out[name] = older
    return out


def find_overlaps(pools: Iterable[Pool]) -> dict[str, frozenset[str]]:
    """Pools whose ranges overlap, each mapped to the names of the others it overlaps.

    Sort-and-sweep over all ranges: O(n log n + overlaps), not O(pools^2).
    """
    items = sorted((r.family, r.first, r.last, p.name) for p in pools for r in p.ranges)
    found: dict[str, set[str]] = {}
    active: list[tuple[int, str]] = []  # (last, pool) of ranges that may still overlap
    family: Family | None = None
    for fam, first, last, name in items:
        if fam is not family:
            family, active = fam, []
        active = [(a_last, a_name) for a_last, a_name in active if a_last >= first]
        for _, other in active:
            if other != name:
                found.setdefault(name, set()).add(other)
                found.setdefault(other, set()).add(name)
        active.append((last, name))
    return {name: frozenset(others) for name, others in found.items()}


# --------------------------------------------------------------------------- advertisements

_ADVERTISEMENT_FIELDS = {
    "ipAddressPools",
    "ipAddressPoolSelectors",
    "nodeSelectors",
    "interfaces",
    "serviceSelectors",
}
# Linux IFNAMSIZ is 16 including the NUL; '/' and whitespace are never valid in a name.
_IFNAME_RE = re.compile(r"^[^/\s:]{1,15}$")


def parse_advertisement(name: str, spec: object) -> Advertisement | tuple[FieldError, ...]:
    """One L2Advertisement spec -> :class:`Advertisement`, or every error found in it."""
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        return (FieldError("spec", "must be an object"),)
    errors: list[FieldError] = []
    for unknown in sorted(set(spec) - _ADVERTISEMENT_FIELDS):
        errors.append(FieldError(f"spec.{unknown}", "unknown field"))
    pools = _parse_name_list(spec.get("ipAddressPools"), "spec.ipAddressPools", errors, "pool name")
    interfaces = _parse_name_list(spec.get("interfaces"), "spec.interfaces", errors, "interface")
    for i, ifname in enumerate(interfaces):
        if not _IFNAME_RE.match(ifname):
            errors.append(
                FieldError(f"spec.interfaces[{i}]", f"{ifname!r} is not an interface name")
            )
    adv = Advertisement(
        name=name,
        pools=frozenset(pools),
        pool_selectors=_parse_selector_list(
            spec.get("ipAddressPoolSelectors"), "spec.ipAddressPoolSelectors", errors
        ),
        node_selectors=_parse_selector_list(
            spec.get("nodeSelectors"), "spec.nodeSelectors", errors
        ),
        interfaces=interfaces,
        service_selectors=_parse_selector_list(
            spec.get("serviceSelectors"), "spec.serviceSelectors", errors
        ),
    )
    return tuple(errors) if errors else adv


# --------------------------------------------------------------------------- the whole config


def build_config(
    pools: Mapping[str, PoolInput | Mapping[str, Any]],
    advertisements: Mapping[str, Mapping[str, Any] | None] | None = None,
) -> Config:
    """Validate every pool and advertisement; find overlaps between the valid pools.

    ``pools`` maps a pool name to a :class:`PoolInput` or to its bare spec (no labels).
    """
    valid: dict[str, Pool] = {}
    invalid: dict[str, tuple[FieldError, ...]] = {}
    warnings: dict[str, tuple[FieldError, ...]] = {}
    created: dict[str, str] = {}
    for name in sorted(pools):
        item = pools[name]
        if not isinstance(item, PoolInput):
            item = PoolInput(item)
        created[name] = item.created
        notes: list[FieldError] = []
        parsed = parse_pool(name, item.spec, item.labels, warnings=notes)
        if isinstance(parsed, Pool):
            valid[name] = parsed
            if notes:
                warnings[name] = tuple(notes)
        else:
            invalid[name] = parsed
    advs: dict[str, Advertisement] = {}
    bad_advs: dict[str, tuple[FieldError, ...]] = {}
    for name, adv_spec in sorted((advertisements or {}).items()):
        adv = parse_advertisement(name, adv_spec)
        if isinstance(adv, Advertisement):
            advs[name] = adv
        else:
            bad_advs[name] = adv
    return Config(
        pools=valid,
        invalid=invalid,
        conflicting=find_conflicts(valid.values(), created),
        advertisements=advs,
        invalid_advertisements=bad_advs,
        warnings=warnings,
    )

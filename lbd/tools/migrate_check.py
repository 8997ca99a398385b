"""``lbd migrate from-metallb --check``: what would happen to each Service under lbd (pure).

:func:`check` replays what the lbd controller does when it starts on a cluster MetalLB served:
it restores every address a Service shows in its status (oldest Service first, so the older of
two claimants keeps an address), then allocates for every Service, which keeps a restored
allocation that still satisfies the request and otherwise assigns anew. The verdict compares
that outcome with what MetalLB gave:

* ``SameAddress``: every address stays, and so does the pool (where MetalLB recorded it);
* ``OtherPool``: every address stays but is counted in another pool;
* ``WouldChange``: the Service would get other addresses, or lose them (``why`` says why);
* ``NewAddress`` / ``StillPending``: it had none, and would get some / still none;
* ``InvalidRequest``: lbd reads its annotations or spec as invalid (the field and why).

The interface is deliberately small (a :class:`~lbd.core.config.Config` and the observed
Services in, one :class:`ServiceVerdict` per Service out) and uses only the allocator's public
surface (``set_pools``, ``restore_all``, ``allocate``), so a new allocator slots in unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from lbd.core.config import Config, FieldError
from lbd.core.ipam import Allocator
from lbd.core.model import Allocation, Reason, Refusal, ServiceKey, ServiceRequest


class Verdict(StrEnum):
    """What lbd would do to one Service, compared with what MetalLB gave it."""

    SAME_ADDRESS = "SameAddress"
    OTHER_POOL = "OtherPool"
    WOULD_CHANGE = "WouldChange"
    NEW_ADDRESS = "NewAddress"
    STILL_PENDING = "StillPending"
    INVALID_REQUEST = "InvalidRequest"


@dataclass(frozen=True)
class ObservedService:
    """A LoadBalancer Service as MetalLB left it.

    ``request`` is what lbd reads of it (or the first problem lbd finds in it); ``addresses``
    its ``status.loadBalancer.ingress`` addresses; ``pool`` MetalLB's
    ``metallb.io/ip-allocated-from-pool`` annotation, if any.
    """

    key: ServiceKey
    request: ServiceRequest | FieldError
    addresses: tuple[str, ...] = ()
    pool: str | None = None


@dataclass(frozen=True)
class ServiceVerdict:
    """The outcome for one Service: before (MetalLB) and after (lbd), and why it differs."""

    key: ServiceKey
    verdict: Verdict
    before: tuple[str, ...]
    after: tuple[str, ...]
    pool_before: str | None
    pool_after: str | None
    reason: Reason | None = None
    why: str = ""


def check(config: Config, services: Iterable[ObservedService]) -> tuple[ServiceVerdict, ...]:
    """One verdict per Service (sorted by key) for lbd running with ``config``."""
    allocator = Allocator()
    allocator.set_pools(
        config.pools.values(), conflicting=config.conflicting, invalid=config.invalid
    )
    observed = list(services)
    valid = [(s, s.request) for s in observed if isinstance(s.request, ServiceRequest)]
    restored = allocator.restore_all((req, s.addresses, s.pool) for s, req in valid if s.addresses)
    out = [
        ServiceVerdict(
            s.key,
            Verdict.INVALID_REQUEST,
            s.addresses,
            (),
            s.pool,
            None,
            Reason.INVALID_REQUEST,
            str(s.request),
        )
        for s in observed
        if isinstance(s.request, FieldError)
    ]
    for s, req in sorted(valid, key=lambda item: item[1].age_rank):
        out.append(_verdict(s, restored.get(req.key), allocator.allocate(req)))
    return tuple(sorted(out, key=lambda v: v.key))


def _verdict(
    s: ObservedService, restored: Allocation | Refusal | None, result: Allocation | Refusal
) -> ServiceVerdict:
    after = result.addresses if isinstance(result, Allocation) else ()
    pool_after = result.pool if isinstance(result, Allocation) else None
    kept = bool(s.addresses) and set(after) == set(s.addresses)
    # Why it changes: the restore's refusal (the old addresses do not carry over), else the
    # allocation's (no new ones either).
    refusal = next((r for r in (restored, result) if isinstance(r, Refusal)), None)
    reason, why = (refusal.reason, refusal.message) if refusal and not kept else (None, "")
    if not s.addresses:
        verdict = Verdict.NEW_ADDRESS if after else Verdict.STILL_PENDING
    elif not kept:
        verdict = Verdict.WOULD_CHANGE
        why = why or "its request now selects other addresses"
    elif s.pool is not None and s.pool != pool_after:
        verdict = Verdict.OTHER_POOL
        why = f"its addresses lie in lbd pool {pool_after}; MetalLB counted them in {s.pool}"
    else:
        verdict = Verdict.SAME_ADDRESS
    return ServiceVerdict(s.key, verdict, s.addresses, after, s.pool, pool_after, reason, why)

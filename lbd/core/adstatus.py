"""What an L2Advertisement shows in its ``Ready`` condition: a pure function of what exists.

API::

    advertisement_ready(parsed, pools={name: labels}, nodes=[labels, ...]) -> AdReady

``parsed`` is :func:`lbd.core.config.parse_advertisement`'s answer (an
:class:`~lbd.core.model.Advertisement` or its field errors). The first problem found wins, in
the order a user would fix them (issue 14, point 4):

1. ``Invalid``: a field that does not parse (a selector with an unknown operator, a bad
   interface name ...); the message names the field path. The speakers ignore the whole
   L2Advertisement (announcing less is safe; announcing from a node the user excluded is not).
2. ``PoolNotFound``: ``spec.ipAddressPools`` names a pool that does not exist (a typo, or the
   pool was deleted). The pools that do exist are still announced; the message says which.
3. ``NoPoolSelected``: it selects no existing pool (selectors that match no pool's labels, or
   no pool at all in the cluster).
4. ``NoNodeSelected``: ``spec.nodeSelectors`` match no Node: no node may announce.
5. ``Ready`` (True): the message names the pools and the number of nodes that may announce.

The message lists at most :data:`MAX_NAMES` names, so a cluster with many pools does not write
a long message, and its text depends only on the inputs (no time, no order of arrival), so the
controller writes it only when something a user cares about changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from lbd.core.config import FieldError
from lbd.core.model import Advertisement

MAX_NAMES = 5


class AdReason(StrEnum):
    READY = "Ready"
    INVALID = "Invalid"
    POOL_NOT_FOUND = "PoolNotFound"
    NO_POOL_SELECTED = "NoPoolSelected"
    NO_NODE_SELECTED = "NoNodeSelected"


@dataclass(frozen=True)
class AdReady:
    """The ``Ready`` condition an L2Advertisement should show."""

    reason: AdReason
    message: str

    @property
    def ready(self) -> bool:
        return self.reason is AdReason.READY


def names(items: Iterable[str]) -> str:
    """``a, b, c`` (sorted), at most :data:`MAX_NAMES` of them, then ``and N more``."""
    ordered = sorted(items)
    shown = ", ".join(ordered[:MAX_NAMES])
    more = len(ordered) - MAX_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def advertisement_ready(
    parsed: Advertisement | tuple[FieldError, ...],
    *,
    pools: Mapping[str, Mapping[str, str]],
    nodes: Iterable[Mapping[str, str]],
) -> AdReady:
    """The condition for one L2Advertisement, given every pool (name -> labels) and every
    Node's labels."""
    if not isinstance(parsed, Advertisement):
        text = "; ".join(str(e) for e in parsed[:MAX_NAMES])
        return AdReady(AdReason.INVALID, f"{text} (ignored by every speaker)")
    selected = {name for name, labels in pools.items() if parsed.selects_pool(name, labels)}
    missing = parsed.pools - pools.keys()
    if missing:
        plural = "s" if len(missing) > 1 else ""
        message = f"spec.ipAddressPools: no IPAddressPool{plural} named {names(missing)}"
        message += f"; announcing {names(selected)}" if selected else "; announcing nothing"
        return AdReady(AdReason.POOL_NOT_FOUND, message)
    if not selected:
        if not pools:
            return AdReady(AdReason.NO_POOL_SELECTED, "there is no IPAddressPool")
        return AdReady(
            AdReason.NO_POOL_SELECTED,
            "spec.ipAddressPoolSelectors match no IPAddressPool's labels",
        )
    eligible = sum(1 for labels in nodes if parsed.selects_node(labels))
    if parsed.node_selectors and not eligible:
        return AdReady(
            AdReason.NO_NODE_SELECTED,
            f"spec.nodeSelectors match no Node's labels: no node may announce {names(selected)}",
        )
    plural = "" if eligible == 1 else "s"
    return AdReady(AdReason.READY, f"announcing {names(selected)} from {eligible} node{plural}")

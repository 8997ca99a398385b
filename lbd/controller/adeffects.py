"""What users see of an L2Advertisement's status: a pure function of before and after.

API::

    advertisement_effects(name, before, after, wrote) -> tuple[Effect, ...]

``before`` is the ``Ready`` condition the object showed, ``after`` what the controller decided
(:func:`lbd.core.adstatus.advertisement_ready`), ``wrote`` whether the status write changed it.
The rules (as :mod:`lbd.controller.effects` has them for Services and pools):

- Nothing unless the write changed what the object shows: a resync, a restart or a leader change
  finds the condition already right and says nothing.
- Not ready (``Invalid``, ``PoolNotFound``, ``NoPoolSelected``, ``NoNodeSelected``): a Warning
  Event with that reason and a warning log line, whenever the reason or the message changes (a
  second missing pool is news).
- Ready: a Normal ``Ready`` Event when it becomes ready (created good, or fixed); not when only
  the message changes (a node joined: the count in the message moves, nothing went wrong).
"""

from __future__ import annotations

import logging

from lbd.controller.effects import Effect, Emit, Log
from lbd.core.adstatus import AdReady
from lbd.k8s.conditions import ObservedCondition


def advertisement_effects(
    name: str, before: ObservedCondition | None, after: AdReady, wrote: bool
) -> tuple[Effect, ...]:
    """Events and logs for L2Advertisement ``name`` whose Ready condition went from ``before``
    to ``after``."""
    if not wrote:
        return ()
    if after.ready:
        if before is not None and before.status == "True":
            return ()
        return (
            Emit(False, after.reason.value, after.message),
            Log(logging.INFO, "L2Advertisement ready", (("l2advertisement", name),)),
        )
    return (
        Emit(True, after.reason.value, after.message),
        Log(
            logging.WARNING,
            f"L2Advertisement not ready: {after.message}",
            (("l2advertisement", name), ("reason", after.reason.value)),
        ),
    )

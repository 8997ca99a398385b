"""``metav1.Condition`` lists: read one condition, set one condition, keep everybody else's.

API::

    Condition(status=True, reason="Assigned", message="...")     # what we want shown
    ObservedCondition.find(conditions, "lbd.io/AddressAssigned") # what is shown, or None
    merge_conditions(conditions, ctype, want, stamp) -> list | None   # None: nothing to change

Conditions are replaced as a whole list in a merge patch, so the list is rebuilt from what was
read, keeping conditions written by others; ``lastTransitionTime`` changes only when the
condition's status flips (Kubernetes API conventions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lbd.k8s.frozen import quick_init

Conditions = tuple[Mapping[str, Any], ...]
"""A conditions list as read (entries that are not maps dropped); passed through, never edited."""


@dataclass(frozen=True)
class Condition:
    """One ``metav1.Condition`` minus the timestamps."""

    status: bool
    reason: str
    message: str


@quick_init  # built for every listed object: lbd.k8s.frozen
@dataclass(frozen=True)
class ObservedCondition:
    """A condition as read, with its transition time."""

    type: str
    status: str
    reason: str
    message: str
    last_transition: str = ""

    @classmethod
    def find(cls, conditions: Conditions, ctype: str) -> ObservedCondition | None:
        for c in conditions:
            if c.get("type") == ctype:
                return cls(  # positional: a quarter cheaper (two per Service read)
                    ctype,
                    str(c.get("status") or ""),
                    str(c.get("reason") or ""),
                    str(c.get("message") or ""),
                    str(c.get("lastTransitionTime") or ""),
                )
        return None

    def shows(self, want: Condition) -> bool:
        """Whether this is ``want`` already."""
        return (self.status, self.reason, self.message) == (
            "True" if want.status else "False",
            want.reason,
            want.message,
        )


def conditions_of(value: Any) -> Conditions:
    """A ``conditions`` field as read: its map entries (anything else is dropped)."""
    if not isinstance(value, list | tuple):
        return ()
    return tuple([c for c in value if isinstance(c, dict)])  # a list comprehension: no generator


def merge_conditions(
    current: Conditions, ctype: str, want: Condition | None, stamp: str
) -> list[dict[str, Any]] | None:
    """The new ``conditions`` list with ``ctype`` set to ``want`` (None: removed); None if same."""
    conds = [dict(c) for c in current]
    old = next((c for c in conds if c.get("type") == ctype), None)
    others = [c for c in conds if c.get("type") != ctype]
    if want is None:
        return None if old is None else others
    status = "True" if want.status else "False"
    if (
        old is not None
        and old.get("status") == status
        and old.get("reason") == want.reason
        and old.get("message") == want.message
    ):
        return None
    transition = stamp
    if old is not None and old.get("status") == status and old.get("lastTransitionTime"):
        transition = str(old["lastTransitionTime"])
    new = {
        "type": ctype,
        "status": status,
        "reason": want.reason,
        "message": want.message,
        "lastTransitionTime": transition,
    }
    if old is None:
        return [*others, new]
    return [new if c is old else c for c in conds]

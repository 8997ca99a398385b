"""Label and field selectors, parsed once per request and matched against stored dicts.

Grammar follows ``k8s.io/apimachinery/pkg/labels`` (``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``,
``a notin (x)``, ``a``, ``!a``) and ``pkg/fields`` (``path=value``, ``path==value``,
``path!=value``). Field selectors are only accepted on the labels a resource supports, and an
unsupported one is a 400 ``field label not supported: ...``, as a real server answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lbd.lab.apiserver.errors import bad_request

_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str]

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects without the label, as in apimachinery
        return not present or labels[self.key] not in self.values


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


_SET = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")


def parse_label_selector(text: str) -> tuple[Requirement, ...]:
    reqs: list[Requirement] = []
    for part in _split_top(text):
        m = _SET.match(part)
        if m:
            key, op, vals = m.group(1), m.group(2), m.group(3)
            values = frozenset(v.strip() for v in vals.split(",") if v.strip())
        elif part.startswith("!"):
            key, op, values = part[1:].strip(), "!", frozenset()
        elif "!=" in part:
            key, _, val = part.partition("!=")
            op, values = "!=", frozenset([val.strip()])
        elif "==" in part:
            key, _, val = part.partition("==")
            op, values = "=", frozenset([val.strip()])
        elif "=" in part:
            key, _, val = part.partition("=")
            op, values = "=", frozenset([val.strip()])
        else:
            key, op, values = part, "exists", frozenset()
        key = key.strip()
        if not _KEY.match(key):
            raise bad_request(f"unable to parse requirement: invalid label key {key!r}")
        reqs.append(Requirement(key, op, values))
    return tuple(reqs)


def parse_field_selector(text: str, supported: tuple[str, ...]) -> tuple[Requirement, ...]:
    allowed = ("metadata.name", "metadata.namespace", *supported)
    reqs: list[Requirement] = []
    for part in _split_top(text):
        if "!=" in part:
            key, _, val = part.partition("!=")
            op = "!="
        elif "==" in part:
            key, _, val = part.partition("==")
            op = "="
        elif "=" in part:
            key, _, val = part.partition("=")
            op = "="
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key = key.strip()
        if key not in allowed:
            raise bad_request(f'field label not supported: "{key}"')
        reqs.append(Requirement(key, op, frozenset([val.strip()])))
    return tuple(reqs)


def field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if path == "source" and isinstance(cur, dict):
        return str(cur.get("component", ""))
    return str(cur)


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed labelSelector + fieldSelector; the empty selector matches everything."""

    labels: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.labels and not self.fields

    def matches(self, obj: dict[str, Any]) -> bool:
        if self.labels:
            labels = obj.get("metadata", {}).get("labels") or {}
            if not all(r.matches(labels) for r in self.labels):
                return False
        for r in self.fields:
            value = field_value(obj, r.key)
            ok = value in r.values
            if ok != (r.op == "="):
                return False
        return True


def build_selector(
    label_selector: str | None, field_selector: str | None, supported: tuple[str, ...]
) -> Selector:
    return Selector(
        parse_label_selector(label_selector) if label_selector else (),
        parse_field_selector(field_selector, supported) if field_selector else (),
    )


Matcher = Callable[[dict[str, Any]], bool]

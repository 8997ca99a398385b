"""``meta.k8s.io/v1`` Table responses, which ``kubectl get`` asks for (``Accept: ...;as=Table``).

Columns follow what kubectl shows for a real cluster where it matters to a reader (Service
type, cluster IP, external IP, ports); CRDs use their ``additionalPrinterColumns`` (simple
``.a.b`` JSON paths); everything else gets NAME and AGE.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from lbd.lab.apiserver.resources import ResourceType


def age(created: str | None, now: datetime.datetime | None = None) -> str:
    if not created:
        return "<unknown>"
    try:
        then = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
    except ValueError:
        return "<invalid>"
    secs = int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())
    if secs < 120:
        return f"{max(secs, 0)}s"
    if secs < 7200:
        return f"{secs // 60}m"
    if secs < 172800:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+|\*)\]|\[\?\(@\.([\w.]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def _path(obj: Any, json_path: str) -> Any:
    """The subset of kubectl's JSONPath that printer columns use: ``.a.b``, ``[0]``, ``[*]``
    and ``[?(@.type=="Ready")]``; several matches are joined with commas, like kubectl."""
    current = [obj]
    text = json_path.strip().removeprefix("{").removesuffix("}").strip()
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            return None
        pos = m.end()
        nxt: list[Any] = []
        for value in current:
            if m.group(1) is not None:
                if isinstance(value, dict) and m.group(1) in value:
                    nxt.append(value[m.group(1)])
            elif m.group(2) is not None and isinstance(value, list):
                if m.group(2) == "*":
                    nxt.extend(value)
                elif int(m.group(2)) < len(value):
                    nxt.append(value[int(m.group(2))])
            elif m.group(3) is not None and isinstance(value, list):
                nxt.extend(
                    item for item in value if str(_path(item, "." + m.group(3))) == m.group(4)
                )
        current = nxt
    if not current:
        return None
    if len(current) == 1:
        return current[0]
    return ",".join(str(v) for v in current)


def _cell(obj: dict[str, Any], column: dict[str, Any]) -> Any:
    value = _path(obj, column.get("jsonPath", ""))
    if column.get("type") == "date" and isinstance(value, str):
        return age(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return value


def _service_cells(obj: dict[str, Any]) -> list[Any]:
    spec = obj.get("spec") or {}
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = ",".join(i.get("ip") or i.get("hostname") or "" for i in ingress)
    if not external:
        external = "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"
    ports = ",".join(
        f"{p.get('port')}"
        + (f":{p['nodePort']}" if p.get("nodePort") else "")
        + f"/{p.get('protocol', 'TCP')}"
        for p in spec.get("ports") or []
    )
    return [spec.get("type", ""), spec.get("clusterIP", ""), external, ports or "<none>"]


def _event_cells(obj: dict[str, Any]) -> list[Any]:
    inv = obj.get("involvedObject") or {}
    what = f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}"
    return [obj.get("type", ""), obj.get("reason", ""), what, obj.get("message", "")]


def _slice_cells(obj: dict[str, Any]) -> list[Any]:
    ports = ",".join(str(p.get("port", "")) for p in obj.get("ports") or []) or "<unset>"
    addrs = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    return [obj.get("addressType", ""), ports, ",".join(addrs) or "<unset>"]


def _node_cells(obj: dict[str, Any]) -> list[Any]:
    conds = {
        c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []
    }
    status = {"True": "Ready", "False": "NotReady"}.get(str(conds.get("Ready")), "Unknown")
    addrs = (obj.get("status") or {}).get("addresses") or []
    internal = next((a.get("address") for a in addrs if a.get("type") == "InternalIP"), "<none>")
    return [status, internal]


#: (group, kind) -> (column names, cells) for the built-in types kubectl users look at
_BUILTIN: dict[tuple[str, str], tuple[tuple[str, ...], Any]] = {
    ("", "Service"): (("Type", "Cluster-IP", "External-IP", "Port(s)"), _service_cells),
    ("", "Event"): (("Type", "Reason", "Object", "Message"), _event_cells),
    ("", "Node"): (("Status", "Internal-IP"), _node_cells),
    ("discovery.k8s.io", "EndpointSlice"): (("AddressType", "Ports", "Endpoints"), _slice_cells),
    ("coordination.k8s.io", "Lease"): (
        ("Holder",),
        lambda o: [(o.get("spec") or {}).get("holderIdentity") or ""],
    ),
}


def table(rt: ResourceType, items: list[dict[str, Any]], resource_version: str) -> dict[str, Any]:
    columns: list[dict[str, Any]] = [
        {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}
    ]
    extra: list[tuple[str, str]] = []
    builtin = _BUILTIN.get((rt.group, rt.kind))
    if builtin is not None:
        extra = [(name, "string") for name in builtin[0]]
    elif rt.printer_columns:
        extra = [(c["name"], c.get("type", "string")) for c in rt.printer_columns]
    columns += [
        {"name": n, "type": t, "format": "", "description": n, "priority": 0} for n, t in extra
    ]
    # CRDs with printer columns show exactly those (usually including an Age of type date)
    with_age = not rt.printer_columns
    if with_age:
        columns.append(
            {"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}
        )
    rows = []
    for obj in items:
        meta = obj.get("metadata", {})
        if builtin is not None:
            cells = builtin[1](obj)
        else:
            cells = [_cell(obj, c) for c in rt.printer_columns]
        tail = [age(meta.get("creationTimestamp"))] if with_age else []
        rows.append(
            {
                "cells": [meta.get("name"), *cells, *tail],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                },
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    }

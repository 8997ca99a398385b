"""Every PromQL query lbd ships (alert rules, Grafana dashboard) names only metrics lbd exports,
and the README's tables list exactly the exported metrics and the alerts (issues 14 and 15).

The exported names come from the real registries of :mod:`lbd.metrics`, so renaming a metric
without its queries and docs fails here. The dashboard's queries are also parsed by promtool
(as recording rules), when it is installed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lbd.metrics import ControllerMetrics, SpeakerMetrics
from tests.unit.test_alerts import promtool, rule_groups, run

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/monitoring/grafana-dashboard.json"
README = ROOT / "README.md"

NOT_LBD = frozenset({"up"})
"""Series the queries may use that Prometheus itself makes (scrape health)."""

_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan"}
)


def exported() -> dict[str, str]:
    """Family name as scraped (counters with ``_total``) -> type, over both programs."""
    out: dict[str, str] = {}
    for registry in (ControllerMetrics().registry, SpeakerMetrics().registry):
        for fam in registry.collect():
            out[fam.name + "_total" if fam.type == "counter" else fam.name] = fam.type
    return out


def series_names() -> set[str]:
    """Every series name a query may select (a histogram's ``_bucket``, ``_sum``, ``_count``)."""
    out: set[str] = set()
    for name, kind in exported().items():
        if kind == "histogram":
            out |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            out.add(name)
    return out


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are neither functions,
    aggregations, keywords, label names (in ``{}`` and ``by (...)``) nor durations."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group()
        if e[m.end() :].lstrip().startswith("(") or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in _panels(dash["panels"]) for t in p.get("targets", [])]


def rule_queries() -> list[tuple[str, str]]:
    return [
        (r.get("alert") or r["record"], r["expr"])
        for g in rule_groups()["groups"]
        for r in g["rules"]
    ]


def test_the_name_reader_finds_metrics_and_only_metrics() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, verb) (rate(a_seconds_bucket{verb!="watch"}'
        "[$__rate_interval]))) / on (pool) group_left max(b) > 1e3 and c offset 5m"
    )
    assert metric_names_in(expr) == {"a_seconds_bucket", "b", "c"}


@pytest.mark.parametrize(
    ("where", "expr"),
    [pytest.param(w, e, id=f"rule:{w}") for w, e in rule_queries()]
    + [pytest.param(w, e, id=f"dashboard:{w}") for w, e in dashboard_queries()],
)
def test_every_query_names_only_metrics_lbd_exports(where: str, expr: str) -> None:
    names = metric_names_in(expr)
    assert names, f"{where}: no metric in {expr!r}"
    unknown = names - series_names() - NOT_LBD
    assert not unknown, f"{where}: {sorted(unknown)} not exported by lbd (lbd/metrics.py)"


def test_the_dashboard_covers_what_operators_ask(tmp_path: Path) -> None:
    used = set().union(*(metric_names_in(e) for _, e in dashboard_queries()))
    for name in (
        "lbd_pool_addresses_assigned",
        "lbd_services_waiting",
        "lbd_services_unannounced",
        "lbd_allocations_total",
        "lbd_speaker_announced",
        "lbd_failover_seconds_bucket",
        "lbd_arp_requests_total",
        "lbd_ndp_requests_total",
        "lbd_heartbeats_dropped_total",
    ):
        assert name in used, name


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    tool = promtool()
    rules = [
        {"record": f"lbd:dashboard:{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, (_, e) in enumerate(dashboard_queries())
    ]
    (tmp_path / "dash.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    out = run(tool, "check", "rules", "dash.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def _table(heading: str) -> list[list[str]]:
    """The rows of the first Markdown table under ``heading`` in the README."""
    text = README.read_text()
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # header and its rule


def test_readme_metrics_table_lists_exactly_the_exported_metrics() -> None:
    rows = _table("### Metrics")
    listed = [re.sub(r"`", "", r[0]) for r in rows]
    assert sorted(listed) == sorted(exported()), "README metrics table vs lbd/metrics.py"
    kinds = {re.sub(r"`", "", r[0]): r[1] for r in rows}
    assert kinds == exported(), "README metrics table: type column"


def test_readme_alerts_table_lists_exactly_the_alerts() -> None:
    listed = [re.sub(r"`", "", r[0]) for r in _table("### Alerts")]
    alerts = [r["alert"] for g in rule_groups()["groups"] for r in g["rules"] if "alert" in r]
    assert sorted(listed) == sorted(alerts)

"""The alert rules, checked by Prometheus's own tool (issue 14, point 3).

``promtool check rules`` parses every rule; ``promtool test rules`` feeds the series of
``tests/unit/promtool/lbd_alerts_test.yaml`` and asserts which alerts fire, with which labels
and text. The PrometheusRule's ``spec`` is exactly a Prometheus rule file, so it is written out
as one. Without promtool (Debian's ``prometheus`` package; ``.ci/run`` installs it) the tests
are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/monitoring/prometheusrule.yaml"
CASES = Path(__file__).resolve().parent / "promtool/lbd_alerts_test.yaml"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        hint = "promtool is not installed (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{hint}; .ci/run installs it")
        pytest.skip(hint)
    return path


def rule_groups() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(RULES.read_text())["spec"]
    return spec


def run(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture
def rule_dir(tmp_path: Path) -> Path:
    (tmp_path / "lbd-rules.yaml").write_text(yaml.safe_dump(rule_groups()))
    shutil.copy(CASES, tmp_path / CASES.name)
    return tmp_path


def test_promtool_check_rules(rule_dir: Path) -> None:
    out = run(promtool(), "check", "rules", "lbd-rules.yaml", cwd=rule_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    count = sum(len(g["rules"]) for g in rule_groups()["groups"])
    assert f"SUCCESS: {count} rules found" in out.stdout


def test_promtool_test_rules(rule_dir: Path) -> None:
    out = run(promtool(), "test", "rules", CASES.name, cwd=rule_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_promtool_case() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(CASES.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {r["alert"] for g in rule_groups()["groups"] for r in g["rules"] if "alert" in r}
    # the usage steps share one expression; 95 % stands for 75 and 85
    assert alerts - tested == {"LbdPoolUsage75", "LbdPoolUsage85"}


def test_the_fixed_exhaustion_rule_is_what_the_cases_catch(rule_dir: Path) -> None:
    """The cases would catch the 0 >= 0 bug again (issue 14): put it back, they fail."""
    tool = promtool()
    groups = rule_groups()
    for group in groups["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "LbdPoolExhausted":
                fixed = "(lbd_pool_addresses_total > 0)"
                assert fixed in rule["expr"]
                rule["expr"] = rule["expr"].replace(fixed, "(lbd_pool_addresses_total)")
    (rule_dir / "lbd-rules.yaml").write_text(yaml.safe_dump(groups))
    out = run(tool, "test", "rules", CASES.name, cwd=rule_dir)
    assert out.returncode != 0
    assert 'family="ipv6", pool="v4"' in out.stdout + out.stderr

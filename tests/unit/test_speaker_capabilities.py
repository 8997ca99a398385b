"""Capabilities said plainly (issue 16): what the speaker holds, what it does without each, and
the manifests' documented options for NET_ADMIN and SYS_NICE (kustomize component, Helm value).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from lbd.metrics import SpeakerMetrics
from lbd.net import capabilities
from tests.unit.test_deploy import (
    DEPLOY,
    _container,
    _docs,
    _workload,
    helm_template,
    kustomize,
)

OPTION = DEPLOY / "options" / "speaker-priority"


def status(mask: int) -> str:
    return (
        f"Name:\tlbd\nCapInh:\t0000000000000000\nCapEff:\t{mask:016x}\nCapBnd:\t000001ffffffffff\n"
    )


@pytest.mark.parametrize(
    ("mask", "held"),
    [
        (1 << 13, {"NET_RAW"}),  # what the default manifests grant
        ((1 << 13) | (1 << 12) | (1 << 23), {"NET_RAW", "NET_ADMIN", "SYS_NICE"}),
        (0x000001FFFFFFFFFF, {"NET_RAW", "NET_ADMIN", "SYS_NICE"}),  # root without limits
        ((1 << 12) | (1 << 23), {"NET_ADMIN", "SYS_NICE"}),
        (0, set()),
    ],
)
def test_effective_capabilities_are_read_from_capeff(mask: int, held: set[str]) -> None:
    assert capabilities.effective(status(mask)) == held


def test_report_says_what_is_missing_and_what_that_costs(caplog: pytest.LogCaptureFixture) -> None:
    metrics = SpeakerMetrics()
    with caplog.at_level(logging.INFO, logger="lbd.net.capabilities"):
        held = capabilities.report(metrics, status=status(1 << 13), rmem_max="212992\n")
    assert held == {"NET_RAW"}
    text = [r.getMessage() for r in caplog.records]
    assert text[0] == (
        "capabilities: holds NET_RAW of NET_ADMIN, NET_RAW, SYS_NICE; missing NET_ADMIN, SYS_NICE"
    )
    assert any("without NET_ADMIN" in t and "212992 bytes" in t for t in text)
    assert any("without SYS_NICE" in t and "normal priority" in t for t in text)
    assert all(r.levelno == logging.WARNING for r in caplog.records[1:])
    exported = generate_latest(metrics.registry).decode()
    assert 'lbd_speaker_capability{capability="NET_RAW"} 1.0' in exported
    assert 'lbd_speaker_capability{capability="SYS_NICE"} 0.0' in exported


def test_a_speaker_without_net_raw_says_it_cannot_answer(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lbd.net.capabilities"):
        capabilities.report(status=status(0), rmem_max="212992")
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "without NET_RAW" in error.getMessage() and "answers for no VIP" in error.getMessage()


def test_this_process_is_read_from_proc() -> None:
    held = capabilities.report()
    assert held == capabilities.effective(Path("/proc/self/status").read_text())
    if os.geteuid() == 0:
        assert "NET_RAW" in held


def _speaker_caps(objs: list[dict[str, Any]]) -> dict[str, Any]:
    caps: dict[str, Any] = _container(_workload(objs, "DaemonSet"))["securityContext"][
        "capabilities"
    ]
    return caps


def test_default_manifests_grant_net_raw_only_and_document_the_options() -> None:
    assert _speaker_caps(kustomize(".")) == {"drop": ["ALL"], "add": ["NET_RAW"]}
    header = (DEPLOY / "base" / "speaker.yaml").read_text().split("apiVersion:")[0]
    for name in (
        "NET_ADMIN",
        "SYS_NICE",
        "speaker.capabilities",
        "deploy/options/speaker-priority",
    ):
        assert name in header, name
    assert "@@" not in header, "a measured figure is missing"


def test_helm_value_grants_the_optional_capabilities(tmp_path: Path) -> None:
    values = {"speaker": {"capabilities": ["NET_RAW", "NET_ADMIN", "SYS_NICE"]}}
    objs = helm_template(values, tmp_path)
    assert _speaker_caps(objs) == {"drop": ["ALL"], "add": ["NET_RAW", "NET_ADMIN", "SYS_NICE"]}
    assert _speaker_caps(helm_template({}, tmp_path))["add"] == ["NET_RAW"]


def test_kustomize_component_grants_the_same(tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: cannot render a kustomize component")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    rel = os.path.relpath(DEPLOY, overlay)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [rel],
                "components": [os.path.relpath(OPTION, overlay)],
            }
        )
    )
    out = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], check=True, capture_output=True, text=True
    )
    objs = _docs(out.stdout)
    assert _speaker_caps(objs) == {"drop": ["ALL"], "add": ["NET_RAW", "NET_ADMIN", "SYS_NICE"]}
    # nothing else changes: the same objects as the base, the speaker's capabilities aside
    base = {(o["kind"], o["metadata"]["name"]): o for o in kustomize(".")}
    for obj in objs:
        if obj["kind"] != "DaemonSet":
            assert obj == base[(obj["kind"], obj["metadata"]["name"])]

"""The pure halves of ``lbd status`` and ``lbd doctor``: typed readers, decisions, rendering,
on literal objects (tests/k8s/test_operator_tools.py runs the commands against API servers)."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest
from prometheus_client import generate_latest

from lbd.core.model import Family
from lbd.k8s.configmaps import observe_kube_proxy
from lbd.k8s.event_view import observe_event
from lbd.k8s.l2status import observe_l2status
from lbd.k8s.node import observe_node
from lbd.k8s.pool import observe_pool
from lbd.k8s.snapshot import Snapshot
from lbd.k8s.workloads import observe_pod
from lbd.metrics import SpeakerMetrics
from lbd.tools import status_cli
from lbd.tools.doctor import (
    Check,
    SpeakerKeys,
    Verdict,
    check_kube_proxy,
    check_membership,
    parse_speaker_metrics,
    render,
)
from lbd.tools.status import (
    BAR_WIDTH,
    NEAR_EXHAUSTION,
    RED,
    YELLOW,
    FamilyUsage,
    as_data,
    build_status,
    render_table,
    usage_bar,
)


def pool_obj(name: str, assigned: int | str, available: int | str, **status) -> dict[str, Any]:
    return {
        "apiVersion": "lbd.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name},
        "spec": {"addresses": ["198.18.0.0/24"]},
        "status": {"assignedIPv4": assigned, "availableIPv4": available, **status},
    }


def test_pool_reader_takes_the_counts_as_the_controller_writes_them():
    view = observe_pool(pool_obj("a", 3, 5, assignedIPv6="18446744073709551616", availableIPv6=0))
    assert view.usage[Family.IPV4].total == 8
    assert view.usage[Family.IPV6].assigned == 2**64  # a decimal string above 2**53
    assert observe_pool(pool_obj("b", "x", 5)).usage == {}  # garbage: no family shown
    assert observe_pool(pool_obj("c", -1, 5)).usage == {}
    assert observe_pool(pool_obj("d", 0, 0)).usage == {}  # the controller wrote no such family
    assert observe_pool(pool_obj("e", 1, 1, waitingServices=4)).waiting == 4


def test_near_exhaustion_threshold_and_colour():
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for _ in range(200):
        total = rng.randrange(1, 10_000)
        assigned = rng.randrange(0, total + 1)
        f = FamilyUsage(Family.IPV4, assigned, total)
        near = assigned == total or assigned / total >= NEAR_EXHAUSTION
        assert f.near_exhaustion == near, (seed, assigned, total)
        plain, coloured = usage_bar(f, False), usage_bar(f, True)
        assert "\x1b[" not in plain
        assert plain.count("#") + plain.count("-") == BAR_WIDTH, plain
        assert plain.endswith(f"{assigned}/{total}")
        if not near:
            assert coloured == plain
        else:
            assert coloured.startswith(RED if assigned == total else YELLOW), (seed, coloured)
            assert plain in coloured
    # one address used of 2**64 still shows a mark
    assert usage_bar(FamilyUsage(Family.IPV6, 1, 2**64), False).startswith("[#---")


def test_colour_only_on_a_terminal_without_no_color(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert status_cli.use_color(Tty())
    assert not status_cli.use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not status_cli.use_color(Tty())


def test_report_from_views():
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "ns", "annotations": {}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        "status": {
            "loadBalancer": {"ingress": [{"ip": "198.18.0.1", "ipMode": "VIP"}]},
            "conditions": [
                {"type": "lbd.io/AddressAssigned", "status": "True", "reason": "Assigned"},
                {
                    "type": "lbd.io/Announced",
                    "status": "False",
                    "reason": "NoLiveSpeaker",
                    "message": "no live speaker may announce",
                },
            ],
        },
    }
    other_class = {**svc, "spec": {**svc["spec"], "loadBalancerClass": "x"}}
    other_class["metadata"] = {"name": "theirs", "namespace": "ns"}
    from lbd.k8s.service import observe_service

    snap = Snapshot(
        pools=(observe_pool(pool_obj("p", 9, 1)),),
        services=(observe_service(svc), observe_service(other_class)),
        l2statuses=(
            observe_l2status(
                {
                    "metadata": {"name": "web", "namespace": "ns"},
                    "status": {"node": "n1", "vips": ["198.18.0.1"], "interfaces": [{"name": "e"}]},
                }
            ),
        ),
        speakers=(),
        events=(
            observe_event(
                {
                    "metadata": {"name": "e1", "namespace": "ns"},
                    "involvedObject": {"kind": "Service", "namespace": "ns", "name": "web"},
                    "type": "Warning",
                    "reason": "AllocationFailed",
                    "message": "SharingConflict: port 80 held by ns/other",
                    "lastTimestamp": "2026-01-01T00:00:00Z",
                }
            ),
            observe_event(
                {
                    "metadata": {"name": "e2", "namespace": "ns"},
                    "involvedObject": {"kind": "Service", "namespace": "ns", "name": "web"},
                    "type": "Warning",
                    "reason": "AllocationFailed",
                    "message": "PoolExhausted: pool p is full",
                }
            ),
        ),
        missing={"Pod": "forbidden"},
    )
    report = build_status(snap)
    data = as_data(report)
    assert [s["service"] for s in data["services"]] == ["ns/web"]  # another class is not ours
    web = data["services"][0]
    assert web["node"] == "n1" and web["why"] == "no live speaker may announce"
    assert data["speakers"] == [
        {"node": "n1", "pod": None, "alive": None, "announces": ["ns/web"], "vips": ["198.18.0.1"]}
    ]
    assert [c["reason"] for c in data["conflicts"]] == ["AllocationFailed"]  # SharingConflict
    assert data["pools"][0]["families"][0]["nearExhaustion"] is True
    assert data["notes"] == ["Pod: forbidden"]
    json.dumps(data)  # JSON-able as it is
    table = render_table(report)
    assert "NoLiveSpeaker!" in table
    assert "n1     -     unknown" in table
    assert "note: could not read Pod: forbidden" in table


def test_readers_of_other_kinds():
    node = observe_node(
        {
            "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {
                "addresses": [
                    {"type": "Hostname", "address": "n1"},
                    {"type": "InternalIP", "address": "198.18.0.1"},
                    {"type": "ExternalIP", "address": "2001:db8::1"},
                ],
                "conditions": [{"type": "Ready", "status": "Unknown"}],
            },
        }
    )
    assert node.internal_ips == ("198.18.0.1",)
    assert node.addresses == ("198.18.0.1", "2001:db8::1")
    assert node.pod_cidrs == ("10.244.0.0/24",)
    assert node.ready is None
    pod = observe_pod(
        {
            "metadata": {"name": "s", "namespace": "lbd-system", "deletionTimestamp": "x"},
            "spec": {
                "nodeName": "n1",
                "containers": [{"ports": [{"name": "metrics", "containerPort": 7473}, {}]}],
            },
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    assert pod.ports == {"metrics": 7473}
    assert not pod.running  # being deleted
    assert observe_kube_proxy({"data": {"config.conf": "mode: IPVS\n"}}).mode == "ipvs"
    assert observe_kube_proxy({"data": {"config.conf": "[: x"}}).error
    assert observe_kube_proxy({}).error == "no data key config.conf"


@pytest.mark.parametrize(
    ("conf", "verdict"),
    [
        ("mode: ipvs\nipvs:\n  strictARP: false\n", Verdict.PROBLEM),
        ("mode: ipvs\n", Verdict.PROBLEM),
        ("mode: ipvs\nipvs:\n  strictARP: true\n", Verdict.OK),
        ("mode: ''\n", Verdict.OK),
        ("mode: nftables\n", Verdict.OK),
        ("- a list\n", Verdict.WARNING),
    ],
)
def test_kube_proxy_check(conf, verdict):
    snap = Snapshot(kube_proxy=observe_kube_proxy({"data": {"config.conf": conf}}))
    (finding,) = check_kube_proxy(snap)
    assert finding.verdict is verdict
    assert check_kube_proxy(Snapshot())[0].verdict is Verdict.SKIPPED


def test_speaker_metrics_parsed_from_the_real_registry():
    m = SpeakerMetrics()
    m.key_info.labels(key_id="0a0b0c0d", state="Current").set(1)
    m.key_info.labels(key_id="99999999", state="Retiring").set(1)
    m.heartbeats_dropped_total.labels(reason="KeyMismatch").inc(3)
    m.heartbeats_dropped_total.labels(reason="Replay").inc(10)
    got = parse_speaker_metrics(generate_latest(m.registry).decode())
    assert got == SpeakerKeys(3.0, frozenset({"0a0b0c0d"}))
    assert isinstance(parse_speaker_metrics("<html>hi</html>"), str)
    assert isinstance(parse_speaker_metrics("some_other_metric 1\n"), str)


def test_membership_check_unreachable_speaker_is_a_warning_not_a_pass():
    pod = observe_pod(
        {
            "metadata": {"name": "s1", "namespace": "lbd-system"},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    snap = Snapshot(speakers=(pod,))
    (finding,) = check_membership(snap, {"n1": "URLError: refused"})
    assert finding.verdict is Verdict.WARNING and "refused" in finding.message
    (finding,) = check_membership(snap, {"n1": SpeakerKeys(0, frozenset())})
    assert finding.verdict is Verdict.PROBLEM and "no membership key" in finding.message
    (finding,) = check_membership(snap, {"n1": SpeakerKeys(0, frozenset({"k"}))})
    assert finding.verdict is Verdict.OK
    assert finding.check is Check.MEMBERSHIP_KEY
    assert render([finding]).endswith("lbd doctor: 0 problems, 0 warnings, 1 ok, 0 skipped\n")


# --------------------------------------------------------------------------- README samples


def _console_block(command: str) -> list[str]:
    """The output lines of the README's console block that runs ``command``."""
    from pathlib import Path

    lines = (Path(__file__).resolve().parents[2] / "README.md").read_text().splitlines()
    start = lines.index(f"$ {command}") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    return lines[start:end]


def test_readme_status_sample_has_the_renderers_shape():
    """The sample was captured from a run; when the table changes, so must the sample."""
    sample = _console_block("lbd status")
    from lbd.k8s.service import observe_service

    # a report with a row in each section, rendered now
    snap = Snapshot(
        pools=(observe_pool(pool_obj("p", 1, 1)),),
        services=(
            observe_service(
                {
                    "metadata": {"name": "a", "namespace": "d"},
                    "spec": {"type": "LoadBalancer"},
                }
            ),
        ),
        l2statuses=(
            observe_l2status(
                {"metadata": {"name": "a", "namespace": "d"}, "status": {"node": "n"}}
            ),
        ),
        events=(
            observe_event(
                {"involvedObject": {"kind": "Service", "name": "a"}, "reason": "VIPConflict"}
            ),
        ),
    )
    rendered = render_table(build_status(snap)).splitlines()

    def shape(lines: list[str]) -> list[str]:
        """Section titles (without counts) and table headers."""
        out = []
        for i, line in enumerate(lines):
            if line and line.split(" (")[0].isupper() and (i == 0 or not lines[i - 1]):
                out.append(line.split(" (")[0])
                if i + 1 < len(lines) and lines[i + 1].split()[0].isupper():
                    out.append(" ".join(lines[i + 1].split()))
        return out

    assert shape(sample) == shape(rendered)
    usage = [ln for ln in sample if "[" in ln and "%" in ln]
    assert len(usage) == 3
    for line in usage:
        bar = line[line.index("[") : line.index("]") + 1]
        assert len(bar) == BAR_WIDTH + 2, line


def test_readme_doctor_sample_has_the_renderers_shape():
    sample = _console_block("lbd doctor --node-subnet 198.18.0.0/16")
    labels = {"ok", "WARNING", "PROBLEM", "skipped"}
    checks = {str(c) for c in Check}
    counts: dict[str, int] = dict.fromkeys(labels, 0)
    for line in sample[:-1]:
        words = line.split()
        if words[0] == "fix:":
            continue
        assert words[0] in labels and words[1] in checks, line
        counts[words[0]] += 1
    assert sample[-1] == (
        f"lbd doctor: {counts['PROBLEM']} problems, {counts['WARNING']} warnings, "
        f"{counts['ok']} ok, {counts['skipped']} skipped"
    )


def test_doctor_asks_each_running_speaker_through_the_pod_proxy():
    from lbd.tools.doctor_cli import speaker_metrics

    def pod(name: str, node: str, phase: str = "Running") -> Any:
        return observe_pod(
            {
                "metadata": {"name": name, "namespace": "lbd-system"},
                "spec": {
                    "nodeName": node,
                    "containers": [{"ports": [{"name": "metrics", "containerPort": 7999}]}],
                },
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]},
            }
        )

    m = SpeakerMetrics()
    m.key_info.labels(key_id="k1", state="Current").set(1)
    text = generate_latest(m.registry).decode()
    asked: list[str] = []

    def kube_text(path: str) -> str:
        asked.append(path)
        if "s2" in path:
            raise OSError("503 Service Unavailable: no endpoints")
        return text

    snap = Snapshot(speakers=(pod("s1", "n1"), pod("s2", "n2"), pod("s3", "n3", "Pending")))
    got = speaker_metrics(snap, "proxy", kube_text)
    assert sorted(asked) == [
        "/api/v1/namespaces/lbd-system/pods/s1:7999/proxy/metrics",
        "/api/v1/namespaces/lbd-system/pods/s2:7999/proxy/metrics",
    ]
    assert got["n1"] == SpeakerKeys(0.0, frozenset({"k1"}))
    assert got["n2"] == "OSError: 503 Service Unavailable: no endpoints"
    assert "n3" not in got  # not running: not asked
    assert speaker_metrics(snap, "none") == {}

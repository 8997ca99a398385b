"""Whole lab: a Service with an address says whether it is really announced (issue 14, pt 1).

Each reason is provoked as a user would meet it, on both control planes, and the test finds the
three things a user would look at: the Service's ``lbd.io/Announced`` condition, the Warning
Event, and the controller's ``lbd_services_unannounced{reason}`` gauge; then it fixes the cause
and finds the condition True again (docs/API.md). The owner's death moves the condition to the
new node; stopping every speaker gives ``NoLiveSpeaker`` once the lab's grace (3 s) is over.
"""

from __future__ import annotations

import re
import time
import urllib.request
from typing import Any

import pytest

from lbd.k8s.client import EVENTS, IPADDRESSPOOLS, L2ADVERTISEMENTS, NODES, SERVICES, Kube
from lbd.lab.cluster import bootstrap, probe, readiness, supervisor
from lbd.lab.cluster.lab import Lab, kill_node, restore_node
from lbd.lab.cluster.netns import call_in_netns
from lbd.lab.scenarios import scenario

from .conftest import LabFactory

pytestmark = [pytest.mark.needs_root]

ANNOUNCED = "lbd.io/Announced"
POOL_ANNOTATION = "lbd.io/address-pool"


@pytest.fixture(scope="module")
def lab(module_lab_factory: LabFactory) -> Lab:
    return module_lab_factory(nodes=3, tag="ann")


# -- what a user looks at ---------------------------------------------------------------------


def condition(kube: Kube, name: str) -> dict[str, Any] | None:
    svc = kube.get(SERVICES.path(namespace="default", name=name))
    for c in (svc.get("status") or {}).get("conditions") or []:
        if c.get("type") == ANNOUNCED:
            return dict(c)
    return None


def wait_condition(
    kube: Kube, name: str, status: str, reason: str, *, timeout: float = 10.0, also: str = ""
) -> dict[str, Any]:
    def shown() -> dict[str, Any] | None:
        c = condition(kube, name)
        if c is None or (c["status"], c["reason"]) != (status, reason):
            return None
        return c if also in c.get("message", "") else None

    try:
        return scenario.poll(shown, timeout=timeout, what=f"{name}: {ANNOUNCED}={status} {reason}")
    except Exception as exc:
        raise AssertionError(f"{exc}; it shows {condition(kube, name)}") from exc


def events(kube: Kube, name: str, reason: str) -> list[dict[str, Any]]:
    items = kube.get(EVENTS.path(namespace="default"))["items"]
    return [
        e
        for e in items
        if (e.get("involvedObject") or {}).get("name") == name and e.get("reason") == reason
    ]


def wait_event(kube: Kube, name: str, reason: str, text: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((e for e in events(kube, name, reason) if text in e["message"]), None)

    return scenario.poll(found, timeout=10.0, what=f"Event {reason} on {name} saying {text!r}")


def unannounced(lab: Lab, reason: str) -> float:
    """``lbd_services_unannounced{reason}`` as the leading controller exports it."""
    holder = bootstrap.leader(scenario.host_kube(lab)) or ""
    port = 7471 + int(holder.rsplit("-", 1)[-1])  # lbd-controller-I listens on 7471+I

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return str(r.read().decode())

    text = call_in_netns(lab.layout.control_plane.netns, scrape)
    match = re.search(rf'^lbd_services_unannounced{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else float("nan")


def wait_gauge(lab: Lab, reason: str, value: float) -> None:
    scenario.poll(
        lambda: unannounced(lab, reason) == value or None,
        timeout=10.0,
        what=f"lbd_services_unannounced{{reason={reason!r}}} == {value}",
    )


# -- setting the scene ------------------------------------------------------------------------


def pool(kube: Kube, name: str, cidr: str) -> None:
    kube.create(
        IPADDRESSPOOLS.path(),
        {
            "apiVersion": "lbd.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": name},
            "spec": {"addresses": [cidr]},
        },
    )


def advertisement(kube: Kube, name: str, pool_name: str, **spec: Any) -> None:
    kube.create(
        L2ADVERTISEMENTS.path(),
        {
            "apiVersion": "lbd.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": name},
            "spec": {"ipAddressPools": [pool_name], **spec},
        },
    )


def service_in(kube: Kube, name: str, pool_name: str | None = None) -> str:
    annotations = {POOL_ANNOTATION: pool_name} if pool_name else None
    scenario.create_echo_service(kube, name, annotations=annotations)
    (vip,) = scenario.wait_for_vips(kube, name)
    return vip


def owner_in(cond: dict[str, Any]) -> str:
    match = re.search(r"announced from (n\d+)", cond["message"])
    assert match, cond
    return match.group(1)


# -- the reasons ------------------------------------------------------------------------------


def test_no_advertisement_then_one_is_added(lab: Lab) -> None:
    kube = scenario.host_kube(lab)
    pool(kube, "ann-orphan", "198.18.101.0/28")
    vip = service_in(kube, "ann-noad", "ann-orphan")
    cond = wait_condition(kube, "ann-noad", "False", "NoAdvertisement")
    assert cond["message"].startswith("no L2Advertisement selects pool ann-orphan"), cond
    event = wait_event(kube, "ann-noad", "NotAnnounced", "NoAdvertisement")
    assert event["type"] == "Warning"
    wait_gauge(lab, "NoAdvertisement", 1.0)
    # the address is really not answered: what the condition warns about
    c = lab.data["client"]
    assert probe.arp_who_has(c["netns"], c["ifname"], c["mac"], c["ipv4"], vip, wait=1.0) == []
    advertisement(kube, "ann-orphan", "ann-orphan")
    cond = wait_condition(kube, "ann-noad", "True", "Announced", also=vip)
    assert re.search(r"announced from n\d on eth0$", cond["message"]), cond
    wait_event(kube, "ann-noad", "Announced", vip)
    wait_gauge(lab, "NoAdvertisement", 0.0)
    assert len(events(kube, "ann-noad", "NotAnnounced")) == 1  # once per change


def test_no_ready_endpoints_then_the_selector_is_fixed(lab: Lab) -> None:
    kube = scenario.host_kube(lab)
    svc = scenario.echo_service("ann-noeps")
    svc["spec"]["selector"] = {"app": "nothing-runs-this"}
    kube.create(SERVICES.path(namespace="default"), svc)
    scenario.wait_for_vips(kube, "ann-noeps")
    wait_condition(kube, "ann-noeps", "False", "NoReadyEndpoints")
    wait_event(kube, "ann-noeps", "NotAnnounced", "NoReadyEndpoints: the Service has no ready")
    wait_gauge(lab, "NoReadyEndpoints", 1.0)
    kube.patch(
        SERVICES.path(namespace="default", name="ann-noeps"),
        {"spec": {"selector": {"app": "echo"}}},
    )
    wait_condition(kube, "ann-noeps", "True", "Announced", timeout=15.0)
    wait_gauge(lab, "NoReadyEndpoints", 0.0)


def test_the_only_eligible_node_drained_then_undrained(lab: Lab) -> None:
    kube = scenario.host_kube(lab)
    pool(kube, "ann-solo", "198.18.101.16/28")
    advertisement(
        kube,
        "ann-solo",
        "ann-solo",
        nodeSelectors=[{"matchLabels": {"kubernetes.io/hostname": "n2"}}],
    )
    service_in(kube, "ann-drain", "ann-solo")
    cond = wait_condition(kube, "ann-drain", "True", "Announced", also="from n2")

    def drain(value: str | None) -> None:
        kube.patch(NODES.path(name="n2"), {"metadata": {"annotations": {"lbd.io/drain": value}}})

    drain("true")
    try:
        cond = wait_condition(kube, "ann-drain", "False", "NoEligibleNode")
        assert cond["message"] == (
            "no eligible node (n1: NoAdvertisement, n2: Drained, n3: NoAdvertisement)"
        ), cond
        wait_event(kube, "ann-drain", "NotAnnounced", "n2: Drained")
        wait_gauge(lab, "NoEligibleNode", 1.0)
    finally:
        drain(None)
    wait_condition(kube, "ann-drain", "True", "Announced", also="from n2")
    wait_event(kube, "ann-drain", "Announced", "from n2")
    wait_gauge(lab, "NoEligibleNode", 0.0)


def test_the_condition_follows_the_owner_when_it_dies(lab: Lab) -> None:
    kube = scenario.host_kube(lab)
    service_in(kube, "ann-move")
    owner = owner_in(wait_condition(kube, "ann-move", "True", "Announced"))

    def moved() -> dict[str, Any] | None:
        c = condition(kube, "ann-move")
        return c if c is not None and f"from {owner} " not in c["message"] else None

    started = time.monotonic()
    kill_node(lab, owner)
    try:
        cond = scenario.poll(
            moved,
            timeout=10.0,
            what=f"ann-move's condition naming another node than {owner}",
        )
        took = time.monotonic() - started
        print(f"condition moved from {owner} to {owner_in(cond)} in {took:.2f}s")
        assert cond["status"] == "True" and owner_in(cond) != owner
        # detection (0.4 s) + the new owner's ServiceL2Status + the controller's one write
        assert took < 2.0, f"the condition took {took:.2f}s to follow the VIP"
    finally:
        restore_node(lab, owner)
        readiness.speakers(lab.layout, 30.0)


def test_no_live_speaker_then_the_speakers_return(lab: Lab) -> None:
    kube = scenario.host_kube(lab)
    service_in(kube, "ann-web")
    wait_condition(kube, "ann-web", "True", "Announced")
    # a new Service is not said unannounced while its EndpointSlice and pool annotation land
    assert events(kube, "ann-web", "NotAnnounced") == []
    speakers = [f"speaker-{n['name']}" for n in lab.data["nodes"]]
    supervisor.request(lab.prefix, "stop", names=speakers)
    try:
        cond = wait_condition(kube, "ann-web", "False", "NoLiveSpeaker", timeout=3.0 + 5.0)
        assert "speaker Pods" in cond["message"] and "has been Ready" in cond["message"], cond
        wait_event(kube, "ann-web", "NotAnnounced", "NoLiveSpeaker")
        assert unannounced(lab, "NoLiveSpeaker") >= 1.0
    finally:
        supervisor.request(lab.prefix, "start", names=speakers)
    readiness.speakers(lab.layout, 30.0)
    wait_condition(kube, "ann-web", "True", "Announced")
    wait_event(kube, "ann-web", "Announced", "announced from n")
    wait_gauge(lab, "NoLiveSpeaker", 0.0)

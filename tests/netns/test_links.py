"""Interface selection (pure rules) and the netlink link monitor (in a namespace)."""

from __future__ import annotations

import ipaddress
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from lbd.net.links import (
    IFF_BROADCAST,
    IFF_LOWER_UP,
    IFF_NOARP,
    IFF_UP,
    Link,
    LinkMonitor,
    announce_capable,
    read_links,
    select_interfaces,
)
from tests.netns.conftest import Segment

UP = IFF_UP | IFF_LOWER_UP | IFF_BROADCAST


def link(name: str, *addrs: str, flags: int = UP, **kw: object) -> Link:
    return Link(
        name=name,
        index=hash(name) % 1000,
        flags=flags,
        addresses=tuple(ipaddress.ip_interface(a) for a in addrs),
        **kw,  # type: ignore[arg-type]
    )


LINKS = {
    "lo": link("lo", "127.0.0.1/8", "198.18.100.7/32", flags=IFF_UP | IFF_LOWER_UP | 0x8),
    "kube-ipvs0": link("kube-ipvs0", "198.18.100.7/32", flags=UP | IFF_NOARP, kind="dummy"),
    "eth0": link("eth0", "198.18.0.1/16", "2001:db8::1/64"),
    "eth1": link("eth1", "10.1.0.1/24"),
    "eth2": link("eth2"),
    "docker0": link("docker0", "172.17.0.1/16", kind="bridge"),
    "cali1234": link("cali1234", "fe80::1/64", kind="veth"),
    "bond-member": link("bond-member", master=7),
    "noarp0": link("noarp0", flags=UP | IFF_NOARP),
    "down0": link("down0", flags=IFF_UP | IFF_BROADCAST),  # no carrier
}


@pytest.mark.parametrize(
    ("vip", "wanted", "want"),
    [
        pytest.param("198.18.100.7", (), ("eth0",), id="subnet wins; VIP on lo/kube-ipvs0 not"),
        pytest.param("2001:db8::100:7", (), ("eth0",), id="IPv6 subnet"),
        pytest.param("203.0.113.9", (), ("eth0", "eth1", "eth2"), id="no subnet: capable ones"),
        pytest.param("198.18.100.7", ("eth2", "down0", "nope"), ("eth2",), id="advertised list"),
    ],
)
def test_select_interfaces(vip: str, wanted: tuple[str, ...], want: tuple[str, ...]) -> None:
    assert select_interfaces(vip, LINKS, wanted) == want


@pytest.mark.parametrize(
    ("name", "capable"),
    [
        ("eth0", True),
        ("eth2", True),
        ("lo", False),
        ("docker0", False),
        ("cali1234", False),
        ("bond-member", False),
        ("noarp0", False),
        ("down0", False),
    ],
)
def test_announce_capable_exclusions(name: str, capable: bool) -> None:
    assert announce_capable(LINKS[name]) is capable


def test_a_veth_with_a_real_address_may_announce() -> None:
    assert announce_capable(link("lab0", "198.18.0.9/16", kind="veth"))


def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.mark.needs_root
def test_monitor_sees_link_down_and_up(segment_factory: Callable[[list[str]], Segment]) -> None:
    seg = segment_factory(["node1"])
    changes: list[int] = []
    mon = LinkMonitor(on_change=lambda: changes.append(1))
    seg.call("node1", mon.start)
    try:
        assert mon.interfaces_up() == {"eth0"}
        assert mon.resolve("198.18.100.7", ()) == ("eth0",)
        seg.link("node1", up=False)
        assert wait_for(lambda: mon.interfaces_up() == frozenset())
        assert changes
        seg.link("node1", up=True)
        assert wait_for(lambda: mon.interfaces_up() == {"eth0"})
    finally:
        mon.stop()


@pytest.mark.needs_root
def test_monitor_sees_addresses_and_stops_promptly(
    segment_factory: Callable[[list[str]], Segment],
) -> None:
    seg = segment_factory(["node1"])
    mon = LinkMonitor(resync=3600.0)  # only notifications can explain a change seen here
    seg.call("node1", mon.start)
    try:
        assert mon.resolve("198.19.7.7", ()) == ("eth0",)  # no subnet match: capable ones
        # A second NIC (a veth pair inside the namespace) that gets the VIP's subnet: it wins.
        seg.ip("node1", "link", "add", "v9a", "type", "veth", "peer", "name", "v9b")
        seg.ip("node1", "link", "set", "v9b", "up")
        seg.ip("node1", "link", "set", "v9a", "up")
        seg.ip("node1", "addr", "add", "198.19.7.1/24", "dev", "v9a")
        assert wait_for(lambda: mon.resolve("198.19.7.7", ()) == ("v9a",))
        # Without the address, the veth is virtual again: back to eth0 alone.
        seg.ip("node1", "addr", "del", "198.19.7.1/24", "dev", "v9a")
        assert wait_for(lambda: mon.resolve("198.19.7.7", ()) == ("eth0",))
        assert mon.links()["v9a"].kind == "veth"
        seg.ip("node1", "addr", "add", "2001:db8:7::1/64", "dev", "eth0", "nodad")
        assert wait_for(
            lambda: ipaddress.ip_interface("2001:db8:7::1/64") in mon.links()["eth0"].addresses
        )
        assert mon.resolve("2001:db8:7::9", ()) == ("eth0",)
    finally:
        began = time.monotonic()
        mon.stop()
        stopped_in = time.monotonic() - began
    assert stopped_in < 1.0
    assert mon._thread is not None and not mon._thread.is_alive()


@pytest.mark.needs_root
def test_read_links_matches_the_namespace(segment_factory: Callable[[list[str]], Segment]) -> None:
    seg = segment_factory(["node1"])
    links = seg.call("node1", read_links)
    eth0 = links["eth0"]
    assert eth0.kind == "veth" and eth0.up and eth0.master is None
    assert eth0.mac == ":".join(f"{b:02x}" for b in seg["node1"].mac)
    assert {str(a) for a in eth0.addresses} >= {"198.18.0.1/16", "2001:db8::1/64"}
    assert set(links) == {"lo", "eth0"}
    bridge = netlink_in(seg.bridge_ns)
    assert bridge["p0"].master == bridge["br0"].index and bridge["br0"].kind == "bridge"


def netlink_in(ns: str) -> dict[str, Link]:
    from tests.netns.conftest import netns_call

    return netns_call(ns, read_links)


@pytest.mark.needs_root
def test_monitor_recovers_from_a_notification_overrun(
    segment_factory: Callable[[list[str]], Segment], caplog: pytest.LogCaptureFixture
) -> None:
    """A burst the kernel cannot queue loses notifications, never changes: the dump has them."""
    seg = segment_factory(["node1"])
    entered, release = threading.Event(), threading.Event()
    armed = False

    def on_change() -> None:
        if armed:
            entered.set()
            release.wait(10.0)

    mon = LinkMonitor(on_change=on_change, resync=3600.0)
    seg.call("node1", mon.start)
    try:
        armed = True
        seg.ip("node1", "addr", "add", "198.19.0.1/32", "dev", "eth0")
        assert entered.wait(3.0)  # the monitor thread is now stuck in the callback
        count = 3000  # far more notifications than the socket's receive buffer holds
        batch = "".join(
            f"addr add 198.19.{1 + i // 250}.{1 + i % 250}/32 dev eth0\n" for i in range(count)
        )
        subprocess.run(
            ["ip", "-n", seg["node1"].ns, "-batch", "-"], input=batch, text=True, check=True
        )
        armed = False
        release.set()
        assert wait_for(lambda: len(mon.links()["eth0"].addresses) >= count + 3, timeout=10.0)
        assert "resubscribing" not in caplog.text  # no error: dropped notifications are fine
        seg.link("node1", up=False)  # and the new subscription works
        assert wait_for(lambda: mon.interfaces_up() == frozenset())
    finally:
        release.set()
        mon.stop()

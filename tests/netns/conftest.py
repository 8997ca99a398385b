"""Network-namespace fixtures shared by the netns tests (and the benchmarks).

``segment_factory(["node1", "node2", "client"])`` builds one Ethernet segment: a namespace that
holds a Linux bridge, and one namespace per host, each with an ``eth0`` veth whose peer is a port
of the bridge. Every veth pair is created with both ends placed directly in their namespaces (the
root namespace's interfaces are never touched). Hosts get ``198.18.0.<i+1>/16`` and
``2001:db8::<i+1>/64`` (no DAD delay). Everything is deleted when the test ends, pass or fail.

Helpers run code *inside* a namespace: :func:`netns_call` runs a function on a fresh thread that
first enters the namespace (``setns`` is per thread, and threads and sockets created there stay
there), :meth:`Segment.ip` runs ``ip`` commands, :meth:`Segment.exec` any command.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(ns: str) -> None:
    """Move the *calling thread* into namespace ``ns``."""
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def netns_call(ns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` in namespace ``ns`` on a new thread and return its result (or raise)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            enter_netns(ns)
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, name=f"netns-{ns}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


@dataclass
class Host:
    name: str
    ns: str
    ifname: str
    mac: bytes
    ipv4: str
    ipv6: str
    index: int


@dataclass
class Segment:
    bridge_ns: str
    hosts: dict[str, Host] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def ip(self, host: str, *args: str) -> str:
        return run("ip", "-n", self.hosts[host].ns, *args).stdout

    def exec(self, host: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.hosts[host].ns, *cmd)

    def call(self, host: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return netns_call(self.hosts[host].ns, fn, *args, **kwargs)

    def link(self, host: str, up: bool) -> None:
        self.ip(host, "link", "set", self.hosts[host].ifname, "up" if up else "down")


def _read_mac(ns: str, ifname: str) -> bytes:
    out = run("ip", "-n", ns, "-o", "link", "show", ifname).stdout
    mac = out.split("link/ether ", 1)[1].split()[0]
    return bytes.fromhex(mac.replace(":", ""))


def build_segment(prefix: str, names: Sequence[str], created: list[str]) -> Segment:
    """Create the namespaces (recorded in ``created`` as soon as they exist, for cleanup)."""
    bridge = f"{prefix}b"
    run("ip", "netns", "add", bridge)
    created.append(bridge)
    run("ip", "-n", bridge, "link", "add", "br0", "type", "bridge")
    # No STP, no forwarding delay, no multicast snooping: a dumb, instant switch.
    run("ip", "-n", bridge, "link", "set", "br0", "type", "bridge", "stp_state", "0")
    run("ip", "-n", bridge, "link", "set", "br0", "type", "bridge", "forward_delay", "0")
    run("ip", "-n", bridge, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
    run("ip", "-n", bridge, "link", "set", "br0", "up")
    seg = Segment(bridge_ns=bridge)
    for i, name in enumerate(names):
        ns = f"{prefix}h{i}"
        run("ip", "netns", "add", ns)
        created.append(ns)
        port = f"p{i}"
        # Both ends go straight into their namespaces: nothing is configured in the root one.
        run(
            "ip", "link", "add", "name", port, "netns", bridge, "type", "veth",
            "peer", "name", "eth0", "netns", ns,
        )  # fmt: skip
        run("ip", "-n", bridge, "link", "set", port, "master", "br0", "up")
        ipv4, ipv6 = f"198.18.0.{i + 1}", f"2001:db8::{i + 1}"
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "addr", "add", f"{ipv4}/16", "dev", "eth0")
        run("ip", "-n", ns, "addr", "add", f"{ipv6}/64", "dev", "eth0", "nodad")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        seg.hosts[name] = Host(name, ns, "eth0", _read_mac(ns, "eth0"), ipv4, ipv6, i)
    _wait_forwarding(seg)
    return seg


def _link_states(ns: str, *args: str) -> list[tuple[str, str]]:
    out = json.loads(run("ip", "-n", ns, "-d", "-j", "link", "show", *args).stdout)
    return [(link["ifname"], _port_state(link)) for link in out]


def _port_state(link: dict[str, Any]) -> str:
    slave = link.get("linkinfo", {}).get("info_slave_data", {})
    return f"{link['operstate']}/{slave.get('state', 'forwarding')}"


def _wait_forwarding(seg: Segment, timeout: float = 10.0) -> None:
    """Wait until every bridge port forwards and every host's eth0 is operationally up.

    The kernel learns of a veth's carrier through its link-watch work, which runs at most once a
    second; until then the bridge port is disabled and drops frames. On a loaded machine a test
    that sent a request at once could miss a host entirely (a CI run saw a responder receive no
    ARP request at all), so a segment is handed out only once it is a working switch.
    """
    deadline = time.monotonic() + timeout
    while True:
        states = _link_states(seg.bridge_ns, "master", "br0")
        states += [(h.name, _port_state(_one(h.ns, h.ifname))) for h in seg.hosts.values()]
        if all(state == "UP/forwarding" for _, state in states):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"segment not forwarding after {timeout} s: {states}")
        time.sleep(0.02)


def _one(ns: str, ifname: str) -> dict[str, Any]:
    out: list[dict[str, Any]] = json.loads(run("ip", "-n", ns, "-j", "link", "show", ifname).stdout)
    return out[0]


@pytest.fixture
def segment_factory(netns_prefix: str) -> Iterator[Callable[[Sequence[str]], Segment]]:
    """Build segments on demand; all their namespaces are deleted at the end of the test."""
    created: list[str] = []
    count = 0

    def make(names: Sequence[str]) -> Segment:
        nonlocal count
        count += 1
        return build_segment(f"{netns_prefix}{count}", names, created)

    try:
        yield make
    finally:
        for ns in reversed(created):
            run("ip", "netns", "del", ns, check=False)


@pytest.fixture
def segment(segment_factory: Callable[[Sequence[str]], Segment]) -> Segment:
    """The usual lab: three speaker nodes and a client on one segment."""
    return segment_factory(["node1", "node2", "node3", "client"])

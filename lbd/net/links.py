"""This node's interfaces: which are up, which may announce a VIP, and netlink change events.

Default interface rule (SPEAKER.md), implemented by :func:`select_interfaces`:

1. an ``L2Advertisement.interfaces`` list wins: those of its interfaces that are up;
2. otherwise the interfaces that are up and hold an address whose subnet contains the VIP;
3. otherwise every *announce-capable* interface: up, broadcast-capable, ARP enabled (not
   ``NOARP``), not enslaved (a bond or bridge member answers through its master), not loopback,
   and not virtual: its name does not start with one of :data:`EXCLUDED_PREFIXES` (container,
   CNI, tunnel and kube-proxy devices; ``--exclude-interfaces`` replaces the list), and its link
   kind is not in :data:`EXCLUDED_KINDS` unless it carries a non-link-local address (a lab
   node whose only NIC is a veth must still announce).

:class:`LinkMonitor` keeps a snapshot of the links, refreshed on every rtnetlink link/address
notification (:mod:`lbd.net.netlink`), and calls ``on_change`` when the snapshot changes so that
an interface going down is reported in the very next heartbeat.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from lbd.net.netlink import dump_addresses, dump_links

log = logging.getLogger(__name__)

IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_LOOPBACK = 0x8
IFF_NOARP = 0x80
IFF_LOWER_UP = 0x10000
NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100

EXCLUDED_PREFIXES: tuple[str, ...] = (
    "lo", "veth", "docker", "br-", "cni", "cali", "flannel", "cilium", "lxc", "kube-ipvs",
    "kube-bridge", "nodelocaldns", "weave", "vxlan", "genev", "tunl", "tun", "tap", "wg",
    "virbr", "vnet", "dummy", "antrea", "ovs-", "podman", "nerdctl",
)  # fmt: skip
EXCLUDED_KINDS: frozenset[str] = frozenset(
    {"veth", "vxlan", "geneve", "dummy", "tun", "ipip", "sit", "gre", "gretap", "ip6tnl",
     "ip6gre", "wireguard", "ipvlan", "vrf", "ifb", "nlmon", "openvswitch"}
)  # fmt: skip

Address = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    mac: str = ""
    flags: int = 0
    master: int | None = None
    kind: str | None = None
    addresses: tuple[Address, ...] = ()

    @property
    def up(self) -> bool:
        """Administratively up with carrier (a veth whose peer is down is not up)."""
        return bool(self.flags & IFF_UP) and bool(self.flags & IFF_LOWER_UP)

    @property
    def has_global_address(self) -> bool:
        return any(not (a.ip.is_link_local or a.ip.is_loopback) for a in self.addresses)


def _plausible(link: Link, exclude: tuple[str, ...]) -> bool:
    """Up, broadcast, ARP-enabled, not loopback, not enslaved, not an excluded name."""
    if not link.up or link.flags & (IFF_NOARP | IFF_LOOPBACK) or not link.flags & IFF_BROADCAST:
        return False
    return link.master is None and not link.name.startswith(exclude)


def announce_capable(link: Link, exclude: tuple[str, ...] = EXCLUDED_PREFIXES) -> bool:
    """Rule 3 of the module docstring."""
    if not _plausible(link, exclude):
        return False
    # A virtual kind is fine when it carries a real address: a lab node's only NIC is a veth.
    return (link.kind or "") not in EXCLUDED_KINDS or link.has_global_address


def select_interfaces(
    vip: str,
    links: Mapping[str, Link],
    wanted: Iterable[str] = (),
    exclude: tuple[str, ...] = EXCLUDED_PREFIXES,
) -> tuple[str, ...]:
    """Interfaces to announce ``vip`` on (sorted); empty when none qualifies."""
    wanted = tuple(wanted)
    if wanted:
        return tuple(sorted(n for n in set(wanted) if n in links and links[n].up))
    addr = ipaddress.ip_address(vip)
    # Rule 2 skips loopback, NOARP and excluded devices too: lo or kube-ipvs0 may hold the VIP
    # itself (as a /32), which must not make them "the interface in the VIP's subnet".
    in_subnet = sorted(
        link.name
        for link in links.values()
        if _plausible(link, exclude)
        and any(a.version == addr.version and addr in a.network for a in link.addresses)
    )
    if in_subnet:
        return tuple(in_subnet)
    return tuple(sorted(n for n, link in links.items() if announce_capable(link, exclude)))


def read_links() -> dict[str, Link]:
    """Snapshot every link of this (thread's) namespace and its addresses via rtnetlink."""
    addrs: dict[int, list[Address]] = {}
    for a in dump_addresses():
        addrs.setdefault(a.index, []).append(a.address)
    return {
        raw.name: Link(
            name=raw.name,
            index=raw.index,
            mac=raw.mac,
            flags=raw.flags,
            master=raw.master,
            kind=raw.kind,
            addresses=tuple(addrs.get(raw.index, ())),
        )
        for raw in dump_links()
    }


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:  # overrun: messages lost, the dump recovers
                continue
            raise


class LinkMonitor:
    """Current links of this namespace, kept fresh by netlink notifications."""

    def __init__(
        self,
        *,
        on_change: Callable[[], None] | None = None,
        exclude: Iterable[str] = EXCLUDED_PREFIXES,
        resync: float = 10.0,
    ) -> None:
        self.on_change = on_change
        self.exclude = tuple(exclude)
        self.resync = resync
        self._links: dict[str, Link] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = -1, -1

    def start(self) -> None:
        """Subscribe to netlink (in the calling thread's namespace), snapshot, start watching.

        The subscription is a plain ``AF_NETLINK`` socket used only as a doorbell: any
        link/address message triggers a full dump (:mod:`lbd.net.netlink`), which is simpler and
        more robust than applying deltas (and an overrun just means one more dump).
        """
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        sock.setblocking(False)
        self._sock = sock
        self._wake_r, self._wake_w = os.pipe()
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="link-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._sock is not None:
            self._sock.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def links(self) -> Mapping[str, Link]:
        with self._lock:
            return dict(self._links)

    def interfaces_up(self) -> frozenset[str]:
        """Announce-capable interfaces that are up (what heartbeats report)."""
        return frozenset(
            n for n, link in self.links().items() if announce_capable(link, self.exclude)
        )

    def resolve(self, vip: str, wanted: tuple[str, ...]) -> tuple[str, ...]:
        """Interfaces to answer ``vip`` on (``wanted`` from the advertisement, () = default)."""
        return select_interfaces(vip, self.links(), wanted, self.exclude)

    def refresh(self) -> bool:
        """Re-read the links now; True if anything changed (then ``on_change`` was called)."""
        links = read_links()
        with self._lock:
            changed = links != self._links
            self._links = links
        if changed and self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("link on_change callback failed")
        return changed

    def _run(self) -> None:
        assert self._sock is not None
        sock = self._sock
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                timeout = max(0.0, last + self.resync - time.monotonic())
                ready, _, _ = select.select([sock.fileno(), self._wake_r], [], [], timeout)
                if self._stop.is_set():
                    break
                if ready:
                    _drain(sock)  # the dump below is the truth
                if ready or time.monotonic() - last >= self.resync:
                    last = time.monotonic()
                    self.refresh()
            except InterruptedError:
                continue
            except Exception:  # netlink overrun (ENOBUFS) or a parse error: resync and go on
                log.exception("link monitor error; resyncing")
                self._stop.wait(0.1)
                try:
                    self.refresh()
                except Exception:
                    log.exception("link resync failed")

"""This node's interfaces: which are up, which may announce a VIP, and netlink change events.

Default interface rule (docs/SPEAKER.md), implemented by :func:`select_interfaces`:

1. an ``L2Advertisement.interfaces`` list wins: those of its interfaces that are up;
2. otherwise the interfaces that are up and hold an address whose subnet contains the VIP;
3. otherwise every *announce-capable* interface: up, broadcast-capable, ARP enabled (not
   ``NOARP``), not enslaved (a bond or bridge member answers through its master), not loopback,
   and not virtual: its name does not start with one of :data:`EXCLUDED_PREFIXES` (container,
   CNI, tunnel and kube-proxy devices; ``--interfaces-exclude`` adds prefixes to the list), and
   its link kind is not in :data:`EXCLUDED_KINDS` unless it carries a non-link-local address (a lab
   node whose only NIC is a veth must still announce).

:class:`LinkMonitor` keeps a snapshot of the links, refreshed on every rtnetlink link/address
notification, and calls ``on_change`` when the snapshot changes so that an interface going down
is reported in the very next heartbeat.

Netlink is spoken through pyroute2's ``IPRoute``. Its sync API keeps the socket and the asyncio
event loop *per thread*, so each ``IPRoute`` here is created, used and closed by one thread: the
dumps open a short-lived one in the calling thread (hence in that thread's network namespace),
and the monitor thread owns the subscription. A netlink socket lives in the namespace of the
thread that opens it, and a thread starts in the namespace of the thread that starts it, so a
monitor started inside a namespace watches that namespace.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute, NetlinkDumpInterrupted
from pyroute2.netlink import NETLINK_NO_ENOBUFS, SOL_NETLINK
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK

log = logging.getLogger(__name__)

IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_LOOPBACK = 0x8
IFF_NOARP = 0x80
IFF_LOWER_UP = 0x10000
GROUPS: int = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
DUMP_ATTEMPTS = 5  # a dump interrupted by a concurrent change (NLM_F_DUMP_INTR) is retried

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


def _address(msg: Any) -> Address | None:
    """An ``RTM_NEWADDR`` message as an interface address (None if not IPv4/IPv6)."""
    if msg["family"] not in (socket.AF_INET, socket.AF_INET6):
        return None
    # IFA_LOCAL is the interface's own address on point-to-point links; prefer it.
    raw = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
    if not raw:
        return None
    try:
        return ipaddress.ip_interface(f"{raw}/{int(msg['prefixlen'])}")
    except ValueError:
        return None


def _link(msg: Any, addresses: Mapping[int, list[Address]]) -> Link:
    index = int(msg["index"])
    master = msg.get("IFLA_MASTER")
    kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return Link(
        name=str(msg.get("IFLA_IFNAME") or ""),
        index=index,
        mac=str(msg.get("IFLA_ADDRESS") or ""),
        flags=int(msg["flags"]),
        master=int(master) if master else None,
        kind=str(kind) if kind else None,
        addresses=tuple(addresses.get(index, ())),
    )


def _snapshot(ipr: Any) -> dict[str, Link]:
    addrs: dict[int, list[Address]] = {}
    for msg in ipr.get_addr():
        addr = _address(msg)
        if addr is not None:
            addrs.setdefault(int(msg["index"]), []).append(addr)
    links = (_link(msg, addrs) for msg in ipr.get_links())
    return {link.name: link for link in links}


def read_links() -> dict[str, Link]:
    """Snapshot every link of this (thread's) namespace and its addresses via rtnetlink."""
    with IPRoute() as ipr:
        for _ in range(DUMP_ATTEMPTS - 1):
            try:
                return _snapshot(ipr)
            except NetlinkDumpInterrupted:
                continue
        return _snapshot(ipr)  # the last attempt raises its interruption


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
        self._wake_r, self._wake_w = -1, -1

    def start(self) -> None:
        """Subscribe to netlink (in the calling thread's namespace), snapshot, start watching.

        The subscription is used only as a doorbell: any link/address message triggers a full
        dump, which is simpler and more robust than applying deltas (and an overrun just means
        one more dump). The monitor thread subscribes before the first dump, so no change can
        fall between the two; an error opening the subscription is raised here.
        """
        self._wake_r, self._wake_w = os.pipe()
        subscribed = threading.Event()
        failure: list[Exception] = []
        self._thread = threading.Thread(
            target=self._run, args=(subscribed, failure), name="link-monitor", daemon=True
        )
        self._thread.start()
        subscribed.wait()
        try:
            if failure:
                raise failure[0]
            self.refresh()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stop.set()
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            if self._thread.is_alive():  # keep its pipe open rather than close it under it
                log.warning("link monitor thread did not stop within 2 s")
                return
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

    # -- the monitor thread --------------------------------------------------------------
    @staticmethod
    def _subscribe() -> Any:
        ipr = IPRoute()
        try:
            # A doorbell needs no lost-message report: the kernel drops notifications only
            # while unread ones are queued, so the dump after reading those sees the dropped
            # changes too. (An ENOBUFS would also leave pyroute2's socket failed for good.)
            ipr.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            ipr.bind(groups=GROUPS)
        except BaseException:
            _close(ipr)
            raise
        return ipr

    @staticmethod
    def _ring(ipr: Any) -> None:
        """Consume the pending notifications (their content is not needed: the dump follows).

        ``get()`` returns one datagram's messages; reading on while the socket stays readable
        turns a burst of changes into one dump instead of one per message.
        """
        ipr.get()
        for _ in range(10_000):
            if not select.select([ipr.fileno()], [], [], 0)[0]:
                return
            ipr.get()

    def _run(self, subscribed: threading.Event, failure: list[Exception]) -> None:
        try:
            ipr: Any = self._subscribe()
        except Exception as exc:
            failure.append(exc)
            return
        finally:
            subscribed.set()
        last = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    if ipr is None:  # reopen after an error, then resync
                        ipr = self._subscribe()
                        last = time.monotonic()
                        self.refresh()
                        continue
                    timeout = max(0.0, last + self.resync - time.monotonic())
                    fd = ipr.fileno()
                    ready, _, _ = select.select([fd, self._wake_r], [], [], timeout)
                    if self._stop.is_set():
                        break
                    if fd in ready:
                        self._ring(ipr)
                    if ready or time.monotonic() - last >= self.resync:
                        last = time.monotonic()
                        self.refresh()
                except Exception:
                    # pyroute2 keeps a socket that saw an error failed for good: drop it, and
                    # the next turn subscribes again and dumps (nothing is lost).
                    log.exception("link monitor error; resubscribing")
                    backoff = 1.0 if ipr is None else 0.1  # a failing reopen: do not spin
                    if ipr is not None:
                        _close(ipr)
                        ipr = None
                    self._stop.wait(backoff)
        finally:
            if ipr is not None:
                _close(ipr)


def _close(ipr: Any) -> None:
    """Close an ``IPRoute``; one whose socket failed may raise that error again while closing."""
    try:
        ipr.close()
    except Exception:
        log.debug("closing a failed netlink socket", exc_info=True)

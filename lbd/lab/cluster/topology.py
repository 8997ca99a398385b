"""Build and tear down the lab's namespaces, bridge and veth links with pyroute2.

Nothing is configured in the root namespace: each veth pair is created *inside* the switch
namespace with its peer placed directly in the member's namespace (netlink allows naming the
peer's namespace in the same request), so no link ever exists in the root namespace, not even
for a moment. The switch is a plain Linux bridge without STP (ports forward at once) and with
multicast snooping off, so IPv6 solicited-node multicast (NDP) reaches every port without
depending on MLD reports.

Sysctls (per namespace): IPv6 duplicate address detection is off, otherwise an address is
unusable for a second or two after ``up`` and NDP answers from the speaker race the kernel's DAD.
The ARP sysctls of a node (``arp_ignore``/``arp_announce``) are deliberately *not* set here: the
kube-proxy stand-in sets them, as kube-proxy does with strictARP.

Teardown works from the prefix alone (:func:`destroy`), so it also cleans up after a crash: it
kills every process inside the lab's namespaces (they would keep a namespace alive after its name
is removed) and deletes the namespaces, which deletes the links in them.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time

from pyroute2 import IPRoute, netns

from lbd.lab.cluster.layout import BRIDGE, Layout, Member
from lbd.lab.cluster.netns import (
    kill_all,
    namespaces_with_prefix,
    pids_in_namespaces,
    set_sysctls,
)

log = logging.getLogger(__name__)

_NS_SYSCTLS = {
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
    # Router solicitations from every member are noise on the segment: there is no router.
    "net.ipv6.conf.default.router_solicitations": "0",
}


class TopologyError(RuntimeError):
    """The topology could not be built (the message says which step failed)."""


def _switch_port(member: Member) -> str:
    """Name of the member's port on the bridge (inside the switch namespace)."""
    return member.name


def build(layout: Layout) -> None:
    """Create every namespace, the bridge, the veth links, addresses and sysctls.

    Raises :class:`TopologyError` if any namespace of this prefix already exists; the caller is
    expected to :func:`destroy` on failure.
    """
    existing = namespaces_with_prefix(layout.prefix)
    if existing:
        raise TopologyError(
            f"prefix: namespaces of lab {layout.prefix!r} already exist ({', '.join(existing)}); "
            f"run `lbd lab down --prefix {layout.prefix}` first"
        )
    for name in layout.namespaces:
        netns.create(name)
    for name in layout.namespaces:
        set_sysctls(name, _NS_SYSCTLS)
    with IPRoute(netns=layout.switch_netns) as sw:
        sw.link("add", ifname=BRIDGE, kind="bridge", br_stp_state=0, br_mcast_snooping=0)
        bridge = sw.link_lookup(ifname=BRIDGE)[0]
        sw.link("set", index=bridge, state="up")
        for member in layout.members:
            port = _switch_port(member)
            sw.link(
                "add",
                ifname=port,
                kind="veth",
                peer={"ifname": member.ifname, "net_ns_fd": member.netns, "address": member.mac},
            )
            index = sw.link_lookup(ifname=port)[0]
            sw.link("set", index=index, master=bridge)
            sw.link("set", index=index, state="up")
    for member in layout.members:
        _configure_member(member)


def _configure_member(member: Member) -> None:
    with IPRoute(netns=member.netns) as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        eth = ipr.link_lookup(ifname=member.ifname)[0]
        ipr.addr("add", index=eth, address=member.ipv4, prefixlen=16)
        ipr.addr("add", index=eth, address=member.ipv6, prefixlen=64)
        ipr.link("set", index=eth, state="up")


def set_switch_port(layout: Layout, member: Member, *, up: bool) -> None:
    """Plug or unplug ``member``'s cable: its port on the bridge goes up or down.

    The member's own ``eth0`` loses carrier, exactly as when a cable is pulled, while its
    addresses and routes stay, so plugging it back needs no reconfiguration.
    """
    with IPRoute(netns=layout.switch_netns) as sw:
        index = sw.link_lookup(ifname=_switch_port(member))[0]
        sw.link("set", index=index, state="up" if up else "down")


def switch_port_up(layout: Layout, member: Member) -> bool:
    with IPRoute(netns=layout.switch_netns) as sw:
        link = sw.get_links(sw.link_lookup(ifname=_switch_port(member))[0])[0]
        return bool(link["flags"] & 1)  # IFF_UP


def destroy(prefix: str, *, timeout: float = 5.0) -> list[str]:
    """Remove every namespace ``<prefix>-*`` and kill every process inside them.

    Idempotent: returns the namespaces that were removed (empty when nothing was left).
    """
    names = namespaces_with_prefix(prefix)
    if not names:
        return []
    deadline = time.monotonic() + timeout
    while True:
        pids = pids_in_namespaces(names)
        if not pids:
            break
        kill_all(pids, signal.SIGKILL)
        if time.monotonic() > deadline:
            log.warning("processes survive in lab namespaces", extra={"count": len(pids)})
            break
        time.sleep(0.02)  # give the kernel a moment to reap before looking again
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            netns.remove(name)
    return names

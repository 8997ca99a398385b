"""A pod's network: its own namespace, a veth to its node, routed (no bridge), as a CNI would.

The lab's kubelet (:mod:`lbd.lab.standins.kubelet`) calls :func:`attach` for each pod it runs
and :func:`detach` when the pod goes. What a pod in slot ``K`` of node ``nI`` gets
(addresses: :mod:`.layout`):

- namespace ``<prefix>-nIpK`` with ``eth0`` holding the pod's two addresses as /32 and /128;
- a default route to its node *through the node's own address* (``198.18.0.1X`` and
  ``2001:db8:18::1X``, on-link on ``eth0``), so no gateway address outside the lab's ranges is
  needed: the node answers ARP for its own address on any interface (``arp_ignore=0``, the
  default), and for IPv6, which answers Neighbor Solicitations only for addresses of the
  receiving interface, the node's veth gets a proxy-NDP entry for it;
- on the node: ``podK`` (the veth's node end) without any address of its own, and a host route
  to each pod address through it. With no IPv4 address on the veth, kube-proxy's masquerade
  (``externalTrafficPolicy: Cluster``) rewrites the source to the node's address (``eth0``'s),
  which is what the pod should see: "the node's".

Between nodes, each node gets a route to every other node's pod ranges via that node
(:func:`route_pod_ranges`), as a routed CNI without encapsulation (kube-router, Calico in BGP
mode) installs. Forwarding is on in node namespaces (:data:`NODE_SYSCTLS`).

Must run in the *node's* network namespace and the host's mount namespace (not under
``ip netns exec``, whose private mounts would hide the pod namespaces it names from everyone
else): the supervisor starts the kubelet with ``nsenter --net`` for that reason.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from dataclasses import dataclass

from pyroute2 import IPRoute, NetlinkError, netns

from lbd.lab.cluster.layout import Member
from lbd.lab.cluster.netns import kill_all, pids_in_namespaces, set_sysctls

log = logging.getLogger(__name__)

NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
}
POD_SYSCTLS = {
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.default.router_solicitations": "0",
}
POD_IFNAME = "eth0"


@dataclass(frozen=True)
class PodNet:
    """Where a pod lives: its slot, namespace, addresses and the node end of its veth."""

    slot: int
    netns: str
    ipv4: str
    ipv6: str
    host_ifname: str

    @property
    def ips(self) -> tuple[str, str]:
        return (self.ipv4, self.ipv6)


def pod_net(prefix: str, node: Member, slot: int) -> PodNet:
    ipv4, ipv6 = node.pod_addresses(slot)
    return PodNet(slot, node.pod_netns(prefix, slot), ipv4, ipv6, f"pod{slot}")


def _ignore_exists(exc: NetlinkError) -> None:
    if exc.code != errno.EEXIST:
        raise exc


def attach(prefix: str, node: Member, slot: int) -> PodNet:
    """Create (or complete) the pod's namespace, veth, addresses and routes; idempotent."""
    pod = pod_net(prefix, node, slot)
    if pod.netns not in netns.listnetns():
        netns.create(pod.netns)
    set_sysctls(pod.netns, POD_SYSCTLS)
    with IPRoute() as host:
        if not host.link_lookup(ifname=pod.host_ifname):
            host.link(
                "add",
                ifname=pod.host_ifname,
                kind="veth",
                peer={"ifname": POD_IFNAME, "net_ns_fd": pod.netns},
            )
        index = host.link_lookup(ifname=pod.host_ifname)[0]
        host.link("set", index=index, state="up")
    # Proxy NDP for the node's address on this veth (see the module docstring); per interface.
    set_sysctls(node.netns, {f"net.ipv6.conf.{pod.host_ifname}.proxy_ndp": "1"})
    with IPRoute() as host:
        index = host.link_lookup(ifname=pod.host_ifname)[0]
        for address in pod.ips:
            bits = 128 if ":" in address else 32
            try:
                host.route("add", dst=f"{address}/{bits}", oif=index, scope=253)  # link
            except NetlinkError as exc:
                _ignore_exists(exc)
        try:
            host.neigh("add", dst=node.ipv6, ifindex=index, flags=0x08, family=10)  # NTF_PROXY
        except NetlinkError as exc:
            _ignore_exists(exc)
    with IPRoute(netns=pod.netns) as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        eth = ipr.link_lookup(ifname=POD_IFNAME)[0]
        ipr.link("set", index=eth, state="up")
        for address in pod.ips:
            try:
                ipr.addr("add", index=eth, address=address, prefixlen=128 if ":" in address else 32)
            except NetlinkError as exc:
                _ignore_exists(exc)
        for gateway in (node.ipv4, node.ipv6):
            bits = 128 if ":" in gateway else 32
            family = 10 if ":" in gateway else 2
            for route in (
                {"dst": f"{gateway}/{bits}", "oif": eth, "scope": 253},
                {"dst": "default", "gateway": gateway, "oif": eth, "family": family},
            ):
                try:
                    ipr.route("add", **route)
                except NetlinkError as exc:
                    _ignore_exists(exc)
    return pod


def detach(pod_netns: str) -> None:
    """Remove a pod's namespace (its veth goes with it); kills what still runs inside."""
    with contextlib.suppress(OSError):
        kill_all(pids_in_namespaces([pod_netns]))
    with contextlib.suppress(FileNotFoundError, OSError):
        netns.remove(pod_netns)


def pod_namespaces(prefix: str, node: Member) -> dict[int, str]:
    """Slot -> namespace of every pod namespace of ``node`` that exists now."""
    stem = f"{prefix}-{node.name}p"
    found: dict[int, str] = {}
    for name in netns.listnetns():
        rest = name.removeprefix(stem)
        if rest != name and rest.isdigit():
            found[int(rest)] = name
    return found


def prepare_node(node: Member) -> None:
    """What the node's namespace needs for routed pods: forwarding on."""
    set_sysctls(node.netns, NODE_SYSCTLS)


def route_pod_ranges(node: Member, others: tuple[Member, ...]) -> None:
    """In ``node``'s namespace: every other node's pod ranges via that node (idempotent)."""
    with IPRoute(netns=node.netns) as ipr:
        eth = ipr.link_lookup(ifname=node.ifname)[0]
        for other in others:
            if other.name == node.name:
                continue
            for cidr, gateway in zip(other.pod_cidrs(), (other.ipv4, other.ipv6), strict=True):
                try:
                    ipr.route("add", dst=cidr, gateway=gateway, oif=eth)
                except NetlinkError as exc:
                    _ignore_exists(exc)

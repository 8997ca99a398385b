"""The lab's layout: every name, address and MAC, computed before anything is created.

Pure and deterministic, so that ``up``, ``down``, the tests and the demo agree on names without
talking to each other, and so that a crashed lab can be cleaned up from its prefix alone.

Addressing (docs/LAB.md): the switch segment is 198.18.0.0/16 and 2001:db8:18::/64; the API
server is 198.18.0.1, node ``nI`` is 198.18.0.(10+I), the client 198.18.0.100. IPv6 addresses
mirror the IPv4 host part written in decimal (``n1`` = ``2001:db8:18::11``) so that they are
easy to read side by side. MACs are locally administered and embed the IPv4 address
(``02:00:c6:12:00:0b`` is 198.18.0.11), so a MAC in a capture or an ARP reply says which member
it is.

Namespace names are ``<prefix>-sw`` (the bridge), ``<prefix>-cp``, ``<prefix>-nI`` and
``<prefix>-c1``; Linux limits interface and (by our convention) namespace names to 15 characters,
which bounds the prefix length. Pods of the real lab (docs/LAB.md) live in ``<prefix>-nIpK``
(node ``nI``, slot ``K``), which stays under the lab's prefix so that ``down`` finds them.

The real control plane needs two more ranges, both inside 198.18.0.0/15 and 2001:db8::/32 and
outside the switch segment: Service ClusterIPs in 198.19.0.0/17 and 2001:db8:19::/112, pods in
198.19.128.0/17 and 2001:db8:1a::/48. Node ``nI`` gets the pod ranges 198.19.(128+I).0/24 and
2001:db8:1a:I::/64 (``I`` written in decimal, like the node addresses), and the pod in slot ``K``
of that node the addresses ``.(10+K)`` and ``::(10+K)`` in them (``198.19.129.11`` and
``2001:db8:1a:1::11`` for the first pod of ``n1``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

SUBNET4 = ipaddress.IPv4Network("198.18.0.0/16")
SUBNET6 = ipaddress.IPv6Network("2001:db8:18::/64")
POOL4 = "198.18.100.0/24"
POOL6 = "2001:db8:18::100:0/120"
API_IPV4 = "198.18.0.1"
API_PORT = 6443
CLIENT_HOST = 100
FIRST_NODE_HOST = 11
MAX_NODES = CLIENT_HOST - FIRST_NODE_HOST  # .11 .. .99
MAX_PREFIX_LEN = 10  # "<prefix>-n89" must fit in 15 characters
IFNAME = "eth0"
BRIDGE = "br0"
SERVICE_CIDRS = ("198.19.0.0/17", "2001:db8:19::/112")
POD_CIDRS = ("198.19.128.0/17", "2001:db8:1a::/48")
FIRST_POD_HOST = 10  # the pod in slot K has host part 10+K
MAX_PODS_PER_NODE = 200  # .11 .. .210 in the node's /24

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]*$")


class Role(StrEnum):
    """What a lab member is for."""

    CONTROL_PLANE = "control-plane"
    NODE = "node"
    CLIENT = "client"


class LayoutError(ValueError):
    """A lab parameter is invalid; the message names the parameter and the reason."""


@dataclass(frozen=True)
class Member:
    """One namespace attached to the switch: its name, netns, addresses and MAC on ``eth0``."""

    name: str  # "cp", "n1", "c1"; for nodes this is the Kubernetes Node name
    role: Role
    netns: str
    ipv4: str
    ipv6: str
    mac: str
    ifname: str = IFNAME
    index: int = 0  # nodes: I of nI (their pod ranges derive from it); 0 for the others

    def pod_cidrs(self) -> tuple[str, str]:
        """The node's pod ranges (IPv4 /24, IPv6 /64), see the module docstring."""
        if self.role is not Role.NODE:
            raise LayoutError(f"node: {self.name} is not a node and has no pod range")
        return (f"198.19.{128 + self.index}.0/24", f"2001:db8:1a:{self.index}::/64")

    def pod_addresses(self, slot: int) -> tuple[str, str]:
        """The IPv4 and IPv6 address of the pod in ``slot`` (1..) on this node."""
        if not 1 <= slot <= MAX_PODS_PER_NODE:
            raise LayoutError(f"slot: {slot} is out of range (1..{MAX_PODS_PER_NODE})")
        v4, v6 = self.pod_cidrs()
        host = FIRST_POD_HOST + slot
        return (
            str(ipaddress.IPv4Network(v4).network_address + host),
            str(ipaddress.IPv6Address(f"{v6.split('::')[0]}::{host}")),
        )

    def pod_netns(self, prefix: str, slot: int) -> str:
        """The network namespace of the pod in ``slot`` on this node."""
        return f"{prefix}-{self.name}p{slot}"

    def pod_slot(self, address: str) -> int | None:
        """The slot of the pod with ``address`` on this node, None if it is not one of ours."""
        for cidr in self.pod_cidrs():
            net = ipaddress.ip_network(cidr)
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                return None
            if ip.version == net.version and ip in net:
                host = int(ip) - int(net.network_address)
                if ip.version == 6:
                    # ::(10+K) is written in decimal: read the last group back as decimal
                    host = int(f"{host:x}")
                slot = host - FIRST_POD_HOST
                return slot if 1 <= slot <= MAX_PODS_PER_NODE else None
        return None


@dataclass(frozen=True)
class Layout:
    """The whole lab: the switch namespace and every member attached to it."""

    prefix: str
    control_plane: Member
    nodes: tuple[Member, ...]
    client: Member
    ipv6_pool: bool

    @property
    def switch_netns(self) -> str:
        """The namespace of the bridge, named like the members' after the prefix."""
        return f"{self.prefix}-sw"

    @property
    def members(self) -> tuple[Member, ...]:
        return (self.control_plane, *self.nodes, self.client)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.switch_netns, *(m.netns for m in self.members))

    @property
    def api_url(self) -> str:
        # HTTPS: kubectl sends a bearer token only over TLS (kubernetes/kubectl#744)
        return f"https://{API_IPV4}:{API_PORT}"

    def node(self, name: str) -> Member:
        for member in self.nodes:
            if member.name == name:
                return member
        known = ", ".join(m.name for m in self.nodes)
        raise LayoutError(f"node: no node named {name!r} in lab {self.prefix} (nodes: {known})")


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can name a lab's namespaces, else raise :class:`LayoutError`."""
    if not _PREFIX_RE.match(prefix):
        raise LayoutError(
            f"prefix: {prefix!r} must start with a lowercase letter and contain only a-z and 0-9"
        )
    if len(prefix) > MAX_PREFIX_LEN:
        raise LayoutError(
            f"prefix: {prefix!r} is longer than {MAX_PREFIX_LEN} characters "
            "(namespace and interface names are limited to 15)"
        )
    return prefix


def _member(prefix: str, name: str, role: Role, host: int, index: int = 0) -> Member:
    ipv4 = SUBNET4.network_address + host
    ipv6 = ipaddress.IPv6Address(f"2001:db8:18::{host}")
    mac = "02:00:" + ":".join(f"{b:02x}" for b in ipv4.packed)
    return Member(
        name=name,
        role=role,
        netns=f"{prefix}-{name}",
        ipv4=str(ipv4),
        ipv6=str(ipv6),
        mac=mac,
        index=index,
    )


def plan(prefix: str, nodes: int = 3, *, ipv6_pool: bool = False) -> Layout:
    """Compute the layout of a lab with ``nodes`` nodes; raises :class:`LayoutError`."""
    validate_prefix(prefix)
    if not 1 <= nodes <= MAX_NODES:
        raise LayoutError(f"nodes: {nodes} is out of range (1..{MAX_NODES})")
    return Layout(
        prefix=prefix,
        control_plane=_member(prefix, "cp", Role.CONTROL_PLANE, 1),
        nodes=tuple(
            _member(prefix, f"n{i}", Role.NODE, FIRST_NODE_HOST + i - 1, i)
            for i in range(1, nodes + 1)
        ),
        client=_member(prefix, "c1", Role.CLIENT, CLIENT_HOST),
        ipv6_pool=ipv6_pool,
    )

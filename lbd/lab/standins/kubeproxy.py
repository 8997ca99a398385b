"""The lab's kube-proxy stand-in: every LoadBalancer ingress IP as a local address of the node.

Real kube-proxy in IPVS mode binds every Service VIP to a dummy interface (``kube-ipvs0``) on
every node and, with ``strictARP``, sets ``arp_ignore=1`` and ``arp_announce=2`` so that the
kernel does not answer ARP for those VIPs on the node's real interfaces: answering is left to the
load-balancer (lbd's speaker). The lab does the same on ``lo`` (this kernel has no dummy links):
each node accepts traffic for every VIP, and only the elected speaker makes the segment send it
there. For IPv6 the kernel answers Neighbor Solicitations only for addresses on the receiving
interface, so ``/128`` on ``lo`` is likewise left to the speaker.

It runs inside the node's namespace (``ip netns exec``), watches Services through the API like
kube-proxy, and reconciles ``lo`` to the desired set after every change (level-triggered: the
whole set is recomputed, so a missed event is repaired by the next one).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from lbd import log as lbd_log
from lbd.k8s.client import SERVICES, load_kube
from lbd.k8s.informer import Informer

log = logging.getLogger(__name__)

STRICT_ARP_SYSCTLS = {
    "net.ipv4.conf.all.arp_ignore": "1",
    "net.ipv4.conf.all.arp_announce": "2",
}
_KEEP = {"127.0.0.1", "::1"}


def ingress_ips(services: Iterable[dict[str, Any]]) -> set[str]:
    """Every ``status.loadBalancer.ingress[].ip`` of LoadBalancer Services, normalized."""
    ips: set[str] = set()
    for svc in services:
        if (svc.get("spec") or {}).get("type") != "LoadBalancer":
            continue
        for ingress in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
            ip = ingress.get("ip")
            if not ip:
                continue
            try:
                ips.add(str(ipaddress.ip_address(ip)))
            except ValueError:
                log.warning("ignoring invalid ingress ip", extra={"address": ip})
    return ips


class LoopbackVips:
    """Keeps the set of VIPs on ``lo`` equal to a desired set."""

    def __init__(self) -> None:
        self._ipr = IPRoute()
        self._lo = self._ipr.link_lookup(ifname="lo")[0]

    def current(self) -> set[str]:
        found = set()
        for addr in self._ipr.get_addr(index=self._lo):
            ip = addr.get("IFA_ADDRESS") or addr.get_attr("IFA_ADDRESS")
            if ip and ip not in _KEEP:
                found.add(str(ipaddress.ip_address(ip)))
        return found

    def apply(self, desired: set[str]) -> tuple[set[str], set[str]]:
        """Add missing and remove stale VIPs; returns (added, removed)."""
        have = self.current()
        added, removed = desired - have, have - desired
        for ip in sorted(added):
            bits = 32 if ipaddress.ip_address(ip).version == 4 else 128
            try:
                self._ipr.addr("add", index=self._lo, address=ip, prefixlen=bits)
            except Exception as exc:  # pyroute2 raises NetlinkError; keep going with the rest
                log.error("cannot add vip", extra={"vip": ip, "error": str(exc)})
        for ip in sorted(removed):
            bits = 32 if ipaddress.ip_address(ip).version == 4 else 128
            try:
                self._ipr.addr("del", index=self._lo, address=ip, prefixlen=bits)
            except Exception as exc:
                log.error("cannot remove vip", extra={"vip": ip, "error": str(exc)})
        return added, removed

    def close(self) -> None:
        self._ipr.close()


def set_strict_arp() -> None:
    for key, value in STRICT_ARP_SYSCTLS.items():
        Path("/proc/sys", *key.split(".")).write_text(value)


def run(args: argparse.Namespace) -> int:
    lbd_log.setup("info")
    set_strict_arp()
    vips = LoopbackVips()
    kube = load_kube(args.kubeconfig)
    informer = Informer(kube, SERVICES, name="services", resync_period=30.0)
    dirty = threading.Event()
    informer.add_handler(lambda *_: dirty.set())
    informer.start()
    informer.wait_for_sync()
    dirty.set()
    while True:
        dirty.wait()
        dirty.clear()
        added, removed = vips.apply(ingress_ips(informer.store.list()))
        for ip in sorted(added):
            log.info("vip added to lo", extra={"node": args.node_name, "vip": ip})
        for ip in sorted(removed):
            log.info("vip removed from lo", extra={"node": args.node_name, "vip": ip})

"""The few ConfigMaps of other components that ``lbd doctor`` reads.

API::

    observe_kube_proxy(cm) -> KubeProxyConfig      # kube-system/kube-proxy (kubeadm's layout)
    cilium_l2_announcements(cm) -> bool            # kube-system/cilium-config

kube-proxy's configuration is a ``KubeProxyConfiguration`` (kubeproxy.config.k8s.io) in the
ConfigMap key ``config.conf`` as kubeadm writes it; ``mode`` empty means iptables on Linux, and
``ipvs.strictARP`` must be true for an L2 load balancer in IPVS mode: without it every node
answers ARP for every address bound to ``kube-ipvs0``, the VIPs included (kube-proxy's docs,
"IPVS proxy mode"; MetalLB's installation guide names the same fix).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KUBE_PROXY_KEY = "config.conf"
CILIUM_L2_KEY = "enable-l2-announcements"


@dataclass(frozen=True)
class KubeProxyConfig:
    mode: str
    """``ipvs``, ``iptables``, ``nftables`` ... ("" = the default, iptables)."""
    strict_arp: bool
    error: str = ""
    """Why the configuration could not be read ("" when it was)."""


def _data(cm: Mapping[str, Any]) -> Mapping[str, Any]:
    data = cm.get("data")
    return data if isinstance(data, dict) else {}


def observe_kube_proxy(cm: Mapping[str, Any]) -> KubeProxyConfig:
    import yaml

    text = _data(cm).get(KUBE_PROXY_KEY)
    if not isinstance(text, str):
        return KubeProxyConfig("", False, f"no data key {KUBE_PROXY_KEY}")
    try:
        conf = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return KubeProxyConfig("", False, f"{KUBE_PROXY_KEY} is not YAML: {exc}")
    if not isinstance(conf, dict):
        return KubeProxyConfig("", False, f"{KUBE_PROXY_KEY} is not a map")
    ipvs = conf.get("ipvs")
    strict = ipvs.get("strictARP") if isinstance(ipvs, dict) else None
    return KubeProxyConfig(str(conf.get("mode") or "").lower(), strict is True)


def cilium_l2_announcements(cm: Mapping[str, Any]) -> bool:
    return str(_data(cm).get(CILIUM_L2_KEY, "")).strip().lower() == "true"

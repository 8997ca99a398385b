"""The real kube-proxy in the lab's node namespaces: which mode, its configuration, its rules.

**Mode.** nftables, the mode upstream recommends for new clusters, when this kernel and the
``nft`` tool support it inside a lab namespace; iptables otherwise; IPVS never (this kernel has no
``ip_vs`` and IPVS would create a ``kube-ipvs0`` dummy link, which this kernel cannot make either).
:func:`choose_mode` checks the kernel release (kube-proxy's nftables mode needs 5.13, its own
check in ``pkg/proxy/nftables``), then *tries* each mode in the first node's namespace: it
creates and deletes a table there with the very tool kube-proxy will exec. When that fails it asks
``modprobe`` for the modules the mode needs (most kernels load them on demand; a kernel with
modules built in needs nothing) and tries once more. Nothing is tried in the root namespace.

**Configuration** (:func:`config`, a ``KubeProxyConfiguration`` file per node):

- ``hostnameOverride`` = the Node's name: kube-proxy reads its Node's InternalIPs (both
  families, so it runs dual-stack) and programs Services for them;
- ``clusterCIDR`` = the lab's pod ranges (:data:`layout.POD_CIDRS`), so traffic from pods is
  told from traffic from outside (``detectLocalMode: ClusterCIDR``);
- ``conntrack``: every value 0 = "leave the kernel's setting as it is". ``nf_conntrack_max`` is
  global to the machine (kube-proxy would raise it for everyone), and the timeouts are not
  something a lab has any business changing;
- ``minSyncPeriod`` 1 s (kube-proxy's default, kept: the failover figures are measured against
  what a cluster runs), ``syncPeriod`` 30 s;
- metrics on ``127.0.0.1:10249`` and health on ``0.0.0.0:10256`` *of the node's namespace*.

kube-proxy keeps everything in its own tables, ``ip kube-proxy`` and ``ip6 kube-proxy`` in
nftables mode (``KUBE-*`` chains in iptables mode), inside the node's namespace; the lab's tests
check that the root namespace's ruleset is untouched.
"""

from __future__ import annotations

import enum
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from lbd.lab.cluster.layout import POD_CIDRS, Member

NFTABLES_MIN_KERNEL = (5, 13)
_MODULES = {
    "nftables": ("nf_tables", "nft_chain_nat", "nft_ct", "nft_nat", "nft_masq", "nf_conntrack"),
    "iptables": ("ip_tables", "iptable_nat", "ip6_tables", "ip6table_nat", "nf_conntrack"),
}
_PROBE_TABLE = "lbd-lab-probe"


class Mode(enum.StrEnum):
    NFTABLES = "nftables"
    IPTABLES = "iptables"


class KubeProxyError(RuntimeError):
    """No kube-proxy mode works here; the message says what failed and what to install."""


def kernel_release() -> tuple[int, int]:
    major, minor, *_ = (os.uname().release.split("-")[0] + ".0").split(".")
    return int(major), int(minor)


def _run_in(netns: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def _try(mode: Mode, netns: str) -> str | None:
    """None if ``mode``'s tool can make and remove a NAT table in ``netns``, else the error."""
    if mode is Mode.NFTABLES:
        if shutil.which("nft") is None:
            return "the nft tool is not installed (Debian: apt-get install nftables)"
        steps = [
            ["nft", "add", "table", "ip", _PROBE_TABLE],
            ["nft", "add", "chain", "ip", _PROBE_TABLE, "pre",
             "{ type nat hook prerouting priority -100 ; }"],
            ["nft", "delete", "table", "ip", _PROBE_TABLE],
        ]  # fmt: skip
    else:
        if shutil.which("iptables") is None:
            return "the iptables tool is not installed (Debian: apt-get install iptables)"
        steps = [["iptables", "-w", "5", "-t", "nat", "-L", "-n"]]
    for argv in steps:
        done = _run_in(netns, argv)
        if done.returncode != 0:
            if mode is Mode.NFTABLES:
                _run_in(netns, ["nft", "delete", "table", "ip", _PROBE_TABLE])
            return f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()}"
    return None


def _modprobe(mode: Mode) -> None:
    if shutil.which("modprobe") is None:
        return
    for module in _MODULES[mode.value]:
        # Built in, already loaded or absent from this kernel: each is fine to ignore here, the
        # second try says whether the mode works.
        subprocess.run(["modprobe", "-q", module], capture_output=True, check=False, timeout=20)


def choose_mode(netns: str, want: Mode | None = None) -> tuple[Mode, list[str]]:
    """The mode kube-proxy runs in, and why other modes were passed over (for the log).

    ``want`` forces a mode (its failure is an error); otherwise nftables, then iptables.
    """
    notes: list[str] = []
    modes = [want] if want else [Mode.NFTABLES, Mode.IPTABLES]
    for mode in modes:
        if mode is Mode.NFTABLES and kernel_release() < NFTABLES_MIN_KERNEL:
            notes.append(
                f"nftables: kernel {os.uname().release} is older than "
                f"{'.'.join(map(str, NFTABLES_MIN_KERNEL))}, which kube-proxy's nftables mode needs"
            )
            continue
        error = _try(mode, netns)
        if error is not None and "not installed" not in error:
            _modprobe(mode)
            error = _try(mode, netns)
        if error is None:
            return mode, notes
        notes.append(f"{mode.value}: {error}")
    raise KubeProxyError(
        "kube-proxy: no mode works in the lab's namespaces: "
        + "; ".join(notes)
        + " (kube-proxy needs nftables, or iptables, and conntrack: "
        "apt-get install nftables iptables conntrack)"
    )


def config(node: Member, kubeconfig: Path, mode: Mode) -> dict[str, Any]:
    """The ``KubeProxyConfiguration`` of ``node`` (see the module docstring)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig), "qps": 50, "burst": 100},
        "hostnameOverride": node.name,
        "bindAddress": "0.0.0.0",
        "mode": mode.value,
        "clusterCIDR": ",".join(POD_CIDRS),
        "detectLocalMode": "ClusterCIDR",
        "healthzBindAddress": "0.0.0.0:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
        "nftables": {"minSyncPeriod": "1s", "syncPeriod": "30s"},
        "iptables": {"minSyncPeriod": "1s", "syncPeriod": "30s"},
        "oomScoreAdj": 0,
    }


def write_config(path: Path, node: Member, kubeconfig: Path, mode: Mode) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config(node, kubeconfig, mode), sort_keys=False))
    return path


def ruleset(netns: str | None) -> str:
    """``nft list ruleset`` in ``netns`` (None: the root namespace); '' without ``nft``."""
    if shutil.which("nft") is None:
        return ""
    argv = ["nft", "list", "ruleset"]
    done = (
        _run_in(netns, argv)
        if netns
        else subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    )
    return done.stdout


def tables(netns: str | None) -> list[str]:
    """The nftables tables in ``netns`` as ``family name`` (e.g. ``ip kube-proxy``)."""
    return [
        line.removeprefix("table ").removesuffix(" {").strip()
        for line in ruleset(netns).splitlines()
        if line.startswith("table ")
    ]

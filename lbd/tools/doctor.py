"""``lbd doctor``, decided: a :class:`~lbd.k8s.snapshot.Snapshot` and the speakers' metrics in,
one :class:`Finding` per check and subject out, each with a verdict and the fix.

API::

    findings = diagnose(snapshot, metrics, lb_class=None, node_subnets=())
    metrics = {node: parse_speaker_metrics(text) or "why it could not be read"}

Pure: no I/O (:mod:`lbd.tools.doctor_cli` reads the cluster and the metrics). Every check
reports even when all is well (verdict ``ok``), or ``skipped`` with the reason it could not
look, so the output says what was checked. A ``problem`` breaks load balancing now; a
``warning`` may, or rests on an inference that the message names. Decisions:

- **Cluster networks.** A pool must not hold a node's address, a pod CIDR (``spec.podCIDRs``)
  or a service CIDR. The service CIDRs come from the ServiceCIDR API where the server serves it
  (Kubernetes 1.31+); otherwise they cannot be read from the API at all (they are a flag of
  kube-apiserver), so doctor infers from what it can see: a pool that contains any Service's
  ClusterIP (the ``kubernetes`` Service's included) overlaps the service CIDR for sure, and the
  finding says that the check was inferred.
- **Node subnets.** Kubernetes does not publish a node's prefix length, so unless ``--node-subnet``
  gives the subnets, a node's subnet is inferred as the /24 (IPv4) or /64 (IPv6) around its
  InternalIP, and a pool outside all of them is a warning, not a problem.
- **Membership key.** Each speaker exports ``lbd_heartbeats_dropped_total{reason="KeyMismatch"}``
  (heartbeats signed only with keys it does not hold) and ``lbd_membership_key_info{key_id,
  state}`` (lbd/metrics.py). A speaker that drops heartbeats for KeyMismatch, or whose Current
  key id differs from the others', splits the cluster; one without a key id runs without a key.
- **Other load balancers** are recognised by their objects: MetalLB by its ``metallb.io`` CRDs
  and its images, k3s's servicelb by its ``svclb-*`` DaemonSets, kube-vip by its image and its
  Services lease ``plndr-svcs-lock``, Cilium's L2 announcements by ``enable-l2-announcements``
  in ``cilium-config`` and its ``cilium-l2announce-*`` leases. Leftover CRDs alone are a
  warning; something running that answers for Services is a problem.
- **Stuck Services**: of lbd's class, without an address (the reason is the
  ``lbd.io/AddressAssigned`` condition's, or its absence: the controller has not seen it), or
  with one that nobody announces (``lbd.io/Announced`` False with its reason, or no condition
  and no ServiceL2Status).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lbd.core.config import build_config
from lbd.core.model import Family, Pool, PoolRange
from lbd.k8s.snapshot import Snapshot

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
INFERRED_PREFIX = {4: 24, 6: 64}
KEY_MISMATCH = "KeyMismatch"
KUBE_PROXY_FIX = (
    "set ipvs.strictARP: true in the kube-system/kube-proxy ConfigMap (kubectl -n kube-system "
    "edit configmap kube-proxy), then restart kube-proxy (kubectl -n kube-system rollout "
    "restart daemonset kube-proxy)"
)


class Verdict(StrEnum):
    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"
    SKIPPED = "skipped"


class Check(StrEnum):
    KUBE_PROXY = "KubeProxyStrictARP"
    CLUSTER_NETWORKS = "PoolOverlapsClusterNetwork"
    NODE_SUBNET = "PoolOnNodeSubnet"
    ADVERTISED = "PoolAdvertised"
    MEMBERSHIP_KEY = "MembershipKey"
    SPEAKERS = "SpeakerOnEveryNode"
    OTHER_LB = "OtherLoadBalancer"
    SERVICES = "ServicesServed"


@dataclass(frozen=True)
class Finding:
    check: Check
    verdict: Verdict
    subject: str
    """What it is about: ``pool default``, ``node n2``, ``Service ns/web``, ``cluster``."""
    message: str
    fix: str = ""


@dataclass(frozen=True)
class SpeakerKeys:
    """What doctor reads of one speaker's metrics."""

    key_mismatch: float
    current_keys: frozenset[str]


def parse_speaker_metrics(text: str) -> SpeakerKeys | str:
    """A speaker's ``/metrics`` text -> :class:`SpeakerKeys`, or why it is not lbd's."""
    from prometheus_client.parser import text_string_to_metric_families

    mismatch = 0.0
    keys: set[str] = set()
    seen = False
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "lbd_heartbeats_dropped_total":
                    seen = True
                    if sample.labels.get("reason") == KEY_MISMATCH:
                        mismatch += sample.value
                elif sample.name == "lbd_membership_key_info" and sample.value:
                    seen = True
                    if sample.labels.get("state") == "Current":
                        keys.add(sample.labels.get("key_id", ""))
    except ValueError as exc:
        return f"not Prometheus text: {exc}"
    if not seen and "lbd_speaker" not in text:
        return "no lbd speaker metrics in the answer"
    return SpeakerKeys(mismatch, frozenset(keys))


# --------------------------------------------------------------------------- helpers


def _range_net(r: PoolRange) -> tuple[int, int, int]:
    return (4 if r.family is Family.IPV4 else 6, r.first, r.last)


def _net_span(net: Network) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), int(net.broadcast_address))


def _overlap(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return a[0] == b[0] and a[1] <= b[2] and b[1] <= a[2]


def _pool_spans(pool: Pool) -> list[tuple[int, int, int]]:
    return [_range_net(r) for r in pool.ranges]


def _network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _pools(snap: Snapshot) -> dict[str, Pool]:
    config = build_config({p.name: p.config_input() for p in snap.pools})
    return dict(config.pools)


# --------------------------------------------------------------------------- checks


def check_kube_proxy(snap: Snapshot) -> list[Finding]:
    cfg = snap.kube_proxy
    subject = "ConfigMap kube-system/kube-proxy"
    if cfg is None:
        return [
            Finding(
                Check.KUBE_PROXY,
                Verdict.SKIPPED,
                subject,
                "no such ConfigMap (no kube-proxy, or not configured the kubeadm way): check "
                "by hand that kube-proxy, if it runs in IPVS mode, has strictARP",
            )
        ]
    if cfg.error:
        return [Finding(Check.KUBE_PROXY, Verdict.WARNING, subject, f"cannot read: {cfg.error}")]
    if cfg.mode == "ipvs" and not cfg.strict_arp:
        return [
            Finding(
                Check.KUBE_PROXY,
                Verdict.PROBLEM,
                subject,
                "kube-proxy runs in IPVS mode without strictARP: every node answers ARP for "
                "every VIP, so clients reach whichever node answers last",
                KUBE_PROXY_FIX,
            )
        ]
    mode = cfg.mode or "iptables (the default)"
    extra = " with strictARP" if cfg.mode == "ipvs" else ""
    return [Finding(Check.KUBE_PROXY, Verdict.OK, subject, f"mode {mode}{extra}")]


def check_cluster_networks(snap: Snapshot, pools: Mapping[str, Pool]) -> list[Finding]:
    out: list[Finding] = []
    if snap.service_cidrs:
        service = [(f"service CIDR {c}", n) for c in snap.service_cidrs if (n := _network(c))]
        how = "service CIDRs from the ServiceCIDR API"
    else:
        service = [
            (f"ClusterIP {ip} (inside the service CIDR)", n)
            for ip in sorted(set(snap.cluster_ips))
            if (n := _network(ip))
        ]
        how = (
            "service CIDR inferred from the ClusterIPs in use (the server serves no "
            "ServiceCIDR API)"
        )
    pod = [
        (f"pod CIDR {c} of node {node.name}", n)
        for node in snap.nodes
        for c in node.pod_cidrs
        if (n := _network(c))
    ]
    addrs = [
        (f"address {a} of node {node.name}", n)
        for node in snap.nodes
        for a in node.addresses
        if (n := _network(a))
    ]
    for name, pool in sorted(pools.items()):
        spans = _pool_spans(pool)
        hits = [
            what
            for what, net in [*addrs, *pod, *service]
            if any(_overlap(s, _net_span(net)) for s in spans)
        ]
        if hits:
            shown = ", ".join(hits[:5]) + (f" and {len(hits) - 5} more" if len(hits) > 5 else "")
            out.append(
                Finding(
                    Check.CLUSTER_NETWORKS,
                    Verdict.PROBLEM,
                    f"pool {name}",
                    f"overlaps {shown}: lbd would announce addresses the cluster already uses",
                    f"remove those addresses from the pool (kubectl edit ipaddresspool {name})",
                )
            )
        else:
            pods = "pod CIDRs" if pod else "no pod CIDRs published by the nodes"
            out.append(
                Finding(
                    Check.CLUSTER_NETWORKS,
                    Verdict.OK,
                    f"pool {name}",
                    f"no overlap with node addresses, {pods}, {how}",
                )
            )
    return out


def check_node_subnets(
    snap: Snapshot, pools: Mapping[str, Pool], node_subnets: Sequence[str]
) -> list[Finding]:
    given = [n for s in node_subnets if (n := _network(s))]
    if given:
        subnets = given
        how = "--node-subnet"
    else:
        subnets = []
        for node in snap.nodes:
            for ip in node.internal_ips:
                addr = _address(ip)
                if addr is not None:
                    subnets.append(
                        ipaddress.ip_network(
                            f"{addr}/{INFERRED_PREFIX[addr.version]}", strict=False
                        )
                    )
        # Kubernetes publishes no prefix lengths: say it is inferred, and how to do better
        how = "inferred: the /24 or /64 around each node's InternalIP; --node-subnet sets them"
    out: list[Finding] = []
    if not subnets:
        return [
            Finding(
                Check.NODE_SUBNET,
                Verdict.SKIPPED,
                "cluster",
                "no node has an InternalIP and no --node-subnet was given",
            )
        ]
    spans = [_net_span(n) for n in subnets]
    for name, pool in sorted(pools.items()):
        off = [
            r.text or f"{r.first}-{r.last}"
            for r in pool.ranges
            if not any(_overlap(_range_net(r), s) for s in spans)
        ]
        if off:
            out.append(
                Finding(
                    Check.NODE_SUBNET,
                    Verdict.PROBLEM if given else Verdict.WARNING,
                    f"pool {name}",
                    f"{', '.join(off)} on no node's subnet ({how}): ARP and NDP reach only "
                    "the nodes' own link",
                    "use addresses of a subnet the nodes are on, or route these to the nodes",
                )
            )
        else:
            out.append(
                Finding(Check.NODE_SUBNET, Verdict.OK, f"pool {name}", f"on a node subnet ({how})")
            )
    return out


def check_advertised(snap: Snapshot, pools: Mapping[str, Pool]) -> list[Finding]:
    if "L2Advertisement" in snap.missing:
        return [
            Finding(
                Check.ADVERTISED,
                Verdict.SKIPPED,
                "cluster",
                f"L2Advertisements cannot be read ({snap.missing['L2Advertisement']})",
                "install lbd's CRDs (crds/)",
            )
        ]
    config = build_config({}, dict(snap.advertisements))
    out = [
        Finding(
            Check.ADVERTISED,
            Verdict.PROBLEM,
            f"L2Advertisement {name}",
            "invalid: " + "; ".join(str(e) for e in errors),
            f"kubectl edit l2advertisement {name}",
        )
        for name, errors in sorted(config.invalid_advertisements.items())
    ]
    for name, pool in sorted(pools.items()):
        ads = [a.name for a in config.advertisements.values() if a.selects_pool(name, pool.labels)]
        if ads:
            out.append(
                Finding(
                    Check.ADVERTISED,
                    Verdict.OK,
                    f"pool {name}",
                    f"selected by {', '.join(sorted(ads))}",
                )
            )
        else:
            out.append(
                Finding(
                    Check.ADVERTISED,
                    Verdict.PROBLEM,
                    f"pool {name}",
                    "no L2Advertisement selects it: its addresses are assigned but never announced",
                    f"create an L2Advertisement with spec.ipAddressPools: [{name}] (or one "
                    "with no pool list, which selects every pool)",
                )
            )
    return out


def check_membership(snap: Snapshot, metrics: Mapping[str, SpeakerKeys | str]) -> list[Finding]:
    running = sorted({p.node for p in snap.speakers if p.running and p.node})
    if not running:
        return [
            Finding(Check.MEMBERSHIP_KEY, Verdict.SKIPPED, "cluster", "no running speaker to ask")
        ]
    out: list[Finding] = []
    keys: dict[str, frozenset[str]] = {}
    for node in running:
        got = metrics.get(node, "not asked")
        if isinstance(got, str):
            out.append(
                Finding(
                    Check.MEMBERSHIP_KEY,
                    Verdict.WARNING,
                    f"node {node}",
                    f"cannot read the speaker's metrics: {got}",
                    "check the speaker's metrics port (default 7473) is reachable, or use "
                    "--speaker-metrics direct/proxy",
                )
            )
            continue
        keys[node] = got.current_keys
        if not got.current_keys:
            out.append(
                Finding(
                    Check.MEMBERSHIP_KEY,
                    Verdict.PROBLEM,
                    f"node {node}",
                    "the speaker reports no membership key (lbd_membership_key_info)",
                    "give every speaker the same key: the lbd-memberlist Secret "
                    "(see README, membership key)",
                )
            )
        if got.key_mismatch > 0:
            out.append(
                Finding(
                    Check.MEMBERSHIP_KEY,
                    Verdict.PROBLEM,
                    f"node {node}",
                    f"dropped {got.key_mismatch:g} heartbeats signed only with keys it does not "
                    'hold (lbd_heartbeats_dropped_total{reason="KeyMismatch"}): its peers use '
                    "another membership key",
                    "make every speaker read the same Secret, then restart the odd ones (kubectl "
                    "-n lbd-system rollout restart daemonset lbd-speaker)",
                )
            )
    distinct = {k for k in keys.values() if k}
    if len(distinct) > 1:
        by_key = ", ".join(f"{n}: {','.join(sorted(k)) or '-'}" for n, k in sorted(keys.items()))
        out.append(
            Finding(
                Check.MEMBERSHIP_KEY,
                Verdict.PROBLEM,
                "cluster",
                f"speakers hold different membership keys ({by_key})",
                "make every speaker read the same Secret, then restart the odd ones",
            )
        )
    if not out:
        ids = ",".join(sorted(next(iter(distinct)))) if distinct else "-"
        out.append(
            Finding(
                Check.MEMBERSHIP_KEY,
                Verdict.OK,
                "cluster",
                f"{len(keys)} speakers hold key {ids}; no heartbeat dropped for KeyMismatch",
            )
        )
    return out


def check_speakers(snap: Snapshot) -> list[Finding]:
    if not snap.speakers:
        return [
            Finding(
                Check.SPEAKERS,
                Verdict.SKIPPED,
                "cluster",
                "no speaker pod (label app.kubernetes.io/component=speaker): lbd is not "
                "installed yet",
            )
        ]
    running = {p.node for p in snap.speakers if p.running}
    out: list[Finding] = []
    for node in sorted(snap.nodes, key=lambda n: n.name):
        if node.name in running:
            continue
        pods = [p for p in snap.speakers if p.node == node.name]
        state = (
            f"its speaker pod {pods[0].ref.name} is {pods[0].phase or 'Pending'}"
            f"{'' if pods[0].ready else ', not Ready'}"
            if pods
            else "no speaker pod is scheduled there"
        )
        out.append(
            Finding(
                Check.SPEAKERS,
                Verdict.PROBLEM if node.ready is not False else Verdict.WARNING,
                f"node {node.name}",
                f"{state}: Services cannot move to this node",
                "kubectl -n lbd-system describe daemonset lbd-speaker (nodeSelector, "
                "tolerations) and the pod's events",
            )
        )
    if not out:
        out.append(
            Finding(
                Check.SPEAKERS,
                Verdict.OK,
                "cluster",
                f"a running speaker on each of {len(snap.nodes)} nodes",
            )
        )
    return out


def _names(items: Iterable[str]) -> str:
    return ", ".join(sorted(set(items)))


def check_other_lbs(snap: Snapshot) -> list[Finding]:
    out: list[Finding] = []

    def found(verdict: Verdict, subject: str, message: str, fix: str) -> None:
        out.append(Finding(Check.OTHER_LB, verdict, subject, message, fix))

    metallb_work = [
        w.ref.key
        for w in snap.workloads
        if any("metallb" in i for i in w.images)
        or "metallb" in (w.labels.get("app.kubernetes.io/name", ""), w.labels.get("app", ""))
    ]
    metallb_crds = [p for g, p in snap.crds if g == "metallb.io"]
    if metallb_work:
        found(
            Verdict.PROBLEM,
            "MetalLB",
            f"running: {_names(metallb_work)}; it answers for the same Services",
            "move its configuration (lbd migrate from-metallb --from-cluster), then uninstall "
            "MetalLB before lbd announces",
        )
    elif metallb_crds:
        found(
            Verdict.WARNING,
            "MetalLB",
            f"its CRDs are installed ({_names(metallb_crds)}) but nothing of it runs",
            "delete the metallb.io CRDs once migrated",
        )
    svclb = [
        w.ref.key
        for w in snap.workloads
        if w.ref.kind == "DaemonSet"
        and (w.ref.name.startswith("svclb-") or "svccontroller.k3s.cattle.io/svcname" in w.labels)
    ]
    if svclb:
        found(
            Verdict.PROBLEM,
            "k3s servicelb",
            f"active: {_names(svclb)}; it answers for LoadBalancer Services too",
            "start k3s with --disable=servicelb",
        )
    vip_work = [w.ref.key for w in snap.workloads if any("kube-vip" in i for i in w.images)]
    vip_svc = [ls.ref.key for ls in snap.leases if ls.ref.name == "plndr-svcs-lock"]
    if vip_svc:
        found(
            Verdict.PROBLEM,
            "kube-vip",
            f"serves Services (lease {_names(vip_svc)})",
            "turn off kube-vip's Services mode (svc_enable=false); keep it for the control "
            "plane VIP if it does that",
        )
    elif vip_work:
        found(
            Verdict.WARNING,
            "kube-vip",
            f"runs ({_names(vip_work)}); fine for a control-plane VIP, a conflict if it also "
            "serves Services",
            "make sure svc_enable is false",
        )
    cilium_leases = [
        ls.ref.key for ls in snap.leases if ls.ref.name.startswith("cilium-l2announce-")
    ]
    if snap.cilium_l2 or cilium_leases:
        seen = "enable-l2-announcements: true in kube-system/cilium-config"
        if cilium_leases:
            seen += f"; leases {_names(cilium_leases[:3])}"
        found(
            Verdict.PROBLEM,
            "Cilium L2 announcements",
            f"enabled ({seen})",
            "set l2announcements.enabled=false in Cilium's values (or delete the "
            "CiliumL2AnnouncementPolicies)",
        )
    if not out:
        found(
            Verdict.OK,
            "cluster",
            "no MetalLB, k3s servicelb, kube-vip or Cilium L2 announcements found",
            "",
        )
    return out


def check_services(snap: Snapshot, lb_class: str | None) -> list[Finding]:
    announced = {s.service for s in snap.l2statuses if s.announced}
    out: list[Finding] = []
    count = 0
    for svc in sorted(snap.services, key=lambda s: s.key):
        if not svc.ours(lb_class):
            continue
        count += 1
        subject = f"Service {svc.key}"
        if not svc.addresses:
            cond = svc.condition
            if cond is None:
                out.append(
                    Finding(
                        Check.SERVICES,
                        Verdict.PROBLEM,
                        subject,
                        "no address and no lbd.io/AddressAssigned condition: the controller "
                        "has not handled it",
                        "kubectl -n lbd-system get pods,leases (is a controller running and "
                        "leading?)",
                    )
                )
            else:
                out.append(
                    Finding(
                        Check.SERVICES,
                        Verdict.PROBLEM,
                        subject,
                        f"no address: {cond.reason}: {cond.message}",
                        f"kubectl describe service -n {svc.ref.namespace} {svc.ref.name}; "
                        "lbd status shows the pools",
                    )
                )
            continue
        ann = svc.announced
        if ann is not None and ann.status != "True":
            out.append(
                Finding(
                    Check.SERVICES,
                    Verdict.PROBLEM,
                    subject,
                    f"{','.join(svc.addresses)} not announced: {ann.reason}: {ann.message}",
                    f"kubectl describe service -n {svc.ref.namespace} {svc.ref.name}",
                )
            )
        elif ann is None and svc.key not in announced:
            out.append(
                Finding(
                    Check.SERVICES,
                    Verdict.PROBLEM,
                    subject,
                    f"{','.join(svc.addresses)} not announced: no node's speaker claims it (no "
                    "ServiceL2Status)",
                    "check the speakers (lbd status) and the L2Advertisements",
                )
            )
    if not out:
        out.append(
            Finding(
                Check.SERVICES,
                Verdict.OK,
                "cluster",
                f"{count} LoadBalancer Services with an address and announced",
            )
        )
    return out


def diagnose(
    snap: Snapshot,
    metrics: Mapping[str, SpeakerKeys | str],
    *,
    lb_class: str | None = None,
    node_subnets: Sequence[str] = (),
) -> tuple[Finding, ...]:
    """Every check, in the order an installation goes (cluster first, then lbd, then Services)."""
    pools = _pools(snap)
    return (
        *check_kube_proxy(snap),
        *check_other_lbs(snap),
        *check_cluster_networks(snap, pools),
        *check_node_subnets(snap, pools, node_subnets),
        *check_advertised(snap, pools),
        *check_speakers(snap),
        *check_membership(snap, metrics),
        *check_services(snap, lb_class),
    )


def problems(findings: Iterable[Finding]) -> int:
    return sum(1 for f in findings if f.verdict is Verdict.PROBLEM)


def as_data(findings: Sequence[Finding]) -> dict[str, Any]:
    counts = {v.value: sum(1 for f in findings if f.verdict is v) for v in Verdict}
    return {
        "summary": counts,
        "findings": [
            {
                "check": str(f.check),
                "verdict": str(f.verdict),
                "subject": f.subject,
                "message": f.message,
                "fix": f.fix,
            }
            for f in findings
        ],
    }


_LABEL = {
    Verdict.OK: "ok",
    Verdict.WARNING: "WARNING",
    Verdict.PROBLEM: "PROBLEM",
    Verdict.SKIPPED: "skipped",
}


def render(findings: Sequence[Finding]) -> str:
    """One line per finding (verdict, check, subject: message), its fix indented below."""
    width = max(len(str(f.check)) for f in findings) if findings else 0
    lines = []
    for f in findings:
        lines.append(f"{_LABEL[f.verdict]:<8} {f.check!s:<{width}}  {f.subject}: {f.message}")
        if f.fix and f.verdict in (Verdict.PROBLEM, Verdict.WARNING):
            lines.append(f"{'':<8} {'':<{width}}  fix: {f.fix}")
    data = as_data(findings)["summary"]
    lines.append(
        f"lbd doctor: {data['problem']} problems, {data['warning']} warnings, "
        f"{data['ok']} ok, {data['skipped']} skipped"
    )
    return "\n".join(lines) + "\n"

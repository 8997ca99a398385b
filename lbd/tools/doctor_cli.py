"""``lbd doctor``: read the cluster and the speakers' metrics, print the findings of
:mod:`lbd.tools.doctor`; exit 1 when any is a problem (2 when the cluster cannot be read).

    lbd doctor [--kubeconfig FILE] [-o table|json|yaml] [--lb-class CLASS]
               [--node-subnet CIDR ...] [--speaker-metrics proxy|direct|none]

How the speakers' metrics are reached (``--speaker-metrics``):

- ``proxy`` (default): through the API server's pod proxy
  (``/api/v1/namespaces/NS/pods/POD:PORT/proxy/metrics``), with the user's own credentials. It
  works from a laptop that cannot reach the nodes, as ``kubectl get --raw`` does; it needs
  ``pods/proxy`` rights (an admin has them).
- ``direct``: to the pod's IP (a host-network pod: the node's address) and its ``metrics``
  container port, as Prometheus scrapes it; for a machine inside the cluster's network.
- ``none``: skip the membership key check.

The port is the speaker pod's container port named ``metrics`` (7473 in deploy/).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lbd.clihelp import add_command
from lbd.tools.status_cli import ReadError, add_common, dump, read

PROG = "lbd doctor"
DEFAULT_METRICS_PORT = 7473
FETCH_TIMEOUT = 3.0
FETCH_PARALLEL = 8


def register(sub: Any) -> None:
    p = add_command(sub, "doctor", run, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--lb-class", default=None, help="the loadBalancerClass lbd runs with")
    p.add_argument(
        "--node-subnet",
        action="append",
        default=[],
        metavar="CIDR",
        help="a subnet the nodes are on (repeatable); default: inferred from the nodes' "
        "InternalIPs as /24 and /64",
    )
    p.add_argument(
        "--speaker-metrics",
        choices=("proxy", "direct", "none"),
        default="proxy",
        help="how to reach the speakers' /metrics (default: the API server's pod proxy)",
    )


def _direct(url: str) -> str:
    import urllib.request  # here: every lbd command would pay its import (28 ms) otherwise

    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as resp:
        return bytes(resp.read()).decode()


def speaker_metrics(
    snap: Any, via: str, kube_text: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """``{node: SpeakerKeys | why not}`` for every running speaker pod."""
    from lbd.tools.doctor import parse_speaker_metrics

    if via == "none":
        return {}
    pods = [p for p in snap.speakers if p.running and p.node]

    def fetch(pod: Any) -> tuple[str, Any]:
        port = pod.ports.get("metrics", DEFAULT_METRICS_PORT)
        try:
            if via == "proxy":
                assert kube_text is not None
                path = (
                    f"/api/v1/namespaces/{pod.ref.namespace}/pods/{pod.ref.name}:{port}"
                    "/proxy/metrics"
                )
                text = kube_text(path)
            else:
                if not pod.pod_ips:
                    return pod.node, "the pod has no IP"
                host = pod.pod_ips[0]
                host = f"[{host}]" if ":" in host else host
                text = _direct(f"http://{host}:{port}/metrics")
        except Exception as exc:  # any transport or HTTP failure is reported, never fatal
            return pod.node, f"{type(exc).__name__}: {exc}"
        return pod.node, parse_speaker_metrics(text)

    with ThreadPoolExecutor(FETCH_PARALLEL) as pool:
        return dict(pool.map(fetch, pods))


def collect(args: argparse.Namespace) -> tuple[Any, Mapping[str, Any]]:
    from lbd.k8s.client import load_kube

    snap = read(args.kubeconfig, deep=True)
    if args.speaker_metrics != "proxy":
        return snap, speaker_metrics(snap, args.speaker_metrics)
    kube = load_kube(args.kubeconfig)
    try:
        return snap, speaker_metrics(snap, "proxy", kube.request_text)
    finally:
        kube.close()


def run(args: argparse.Namespace) -> int:
    """check a cluster before and after installing lbd; each finding with its fix

    Check what breaks an L2 load balancer: kube-proxy's strictARP, pools overlapping the cluster's
    networks or off the nodes' subnets, pools no L2Advertisement selects, membership keys differing
    between speakers, nodes without a speaker, another load balancer, Services stuck without an
    address or an announcement. Exit code 1 when a problem is found.

    examples:
      lbd doctor                          # before installing lbd, and after
      lbd doctor -o json | jq '.findings[] | select(.verdict == "problem")'
      lbd doctor --node-subnet 192.168.1.0/24 --speaker-metrics direct
    """
    from lbd.tools.doctor import as_data, diagnose, problems, render

    try:
        snap, metrics = collect(args)
    except ReadError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    findings = diagnose(snap, metrics, lb_class=args.lb_class, node_subnets=args.node_subnet)
    if args.output == "table":
        sys.stdout.write(render(findings))
    else:
        sys.stdout.write(dump(as_data(findings), args.output))
    return 1 if problems(findings) else 0

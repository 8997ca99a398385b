"""``lbd controller``: flags, wiring, signals.

    lbd controller [--kubeconfig FILE] [--lb-class CLASS] [--leader-elect]
                   [--lease-namespace NS] [--lease-name NAME] [--identity ID]
                   [--health-addr HOST:PORT] [--workers N] [--log-level LEVEL]

A bad flag, or no usable kubeconfig, is one line on stderr naming the flag and exit code 2.

Without ``--kubeconfig`` the in-cluster configuration is used (``$KUBECONFIG`` is honoured).
With ``--leader-elect`` the replicas campaign for a Lease in ``--lease-namespace`` (default
``$POD_NAMESPACE`` or ``lbd-system``) under ``--identity`` (default ``$POD_NAME`` or
``hostname-pid``); only the holder writes. SIGTERM/SIGINT stop cleanly and hand the lease over.
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

from lbd.clihelp import add_command, add_log_level, settings


def register(sub: Any) -> None:
    p = add_command(sub, "controller", run)
    namespace = os.environ.get("POD_NAMESPACE") or "lbd-system"  # the Deployment's (downward API)
    p.add_argument(
        "--kubeconfig",
        default=None,
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, else the in-cluster configuration)",
    )
    p.add_argument(
        "--lb-class",
        default=None,
        metavar="CLASS",
        help="handle Services with this spec.loadBalancerClass (default: only Services "
        "without a class)",
    )
    p.add_argument("--leader-elect", action="store_true", help="campaign for a Lease (HA)")
    p.add_argument(
        "--lease-namespace",
        default=namespace,
        metavar="NS",
        help="namespace of the Lease (default: $POD_NAMESPACE, else lbd-system)",
    )
    p.add_argument("--lease-name", default="lbd-controller", metavar="NAME", help="Lease name")
    p.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        metavar="ID",
        help="this replica's name in the Lease (default: $POD_NAME, else hostname-pid)",
    )
    p.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long a Lease holds without renewal",
    )
    p.add_argument(
        "--renew-deadline",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the holder stops writing if it could not renew within this",
    )
    p.add_argument(
        "--retry-period",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="between attempts to take or renew the Lease",
    )
    p.add_argument(
        "--health-addr",
        default="0.0.0.0:7472",
        metavar="HOST:PORT",
        help="address of /healthz, /readyz and /metrics",
    )
    p.add_argument("--workers", type=int, default=8, metavar="N", help="concurrent reconciles")
    p.add_argument(
        "--resync-period",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="between full resyncs of the Services",
    )
    add_log_level(p)
    p.add_argument(
        "--speaker-namespace",
        default=namespace,
        metavar="NAMESPACE",
        help="namespace of the speaker Pods, whose Ready condition tells whether any speaker "
        "runs (condition lbd.io/Announced, reason NoLiveSpeaker; empty: not judged); "
        "default $POD_NAMESPACE, else lbd-system",
    )
    p.add_argument(
        "--speaker-selector",
        default="app.kubernetes.io/component=speaker",
        metavar="SELECTOR",
        help="label selector of the speaker Pods",
    )
    p.add_argument(
        "--speaker-grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="without a Ready speaker Pod before Services say NoLiveSpeaker (rolling restarts "
        "stay quiet)",
    )


def run(args: argparse.Namespace) -> int:
    """assign addresses to LoadBalancer Services

    Assigns addresses from IPAddressPools to LoadBalancer Services and writes them into
    status.loadBalancer.ingress, with conditions and Events on Services, pools and L2Advertisements.
    With --leader-elect, replicas campaign for a Lease and only the holder writes. SIGTERM/SIGINT
    stop cleanly and hand the Lease over.

    examples:
      # in a cluster (what the Deployment runs): two replicas, one active
      lbd controller --leader-elect
      # from a workstation, one replica, only Services of one class
      lbd controller --kubeconfig ~/.kube/config --lb-class lbd.io/lb
    """
    from lbd.controller.main import ControllerOptions, main

    # An empty --lb-class or --speaker-namespace means none (the Deployment may pass "").
    return main(
        settings(
            ControllerOptions,
            args,
            lb_class=args.lb_class or None,
            speaker_namespace=args.speaker_namespace or None,
        )
    )

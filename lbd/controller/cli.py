"""``lbd controller``: flags, wiring, signals.

    lbd controller [--kubeconfig FILE] [--lb-class CLASS] [--leader-elect]
                   [--lease-namespace NS] [--lease-name NAME] [--identity ID]
                   [--health-addr HOST:PORT] [--workers N] [--log-level LEVEL]

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


def register(sub: Any) -> None:
    p = sub.add_parser("controller", help="assign addresses to LoadBalancer Services")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster)")
    p.add_argument(
        "--lb-class",
        default=None,
        help="handle Services with this spec.loadBalancerClass (default: only Services "
        "without a class)",
    )
    p.add_argument("--leader-elect", action="store_true", help="campaign for a Lease (HA)")
    p.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE") or "lbd-system",
        help="namespace of the Lease (default: $POD_NAMESPACE or lbd-system)",
    )
    p.add_argument("--lease-name", default="lbd-controller", help="name of the Lease")
    p.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        help="this replica's name in the Lease (default: $POD_NAME or hostname-pid)",
    )
    p.add_argument("--lease-duration", type=float, default=15.0, help="seconds")
    p.add_argument("--renew-deadline", type=float, default=10.0, help="seconds")
    p.add_argument("--retry-period", type=float, default=2.0, help="seconds")
    p.add_argument(
        "--health-addr",
        default="0.0.0.0:7472",
        help="HOST:PORT of /healthz, /readyz and /metrics",
    )
    p.add_argument("--workers", type=int, default=8, help="concurrent reconciles")
    p.add_argument(
        "--resync-period", type=float, default=600.0, help="seconds between full resyncs"
    )
    p.add_argument(
        "--speaker-namespace",
        default=os.environ.get("POD_NAMESPACE") or "lbd-system",
        help="namespace of the speaker Pods, whose Ready condition tells whether any speaker "
        "runs (condition lbd.io/Announced, reason NoLiveSpeaker; empty: not judged) "
        "(default: $POD_NAMESPACE or lbd-system)",
    )
    p.add_argument(
        "--speaker-selector",
        default="app.kubernetes.io/component=speaker",
        help="label selector of the speaker Pods (default: %(default)s)",
    )
    p.add_argument(
        "--speaker-grace",
        type=float,
        default=10.0,
        help="seconds without a Ready speaker Pod before Services say NoLiveSpeaker (rolling "
        "restarts stay quiet) (default: %(default)s)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lbd.controller.main import ControllerOptions, main

    return main(
        ControllerOptions(
            kubeconfig=args.kubeconfig,
            lb_class=args.lb_class or None,
            leader_elect=args.leader_elect,
            lease_namespace=args.lease_namespace,
            lease_name=args.lease_name,
            identity=args.identity,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
            health_addr=args.health_addr,
            workers=args.workers,
            resync_period=args.resync_period,
            log_level=args.log_level,
            speaker_namespace=args.speaker_namespace or None,
            speaker_selector=args.speaker_selector,
            speaker_grace=args.speaker_grace,
        )
    )

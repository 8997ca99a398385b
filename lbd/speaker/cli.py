"""``lbd speaker``: one per node; makes the VIPs of LoadBalancer Services reachable at layer 2.

Wiring only (heavy imports happen inside :func:`run`, so ``lbd --help`` stays fast)::

    informers (lbd.k8s.speaker_informers) --+
    heartbeats (lbd.net.membership) --------+--> Reconciler (lbd.speaker.reconciler)
    link monitor (lbd.net.links) -----------+        |-> Responder.set_owned  (ARP/NDP, GARP)
                                                     |-> Membership.set_peers / interfaces up
                                                     '-> StatusWriter (ServiceL2Status, Events)

Shutdown on SIGTERM/SIGINT, within about a second: tell the peers we are leaving (they take
over at once), keep answering for ``HANDOVER_GRACE`` so the new owner's gratuitous announcement
lands before we go quiet (the client-visible gap of a graceful hand-over is then only the
peers' reaction time), stop answering, exit. Informers and the status writer are stopped last
and without waiting for the API server: a cluster whose API is down must still let a node drain.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from lbd.clihelp import add_command, add_log_level, fail, settings

log = logging.getLogger("lbd.speaker")
PROG = "lbd speaker"

DEFAULT_HEALTH_ADDR = "0.0.0.0:7473"
HANDOVER_GRACE = 0.15
"""Seconds the leaving owner keeps answering after its ``leaving`` heartbeats (see module doc).

Measured in the lab: a peer answers 2-6 ms after the ``leaving`` heartbeat when few Services
exist, but 40-120 ms when it takes over 200 VIPs at once (600 Services on 3 nodes). Answering
from both nodes for a moment is harmless (either node forwards the traffic); a silent moment is
not.
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    from lbd.core.keyring import DEFAULT_GRACE
    from lbd.core.membership import DEFAULT_DEAD_AFTER, DEFAULT_INTERVAL, DEFAULT_PORT

    p = add_command(sub, "speaker", run)
    p.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME"),
        metavar="NAME",
        help="this node's Kubernetes Node name (default: $NODE_NAME)",
    )
    p.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, else in-cluster config)",
    )
    p.add_argument(
        "--membership-key",
        metavar="FILE",
        help="file holding the shared heartbeat HMAC key, or several, one per line (mounted "
        "from a Secret); re-read every second, so a rotated Secret takes effect",
    )
    p.add_argument(
        "--membership-key-grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help="a key removed from the key file is still accepted, and still used to sign, this "
        f"long (default {DEFAULT_GRACE:.0f}: longer than a Secret change takes to reach every "
        "node; 0 revokes at once)",
    )
    p.add_argument(
        "--insecure-membership",
        action="store_true",
        help="allow running without a membership key (heartbeats can then be forged)",
    )
    p.add_argument(
        "--membership-port",
        type=int,
        default=DEFAULT_PORT,
        metavar="PORT",
        help="heartbeat UDP port",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=float,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between heartbeats (default {DEFAULT_INTERVAL})",
    )
    p.add_argument(
        "--dead-after",
        type=float,
        default=DEFAULT_DEAD_AFTER,
        metavar="SECONDS",
        help=f"a peer silent this long is dead (default {DEFAULT_DEAD_AFTER})",
    )
    p.add_argument(
        "--lb-class",
        default=None,
        metavar="CLASS",
        help="handle only Services with this spec.loadBalancerClass (default: only Services "
        "without a class)",
    )
    p.add_argument(
        "--health-addr",
        default=DEFAULT_HEALTH_ADDR,
        metavar="HOST:PORT",
        help=f"HOST:PORT for /healthz, /readyz, /metrics (default {DEFAULT_HEALTH_ADDR})",
    )
    p.add_argument(
        "--interfaces-exclude",
        action="append",
        default=[],
        metavar="NAME[,NAME...]",
        help="interface name prefixes the default interface rule never picks (in addition "
        "to the built-in list of virtual interfaces); repeatable or comma-separated",
    )
    add_log_level(p)


def _excludes(values: list[str]) -> tuple[str, ...]:
    return tuple(x.strip() for v in values for x in v.split(",") if x.strip())


def _bad_flag(args: argparse.Namespace) -> str | None:
    """The first flag with a value the speaker cannot run with (checked before anything
    starts, so the error is the only line on stderr)."""
    from lbd.health import parse_addr

    try:
        parse_addr(args.health_addr)
    except ValueError:
        return f"--health-addr {args.health_addr!r}: expected HOST:PORT"
    interval, dead = args.heartbeat_interval, args.dead_after
    if not 0 < interval < float("inf"):
        return f"--heartbeat-interval {interval}: must be a finite number > 0 seconds"
    if not interval < dead < float("inf"):
        return f"--dead-after {dead}: must exceed --heartbeat-interval ({interval} s)"
    if not 0 < args.membership_port < 65536:
        return f"--membership-port {args.membership_port}: must be 1-65535"
    return None


def run(args: argparse.Namespace) -> int:
    """announce Service VIPs from this node (ARP/NDP, heartbeats, election)

    Runs on every node: elects one owner node per VIP among live speakers and answers ARP/NDP for
    the VIPs this node owns. Needs CAP_NET_RAW and the host network. A bad flag, key file or
    kubeconfig is one line on stderr naming it, exit code 2.

    examples:
      # what the DaemonSet runs (NODE_NAME from the downward API)
      lbd speaker --membership-key /etc/lbd/membership/key
      # by hand on one node, faster failure detection
      lbd speaker --node-name n1 --kubeconfig /etc/lbd/kubeconfig \\
          --membership-key /etc/lbd/membership/key --dead-after 0.6
    """
    from lbd import log as lbd_log

    if not args.node_name:
        return fail(PROG, "--node-name: required (or set $NODE_NAME)")
    from lbd.net.keyfile import MembershipKeyError, load_keys

    if not 0 <= args.membership_key_grace < float("inf"):  # NaN/inf: an old key valid forever
        return fail(
            PROG,
            "--membership-key-grace: must be a finite number >= 0 seconds, "
            f"got {args.membership_key_grace}",
        )
    bad = _bad_flag(args)
    if bad is not None:
        return fail(PROG, bad)
    lbd_log.setup(args.log_level)  # load_keys logs the --insecure-membership warning
    try:
        keys = load_keys(args.membership_key, insecure=args.insecure_membership)
    except MembershipKeyError as exc:
        # "membership key: cannot read FILE: reason": name the flag the user typed
        text = str(exc).removeprefix("membership key: ")
        return fail(PROG, f"--membership-key: {text}")
    from lbd.k8s.client import KubeconfigError
    from lbd.runtime.signals import stop_event
    from lbd.speaker.daemon import Speaker, SpeakerSettings

    config = settings(
        SpeakerSettings,
        args,
        keys=keys,
        key_file=args.membership_key,
        key_grace=args.membership_key_grace,
        lb_class=args.lb_class or None,
        interfaces_exclude=_excludes(args.interfaces_exclude),
    )
    try:
        speaker = Speaker(config)
    except KubeconfigError as exc:
        return fail(PROG, str(exc))
    except ValueError as exc:  # a bad flag value (interval, dead-after, health address)
        return fail(PROG, str(exc))
    stop = stop_event(lambda sig: log.info("signal received, leaving", extra={"reason": sig.name}))
    try:
        speaker.start()
    except OSError as exc:  # health or heartbeat port taken, no netlink in this namespace
        log.error("cannot start", extra={"error": str(exc)})
        return 1
    while not stop.wait(1.0):
        pass
    speaker.stop(grace=HANDOVER_GRACE)
    return 0

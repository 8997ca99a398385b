"""``lbd lab apiserver``: run the lab API server as a process.

Prints one line ``ready`` on stdout (flushed) once it serves, so a parent process can wait for
it; writes an admin kubeconfig with ``--kubeconfig-out``; ``--token TOKEN=USER[,GROUP...]``
adds identities (repeatable). ``--tls`` serves HTTPS with a certificate made at start;
``--tls-cert``/``--tls-key`` with a given one (the network-namespace lab's, which every
kubeconfig of the lab trusts, so kubectl inside the lab sends its token). Runs until SIGTERM /
SIGINT.
"""

from __future__ import annotations

import argparse
from typing import Any

from lbd.clihelp import add_command


def _token(text: str) -> tuple[str, str, list[str]]:
    token, sep, rest = text.partition("=")
    if not sep or not token or not rest:
        raise argparse.ArgumentTypeError(f"--token: expected TOKEN=USER[,GROUP...], got {text!r}")
    user, *groups = rest.split(",")
    return token, user, groups


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen: expected ADDR:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    # Internal (the lab and the tests run it): no help=, so `lbd lab --help` does not list it.
    p = add_command(sub, "apiserver", run, internal=True)
    p.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 6443),
        metavar="ADDR:PORT",
        help="address to serve on (default: 127.0.0.1:6443)",
    )
    p.add_argument("--crds", metavar="DIR", help="apply every YAML file in DIR at start")
    p.add_argument(
        "--rbac",
        metavar="FILE",
        nargs="+",
        action="extend",
        default=[],
        help="YAML files whose Roles, ClusterRoles and bindings are loaded (repeatable)",
    )
    p.add_argument("--kubeconfig-out", metavar="FILE", help="write an admin kubeconfig here")
    p.add_argument("--admin-token", metavar="TOKEN", help="admin token (default: random)")
    p.add_argument(
        "--token",
        type=_token,
        action="append",
        default=[],
        metavar="TOKEN=USER[,GROUP...]",
        help="add a bearer token for a user (repeatable)",
    )
    p.add_argument("--history", type=int, default=20000, help="watch history size (events)")
    p.add_argument(
        "--advertise-host", metavar="HOST", help="host written to the kubeconfig (default: ADDR)"
    )
    p.add_argument("--tls", action="store_true", help="serve HTTPS with a self-signed certificate")
    p.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve HTTPS with this certificate (PEM; with --tls-key), e.g. one a lab's "
        "kubeconfigs trust",
    )
    p.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    p.add_argument(
        "--anonymous-admin",
        action="store_true",
        help="treat requests without credentials as the admin (kubectl over plain HTTP)",
    )


def run(args: argparse.Namespace) -> int:
    """(lab internal) Run the lab's Kubernetes API stand-in; prints `ready` once it serves, runs
    until SIGTERM/SIGINT.

    examples:
      lbd lab apiserver --crds crds --kubeconfig-out /tmp/kubeconfig
      lbd lab apiserver --listen 127.0.0.1:6443 --tls --token t1=alice
    """
    import sys
    from pathlib import Path

    from lbd.lab.apiserver.server import LabApiServer
    from lbd.lab.apiserver.tls import TlsFiles
    from lbd.runtime.signals import stop_event

    host, port = args.listen
    if bool(args.tls_cert) != bool(args.tls_key):
        print("lbd lab apiserver: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    tls: bool | TlsFiles = args.tls
    if args.tls_cert:
        cert, key = Path(args.tls_cert), Path(args.tls_key)
        for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
            if not path.is_file():
                print(f"lbd lab apiserver: {flag}: {path} is not a file", file=sys.stderr)
                return 2
        tls = TlsFiles(cert.parent, cert, key)
    advertise = args.advertise_host
    if advertise is None and host in ("0.0.0.0", "::"):
        advertise = "127.0.0.1" if host == "0.0.0.0" else "::1"
    try:
        server = LabApiServer(
            host,
            port,
            crds_dir=args.crds,
            rbac_files=args.rbac,
            history_size=args.history,
            admin_token=args.admin_token,
            advertise_host=advertise,
            tls=tls,
            anonymous_admin=args.anonymous_admin,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"lbd lab apiserver: {exc}", file=sys.stderr)
        return 1
    for token, user, groups in args.token:
        server.add_token(token, user, groups)
    stop = stop_event()
    try:
        server.start()
    except OSError as exc:
        print(f"lbd lab apiserver: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    if args.kubeconfig_out:
        server.write_kubeconfig(args.kubeconfig_out)
    print("ready", flush=True)
    stop.wait()
    server.stop()
    return 0

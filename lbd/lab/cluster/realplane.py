"""``lbd lab control-plane``: the real control plane as one supervised process of the lab.

The lab's supervisor runs this program in ``<prefix>-cp`` (under ``ip netns exec``), where it
starts :class:`~lbd.lab.control_plane.ControlPlane` (etcd, kube-apiserver, kube-controller-manager,
docs/LAB.md) bound to the lab's API address, 198.18.0.1:6443, with the lab's Service range
(:data:`~lbd.lab.cluster.layout.SERVICE_CIDRS`) and manifests (``crds/``, the ``deploy/``
namespace, ServiceAccounts and RBAC, kube-proxy's ServiceAccount). Everything it runs is its
child and dies with it (``PR_SET_PDEATHSIG``), so the supervisor's view, one process, is the
truth; a component that exits is restarted here with the same flags, as a kubelet restarts a
static pod.

Once ready it writes ``DIR/kubeconfig`` (the lab admin, for use inside the lab) and
``DIR/control-plane/state.json`` (URL, CA, admin token, versions, start-up time), which
``lbd lab up`` waits for. Its work folder ``DIR/control-plane`` holds the certificates, etcd's
data and the components' logs (linked from ``DIR/logs``).

kube-apiserver also writes an audit log (``DIR/control-plane/logs/audit.log``): one JSON line per
request of lbd's ServiceAccounts, so the RBAC test can list what lbd really calls on the real
server, as it does with the stand-in's audit record.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from lbd import log as lbd_log
from lbd.lab.apiserver.audit import AuditRecord
from lbd.lab.cluster.layout import API_IPV4, API_PORT, SERVICE_CIDRS

log = logging.getLogger(__name__)

WORKDIR = "control-plane"
STATE_FILE = "state.json"
AUDITED_NAMESPACE = "lbd-system"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")
ENDPOINTSLICE_BATCH = "100ms"


def state_path(lab_dir: Path) -> Path:
    return lab_dir / WORKDIR / STATE_FILE


def audit_log_path(lab_dir: Path) -> Path:
    return lab_dir / WORKDIR / "logs" / "audit.log"


def read_state(lab_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(state_path(lab_dir).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state


def audit_records(lab_dir: Path) -> list[AuditRecord]:
    """kube-apiserver's audit log of the lab, as the stand-in's distinct records with counts
    (``allowed`` is False for a 403, RBAC's refusal)."""
    counts: dict[AuditRecord, int] = {}
    with open(audit_log_path(lab_dir)) as fh:
        for line in fh:
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            record = AuditRecord(
                user=str((event.get("user") or {}).get("username", "")),
                verb=str(event.get("verb", "")),
                api_group=str(ref.get("apiGroup", "")),
                resource=str(ref.get("resource", "")),
                subresource=str(ref.get("subresource", "")),
                namespace=str(ref.get("namespace", "")),
                path="" if ref else str(event.get("requestURI", "")).split("?")[0],
                allowed=(event.get("responseStatus") or {}).get("code") != 403,
                count=0,
            )
            counts[record] = counts.get(record, 0) + 1
    return [dataclasses.replace(r, count=n) for r, n in counts.items()]


def _audit_policy(path: Path) -> Path:
    """Metadata for every request of a ServiceAccount of ``lbd-system``, nothing else."""
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "Metadata", "userGroups": [f"system:serviceaccounts:{AUDITED_NAMESPACE}"]},
            {"level": "None"},
        ],
    }
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    from lbd.lab.control_plane import ControlPlane, ControlPlaneError, find_binaries

    lbd_log.setup("info")
    lab_dir = Path(args.dir).resolve()
    work = lab_dir / WORKDIR
    (work / "logs").mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with contextlib.suppress(FileNotFoundError):
        state_path(lab_dir).unlink()
    plane = ControlPlane(
        find_binaries(),
        host=API_IPV4,
        port=API_PORT,
        workdir=work,
        service_cidrs=SERVICE_CIDRS,
        manifests=[Path(m) for m in args.manifest],
        apiserver_args=[
            f"--audit-policy-file={_audit_policy(work / 'audit-policy.yaml')}",
            f"--audit-log-path={audit_log_path(lab_dir)}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        ],
        controller_manager_args=[
            # Pod changes within 100 ms make one EndpointSlice update. Without it, marking a
            # dead node's pods not ready (one patch per pod) made the endpointslice controller
            # sync while its own previous write was not yet in its cache; it then retries after
            # its 1 s backoff ("EndpointSlice informer cache is out of date"), and clients waited
            # 1.3 s instead of 0.4 s for kube-proxy to drop the dead pods (measured).
            f"--endpointslice-updates-batch-period={ENDPOINTSLICE_BATCH}",
            # A node with pods behind 200 Services dying means 200 EndpointSlice writes. Each
            # controller's client may send 20 requests/s by default (burst 30), and the
            # endpointslice controller syncs 5 Services at a time: they took 10 s, then (at 200
            # requests/s) 4.7 s, to reach the last Service (measured; bench_failover). A lab API
            # server is not shared with anyone.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--concurrent-service-endpoint-syncs=50",
        ],
        start_timeout=args.timeout,
        die_with_parent=True,
    )
    try:
        plane.start()
    except ControlPlaneError as exc:
        log.error("control plane did not start", extra={"error": str(exc)})
        plane.stop()
        return 1
    for name in COMPONENTS:
        link = lab_dir / "logs" / f"{name}.log"
        with contextlib.suppress(OSError):
            link.unlink(missing_ok=True)
            link.symlink_to(work / "logs" / f"{name}.log")
    plane.write_kubeconfig(lab_dir / "kubeconfig")
    state = {
        "url": plane.url,
        "ca": str(plane.ca_cert),
        "admin_token": plane.admin_token,
        "version": plane.version.get("gitVersion"),
        "etcd_version": plane.etcd_version,
        "startup_seconds": round(plane.startup_seconds, 2),
        "binaries": str(plane.binaries.folder),
    }
    _write_atomic(state_path(lab_dir), json.dumps(state, indent=2) + "\n")
    log.info(
        "control plane %s ready in %.1f s", state["version"], plane.startup_seconds,
        extra={"address": plane.url},
    )  # fmt: skip
    try:
        while not stop.wait(0.5):
            running = plane.pids
            for name in COMPONENTS:
                if name not in running and not stop.is_set():
                    log.warning("component exited, restarting", extra={"key": name})
                    try:
                        plane.restart(name)
                    except ControlPlaneError as exc:
                        log.error("restart failed", extra={"key": name, "error": str(exc)})
                        time.sleep(1.0)  # then look again
    finally:
        with contextlib.suppress(FileNotFoundError):
            state_path(lab_dir).unlink()
        plane.stop()
    return 0

"""A real control plane for tests and the lab: etcd, kube-apiserver, kube-controller-manager.

::

    with ControlPlane() as plane:                       # binaries from find_binaries()
        print(plane.url, plane.startup_seconds)
        admin = plane.kube()                            # lbd.k8s.client.Kube, system:masters
        plane.apply_file("deploy/base/rbac.yaml")       # server-side apply, as the admin
        token = plane.service_account_token("lbd-system", "lbd-controller")   # TokenRequest
        plane.write_kubeconfig(path, token)

What runs, and why (the flags follow controller-runtime's envtest, ``controlplane/*.go``):

- **etcd** on the loopback of its network namespace (only kube-apiserver talks to it), data in
  the run's folder, ``--unsafe-no-fsync`` (a test cluster needs no durability and fsync is the
  slowest thing etcd does on a shared disk).
- **kube-apiserver**, TLS only, on ``host:port``: client certificates (``--client-ca-file``) and
  a static token for the admin (``system:masters``; a bearer token, so that it can pass a
  TLS-terminating proxy, see :mod:`.proxy`); ``--authorization-mode=RBAC`` (no Node authorizer:
  there are no kubelets); a service-account issuer and key pair, so TokenRequest hands out real
  tokens and lbd runs under its own ServiceAccount as on a cluster; dual-stack Service ranges
  inside the documentation ranges the lab may use; ``--advertise-address`` always, since without
  a default route kube-apiserver cannot pick one and exits.
- ``manifests`` (files or folders, e.g. ``crds/`` and ``deploy/`` RBAC) are applied with
  server-side apply once kube-apiserver is ready and before kube-controller-manager starts.
- **kube-controller-manager** with only controllers that make sense without kubelets
  (:data:`DEFAULT_CONTROLLERS`): no node-lifecycle or taint-eviction controller, which would mark
  nodes that never heartbeat NotReady and evict their pods. It authenticates with a client
  certificate (``system:kube-controller-manager``, group ``system:masters``).

Start-up waits for ``/readyz`` (as the admin: anonymous requests may get 403 while RBAC is still
bootstrapping), then for namespace ``default``, then (when the serviceaccount controller runs)
for the ``default`` ServiceAccount, which shows kube-controller-manager is at work.
``startup_seconds`` says how long that took.

Audit (``audit_policy``): kube-apiserver writes its audit log (JSON lines) under the run's
folder; :meth:`ControlPlane.audit_events` reads it, which is how the RBAC tests learn which calls
lbd's ServiceAccounts made and what the real authorizer decided (``tests/k8s/test_rbac.py``).

etcd snapshots: :meth:`ControlPlane.etcd_snapshot` copies etcd's data aside and
:meth:`ControlPlane.etcd_restore` puts it back the way the Kubernetes documentation restores a
cluster (stop kube-apiserver and kube-controller-manager, restore etcd, start them again): the
API then serves a history older than what its clients have seen (``tests/k8s/test_rewind.py``).

Clean-up: :meth:`stop` ends every process (SIGTERM, then SIGKILL) and removes the run's folder.
Children also get ``PR_SET_PDEATHSIG`` (``die_with_parent``, the default), so a test runner
killed with SIGKILL leaves no etcd or kube-apiserver behind; the lab, whose control plane must
outlive the ``lbd lab up`` command, turns that off and stops the plane itself.

Network namespaces (the lab, ``docs/LAB.md`` section 1b): with ``netns`` the processes run under
``ip netns exec NETNS``, kube-apiserver binds ``host`` there (e.g. ``198.18.0.1``), and every
request the harness makes runs through ``enter_netns(fn)``, a function that calls ``fn`` inside
that namespace (sockets keep the namespace they were made in).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client as k8s_client

from lbd.k8s.client import ApiError, JsonDict, Kube, Resource, api_transport
from lbd.lab.control_plane.binaries import Binaries, find_binaries
from lbd.lab.control_plane.certs import CertFiles, Pki
from lbd.lab.lifecycle import Startable

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_CONTROLLERS = (
    "serviceaccount-controller",  # the default ServiceAccount of each namespace
    "namespace-controller",  # without it a deleted namespace stays Terminating forever
    "garbage-collector-controller",  # ownerReferences (EndpointSlices of a deleted Service)
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "clusterrole-aggregation-controller",  # the admin/edit/view roles get their rules
    "root-ca-certificate-publisher-controller",  # kube-root-ca.crt, as pods expect
)
"""Controllers that make sense without kubelets (names from ``--controllers``)."""

SERVICE_CIDRS = ("198.19.0.0/16", "2001:db8:19::/112")
"""Service ClusterIP ranges: dual-stack (lbd hands out dual-stack VIPs), and inside
198.18.0.0/15 and 2001:db8::/32, the only ranges lbd's tests and lab may use."""

ADMIN_USER = "lbd-admin"
FIELD_MANAGER = "lbd-lab"


class ControlPlaneError(RuntimeError):
    """The control plane did not start; the message quotes the failing process's log."""


def _die_with_parent(argv: list[str]) -> list[str]:
    """``argv`` run so that it gets SIGKILL when the thread that started it ends.

    ``setpriv --pdeathsig`` (util-linux, in every Debian) sets ``PR_SET_PDEATHSIG`` and then
    execs ``argv`` in the same process, so no Python code has to run between fork and exec (a
    ``preexec_fn`` is unsafe in a program with threads). Without setpriv, ``argv`` as it is.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice for port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Process:
    """One child process, its log file, and how to stop it."""

    def __init__(self, name: str, argv: list[str], log_path: Path, *, die_with_parent: bool):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.popen = subprocess.Popen(
            _die_with_parent(argv) if die_with_parent else argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal goes to pytest, which stops us
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(timeout)
        self._log.close()


class ControlPlane(Startable):
    """etcd + kube-apiserver + kube-controller-manager, started by :meth:`start`."""

    def __init__(
        self,
        binaries: Binaries | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        netns: str | None = None,
        enter_netns: Callable[[Callable[[], Any]], Any] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        service_cidrs: Sequence[str] = SERVICE_CIDRS,
        apiserver_args: Sequence[str] = (),
        controller_manager_args: Sequence[str] = (),
        manifests: Sequence[str | os.PathLike[str]] = (),
        start_timeout: float = 60.0,
        die_with_parent: bool = True,
        audit_policy: Mapping[str, Any] | None = None,
    ) -> None:
        if netns is not None and enter_netns is None:
            raise ValueError(
                "enter_netns: needed with netns (a function that runs its argument inside the "
                "namespace, such as the lab's call_in_netns)"
            )
        self.binaries = binaries or find_binaries()
        self.host = host
        self.netns = netns
        self._enter = enter_netns
        # Ports: in a namespace of its own the usual ones are free; on a shared host pick free
        # ones, so that several test runs (and other programs) can run side by side.
        self.port = port or (6443 if netns else free_port(host))
        self.etcd_port = 2379 if netns else free_port()
        self.etcd_peer_port = 2380 if netns else free_port()
        self.controllers = tuple(controllers)
        self.service_cidrs = tuple(service_cidrs)
        self.apiserver_args = tuple(apiserver_args)
        self.controller_manager_args = tuple(controller_manager_args)
        self.manifests = tuple(Path(m) for m in manifests)
        self.start_timeout = start_timeout
        self.die_with_parent = die_with_parent
        self.audit_policy = dict(audit_policy) if audit_policy is not None else None
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path()
        self.admin_token = secrets.token_hex(24)
        self.startup_seconds = 0.0
        self.version: JsonDict = {}
        """kube-apiserver's ``/version``."""
        self.etcd_version = ""
        self.pki: Pki | None = None
        self._procs: list[_Process] = []
        self._ssl: ssl.SSLContext | None = None
        self._discovery: dict[str, list[JsonDict]] = {}
        self._admin: Kube | None = None
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{_url_host(self.host)}:{self.port}"

    @property
    def ca_cert(self) -> Path:
        assert self.pki is not None, "start() first"
        return self.pki.ca.cert

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self._procs if p.running()}

    def start(self) -> ControlPlane:
        started = time.monotonic()
        # A safety net for programs that end without stopping us (an exception in a script):
        # the processes would die with us anyway, this also removes the folder.
        atexit.register(self.stop)
        if self._own_workdir:
            self.workdir = Path(tempfile.mkdtemp(prefix="lbd-control-plane-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info(
            "control plane %s ready at %s in %.1f s",
            self.version.get("gitVersion"),
            self.url,
            self.startup_seconds,
        )
        return self

    def _start(self) -> None:
        work = self.workdir
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self.pki = Pki(work / "pki", [self.host], [self._first_service_ip()])
        self._ssl = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        tokens = work / "pki" / "tokens.csv"
        tokens.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=lbd",
                f"--data-dir={work / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=lbd={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", lambda: self._http_ok(f"{etcd_url}/health", tls=False))
        self.etcd_version = self.call(lambda: self._etcd_version(etcd_url))
        pki = self.pki
        audit_args: list[str] = []
        if self.audit_policy is not None:
            policy = work / "audit-policy.yaml"
            policy.write_text(yaml.safe_dump(self.audit_policy, sort_keys=False))
            # blocking mode (the default, said here for the reader): an event is in the file
            # before the response is sent, so a test reads every call it has seen answered
            audit_args = [
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
            ]
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                f"--secure-port={self.port}",
                f"--cert-dir={work / 'pki'}",
                f"--tls-cert-file={pki.serving.cert}",
                f"--tls-private-key-file={pki.serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                f"--token-auth-file={tokens}",
                f"--service-account-issuer={self.url}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={','.join(self.service_cidrs)}",
                "--allow-privileged=true",
                "--profiling=false",
                *audit_args,
                *self.apiserver_args,
            ],
        )
        self._wait("kube-apiserver", lambda: self._http_ok(f"{self.url}/readyz"))
        self._wait("kube-apiserver", lambda: self._exists("/api/v1/namespaces/default"))
        self.version = self.call(lambda: self.admin.get("/version"))
        # Before kube-controller-manager starts: its garbage collector looks for new resource
        # types only every 30 s, so a CRD applied later has its objects collected late.
        for manifest in self.manifests:
            if manifest.is_dir():
                self.apply_dir(manifest)
            else:
                self.apply_file(manifest)
        if not self.controllers:
            return
        kcm = pki.issue(
            "kube-controller-manager", "system:kube-controller-manager", ["system:masters"]
        )
        kcm_config = self.write_kubeconfig(work / "kube-controller-manager.kubeconfig", cert=kcm)
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kcm_config}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--controllers={','.join(self.controllers)}",
                f"--root-ca-file={pki.ca.cert}",
                f"--service-cluster-ip-range={','.join(self.service_cidrs)}",
                *self.controller_manager_args,
            ],
        )
        if "serviceaccount-controller" in self.controllers:
            self._wait(
                "kube-controller-manager",
                lambda: self._exists("/api/v1/namespaces/default/serviceaccounts/default"),
            )

    def stop(self) -> None:
        """Stop every process (newest first) and remove the run's folder. Idempotent."""
        atexit.unregister(self.stop)
        with self._lock:
            procs, self._procs = self._procs, []
            admin, self._admin = self._admin, None
        if admin is not None:
            admin.close()
        for proc in reversed(procs):
            # kube-apiserver may wait more than 10 s for open watches to end; its data goes
            # with the folder anyway
            proc.stop(3.0 if proc.name == "kube-apiserver" else 10.0)
        if self._own_workdir and self.workdir != Path() and self.workdir.exists():
            if os.environ.get("LBD_KEEP_LOGS"):
                log.warning("control plane logs kept in %s", self.workdir / "logs")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self, name: str = "kube-apiserver", *, grace: float = 2.0) -> float:
        """Stop one component (SIGTERM, SIGKILL after ``grace`` seconds) and start it again with
        the same flags; wait until it is ready. Returns the seconds it took.

        A restarted kube-apiserver rebuilds its watch cache from etcd, so a watch from a
        resourceVersion older than that gets 410 Gone. The short grace: with clients' watches
        open, kube-apiserver takes more than 10 s to finish a graceful stop (measured).
        """
        started = time.monotonic()
        argv = self._stop_component(name, grace)
        self._start_component(name, argv)
        return time.monotonic() - started

    def etcd_snapshot(self, name: str = "snapshot") -> Path:
        """Copy etcd's data as it is now aside (``etcd-snapshots/NAME`` in the run's folder) for
        :meth:`etcd_restore`; returns the copy.

        etcd is stopped for the copy and started again (about a second, which kube-apiserver
        rides through as any brief etcd outage): a consistent copy of a live etcd needs its
        snapshot API, i.e. etcdctl, which ``make k8s`` does not build. A copy of a stopped
        member's data directory restores to the same revisions as ``etcdutl snapshot restore``
        without ``--bump-revision`` does, the case where a rewind goes unannounced.
        """
        target = self.workdir / "etcd-snapshots" / name
        if target.exists():
            shutil.rmtree(target)
        argv = self._stop_component("etcd", 10.0)
        try:
            shutil.copytree(self.workdir / "etcd", target)
        finally:
            self._start_component("etcd", argv)
        return target

    def etcd_restore(self, snapshot: str | os.PathLike[str]) -> float:
        """Put etcd back to ``snapshot`` (from :meth:`etcd_snapshot`) as the Kubernetes
        documentation restores a cluster: stop kube-controller-manager and kube-apiserver, stop
        etcd, replace its data, start etcd, then kube-apiserver (ready), then
        kube-controller-manager. Clients are not told: their next requests meet an API whose
        history is older than what they have seen. Returns the seconds it took."""
        started = time.monotonic()
        order = [n for n in ("kube-controller-manager", "kube-apiserver", "etcd") if self._has(n)]
        argvs = {name: self._stop_component(name, 2.0) for name in order}
        data = self.workdir / "etcd"
        shutil.rmtree(data)
        shutil.copytree(Path(snapshot), data)
        for name in reversed(order):
            self._start_component(name, argvs[name])
        return time.monotonic() - started

    @property
    def audit_log(self) -> Path:
        """kube-apiserver's audit log (JSON lines; written only with ``audit_policy``)."""
        return self.workdir / "logs" / "audit.log"

    def audit_offset(self) -> int:
        """Where the audit log ends now: :meth:`audit_events` from here reads what comes next."""
        try:
            return self.audit_log.stat().st_size
        except FileNotFoundError:
            return 0

    def audit_events(self, offset: int = 0) -> list[JsonDict]:
        """The audit events (``audit.k8s.io/v1`` ``Event``) logged after byte ``offset``."""
        if self.audit_policy is None:
            raise ControlPlaneError("audit_events: the control plane runs without audit_policy")
        try:
            with self.audit_log.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        # a line still being written has no newline yet: leave it for the next read
        lines = data[: data.rfind(b"\n") + 1].splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def _has(self, name: str) -> bool:
        with self._lock:
            return any(p.name == name for p in self._procs)

    def _stop_component(self, name: str, grace: float) -> list[str]:
        with self._lock:
            proc = next(p for p in self._procs if p.name == name)
        proc.stop(grace)
        with self._lock:
            self._procs.remove(proc)
        return proc.argv

    def _start_component(self, name: str, argv: list[str]) -> None:
        self._spawn(name, argv, wrapped=True)
        if name == "kube-apiserver":
            self._wait(name, lambda: self._http_ok(f"{self.url}/readyz"))
        elif name == "etcd":
            self._wait(
                name, lambda: self._http_ok(f"http://127.0.0.1:{self.etcd_port}/health", tls=False)
            )

    def _spawn(self, name: str, argv: list[str], *, wrapped: bool = False) -> None:
        if self.netns is not None and not wrapped:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        proc = _Process(
            name,
            argv,
            self.workdir / "logs" / f"{name}.log",
            die_with_parent=self.die_with_parent,
        )
        with self._lock:
            self._procs.append(proc)

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        proc = next(p for p in self._procs if p.name == name)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if not proc.running():
                raise ControlPlaneError(
                    f"{name} exited with {proc.popen.returncode} while starting; "
                    f"its log ({proc.log_path}) ends:\n{proc.log_tail()}"
                )
            if self.call(ready):
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name} not ready after {self.start_timeout:.0f} s; "
                    f"its log ({proc.log_path}) ends:\n{proc.log_tail()}"
                )
            time.sleep(0.1)

    def _http_ok(self, url: str, *, tls: bool = True) -> bool:
        req = urllib.request.Request(url)
        if tls:
            req.add_header("Authorization", f"Bearer {self.admin_token}")
        try:
            with urllib.request.urlopen(req, timeout=2, context=self._ssl if tls else None) as r:
                return int(r.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    @staticmethod
    def _etcd_version(etcd_url: str) -> str:
        with urllib.request.urlopen(f"{etcd_url}/version", timeout=2) as r:
            return str(json.loads(r.read()).get("etcdserver", ""))

    def _exists(self, path: str) -> bool:
        try:
            self.admin.get(path)
        except ApiError:
            return False
        return True

    def _first_service_ip(self) -> str:
        import ipaddress

        return str(next(ipaddress.ip_network(self.service_cidrs[0]).hosts()))

    # -- clients --------------------------------------------------------------------------------

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` where the API server can be reached (inside ``netns`` when one is set)."""
        if self._enter is None:
            return fn()
        result: T = self._enter(fn)
        return result

    def configuration(
        self, token: str | None = None, *, cert: CertFiles | None = None, url: str | None = None
    ) -> k8s_client.Configuration:
        """An official-client ``Configuration``: ``token`` (default: the admin's) or ``cert``."""
        cfg = k8s_client.Configuration()
        cfg.host = url or self.url
        cfg.ssl_ca_cert = str(self.ca_cert)
        if cert is not None:
            cfg.cert_file, cfg.key_file = str(cert.cert), str(cert.key)
        else:
            cfg.api_key = {"BearerToken": token or self.admin_token}
            cfg.api_key_prefix = {"BearerToken": "Bearer"}
        cfg.retries = False
        return cfg

    def kube(self, token: str | None = None, *, timeout: tuple[float, float] = (5.0, 30.0)) -> Kube:
        """A new :class:`Kube` for ``token``, straight to kube-apiserver (the caller closes
        it: :meth:`Kube.close`)."""
        return Kube(api_transport(self.configuration(token), pool_size=32), timeout=timeout)

    @property
    def admin(self) -> Kube:
        """The harness's own admin client (one, kept until :meth:`stop`)."""
        with self._lock:
            if self._admin is None:
                self._admin = self.kube()
            return self._admin

    def kubeconfig(
        self,
        token: str | None = None,
        *,
        cert: CertFiles | None = None,
        url: str | None = None,
        name: str = "lbd",
    ) -> JsonDict:
        import base64

        user: JsonDict
        if cert is not None:
            user = {"client-certificate": str(cert.cert), "client-key": str(cert.key)}
        else:
            user = {"token": token or self.admin_token}
        ca = base64.b64encode(self.ca_cert.read_bytes()).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {"server": url or self.url, "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": name, "user": user}],
            "contexts": [
                {"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}
            ],
            "current-context": name,
            "preferences": {},
        }

    def write_kubeconfig(
        self,
        path: str | os.PathLike[str],
        token: str | None = None,
        *,
        cert: CertFiles | None = None,
        url: str | None = None,
    ) -> Path:
        """Write a kubeconfig (mode 0600) for ``token`` (default: the admin) or ``cert``."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(self.kubeconfig(token, cert=cert, url=url), fh, sort_keys=False)
        return out

    def service_account_token(
        self,
        namespace: str,
        name: str,
        *,
        expiration_seconds: int = 86400,
        audiences: Sequence[str] = (),
        create: bool = True,
        bound_pod: Mapping[str, Any] | None = None,
    ) -> str:
        """A token for ServiceAccount ``namespace/name`` from the TokenRequest API (the
        ServiceAccount, and its namespace, are created first when missing and ``create``);
        ``bound_pod``: bound to that Pod, as a kubelet's projected token is (valid while the
        Pod exists; the server puts the Pod's node into the token's user extra)."""
        if create:
            self.apply_object(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
            self.apply_object(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": namespace},
                }
            )
        spec: JsonDict = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        if bound_pod is not None:
            spec["boundObjectRef"] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": bound_pod["metadata"]["name"],
                "uid": bound_pod["metadata"]["uid"],
            }
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
        answer = self.call(lambda: self.admin.create(path, body))
        return str(answer["status"]["token"])

    def node_bound_token(self, namespace: str, name: str, node: str) -> str:
        """A token of ServiceAccount ``namespace/name`` as its Pod on ``node`` holds it: a Pod
        ``NAME-NODE`` (``spec.nodeName: NODE``, never run: there are no kubelets) is created,
        and the token is bound to it. kube-apiserver (v1.30 and later) then authenticates it
        with ``authentication.kubernetes.io/node-name: NODE`` in the user's extra, which is
        what lbd's admission policy reads (docs/SECURITY.md)."""
        self.service_account_token(namespace, name, expiration_seconds=600)  # SA and namespace
        pod = self.apply_object(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"{name}-{node}", "namespace": namespace},
                "spec": {
                    "nodeName": node,
                    "serviceAccountName": name,
                    "containers": [{"name": "main", "image": "lbd:never-run"}],
                },
            }
        )
        return self.service_account_token(namespace, name, create=False, bound_pod=pod)

    # -- applying manifests ---------------------------------------------------------------------

    def resource_for(self, api_version: str, kind: str) -> Resource:
        """The resource serving ``kind`` in ``api_version``, from the server's discovery."""
        group, _, version = api_version.rpartition("/")
        path = f"/apis/{api_version}" if group else f"/api/{version}"
        for attempt in range(2):
            resources = self._discovery.get(api_version)
            if resources is None or attempt:
                try:
                    doc = self.call(lambda: self.admin.get(path))
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    doc = {}
                resources = list(doc.get("resources") or [])
                self._discovery[api_version] = resources
            for res in resources:
                if res.get("kind") == kind and "/" not in res.get("name", ""):
                    return Resource(group, version, res["name"], kind, bool(res.get("namespaced")))
        raise ValueError(f"{api_version}/{kind}: the API server serves no such resource")

    def apply_object(self, obj: Mapping[str, Any]) -> JsonDict:
        """Create or update ``obj`` with server-side apply, as the admin (field manager
        ``lbd-lab``, conflicts forced); a CRD is waited for until it is Established."""
        res = self.resource_for(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        meta = obj.get("metadata") or {}
        namespace = (meta.get("namespace") or "default") if res.namespaced else None
        path = res.path(namespace=namespace, name=meta["name"])
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        body = json.loads(json.dumps(obj))  # a plain copy: SSA accepts JSON as YAML
        applied = self.call(
            lambda: self.admin.request(
                "PATCH", path, query=query, body=body, content_type="application/apply-patch+yaml"
            )
        )
        if obj.get("kind") == "CustomResourceDefinition":
            self._wait_established(meta["name"])
        return applied

    def _wait_established(self, name: str) -> None:
        """Wait until CRD ``name`` is Established and its resources can be listed: right after
        that kube-apiserver still answers ``429 storage is (re)initializing`` for a moment, while
        the new resource's watch cache fills (the stand-in never does)."""
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        deadline = time.monotonic() + 30
        lists: list[str] = []
        while time.monotonic() < deadline:
            if not lists:
                crd = self.call(lambda: self.admin.get(path))
                conds = {
                    c["type"]: c["status"]
                    for c in (crd.get("status") or {}).get("conditions") or []
                }
                if conds.get("Established") == "True":
                    spec = crd["spec"]
                    for v in spec["versions"]:
                        self._discovery.pop(f"{spec['group']}/{v['name']}", None)
                    lists = [
                        f"/apis/{spec['group']}/{v['name']}/{spec['names']['plural']}"
                        for v in spec["versions"]
                        if v.get("served")
                    ]
            if lists:
                try:
                    for url in lists:
                        self.call(lambda url=url: self.admin.get(url, query={"limit": 1}))  # type: ignore[misc]
                    return
                except ApiError as exc:
                    if exc.status != 429:
                        raise
            time.sleep(0.05)
        raise ControlPlaneError(f"CustomResourceDefinition {name} not usable after 30 s")

    def apply_documents(self, docs: Iterable[Any]) -> int:
        n = 0
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind"):
                self.apply_object(doc)
                n += 1
        return n

    def apply_file(self, path: str | os.PathLike[str]) -> int:
        """Apply every document of a YAML file; returns how many."""
        with open(path) as fh:
            return self.apply_documents(list(yaml.safe_load_all(fh)))

    def apply_dir(self, directory: str | os.PathLike[str]) -> int:
        """Apply every ``*.yaml`` / ``*.yml`` / ``*.json`` of ``directory`` (sorted)."""
        return sum(
            self.apply_file(p)
            for p in sorted(Path(directory).iterdir())
            if p.suffix in (".yaml", ".yml", ".json")
        )

"""The lab's process supervisor: one daemon per lab that owns every lab process.

``lbd lab up`` starts ``lbd lab supervise --dir DIR`` detached (its own session, so it outlives
the ``up`` command and a closed terminal). The supervisor reads the process plan from
``DIR/plan.json``, starts each process when told to, restarts it with exponential backoff when it
exits while it should be running, and writes every PID into ``DIR/lab.json`` (atomically) each
time one changes, so ``nodes[].speaker_pid`` is always the live speaker. Each process's stdout
and stderr go to ``DIR/logs/<name>.log``.

Processes run in their namespace through ``ip netns exec`` (which also mounts the namespace's
own ``/sys``, which tools that read ``/sys/class/net`` need). That happens in a private mount
namespace, where a namespace the process names (``/run/netns/NAME``) is seen by nobody else; a
process that creates named namespaces (the lab kubelet makes one per pod) is started with
``nsenter --net`` instead (``host_mounts``), which joins only the network namespace. Every
process gets
``LBD_LAB=<prefix>`` in its environment: ``lbd lab down --prefix P`` finds leftovers of a
crashed lab by that marker even when they run in the root namespace (the supervisor and the API
forwarder).

Control is a small JSON request/response protocol on a Unix socket (one request per
connection): ``status``, ``start``, ``stop`` (with a signal; the process is then *held* and not
restarted: that is how ``kill-node`` keeps a killed speaker dead until ``restore-node``) and
``shutdown``. A path-based Unix socket is reachable from every network namespace, so
``kill-node`` works from inside the lab as well as from the root namespace. The socket lives in
``/run/lbd-lab/<prefix>.sock`` because a lab directory under a deep path would exceed the
108-byte limit of socket addresses.

The API forwarder needs a listening socket in the *root* namespace (for the demo, tests and
anyone on the host) that connects *into* the control-plane namespace: the supervisor creates the
listener on 127.0.0.1 and hands its file descriptor to the forwarder, which runs in the
control-plane namespace; a socket keeps the namespace it was created in.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lbd import log as lbd_log
from lbd.lab.cluster.netns import netns_path

log = logging.getLogger(__name__)

SOCKET_DIR = Path("/run/lbd-lab")
PLAN_FILE = "plan.json"
LAB_FILE = "lab.json"
MARKER_ENV = "LBD_LAB"
_BACKOFF_MIN = 0.2
_BACKOFF_MAX = 5.0
_STABLE_AFTER = 10.0  # a process that ran this long starts over at the minimum backoff
_STOP_GRACE = 3.0


class SupervisorError(RuntimeError):
    """The supervisor could not be reached or refused a request."""


@dataclass(frozen=True)
class ProcSpec:
    """One lab process: a unique name, its argv, its namespace (None = root) and extra env."""

    name: str
    argv: tuple[str, ...]
    netns: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    pass_listener: bool = False  # receives the API forwarder's listening socket as --fd N
    autostart: bool = False  # started as soon as the supervisor runs (before any request)
    host_mounts: bool = False  # join only netns's network namespace (nsenter --net)


def socket_path(prefix: str) -> Path:
    return SOCKET_DIR / f"{prefix}.sock"


@dataclass
class _Proc:
    spec: ProcSpec
    popen: subprocess.Popen[bytes] | None = None
    desired: bool = False
    restarts: int = 0
    started_at: float = 0.0
    backoff: float = _BACKOFF_MIN
    next_start: float = 0.0
    last_exit: int | None = None


class Supervisor:
    """Runs the plan in ``lab_dir``; see the module docstring."""

    def __init__(self, lab_dir: Path) -> None:
        self.dir = lab_dir
        plan = json.loads((lab_dir / PLAN_FILE).read_text())
        self.prefix: str = plan["prefix"]
        self.logs = lab_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs = {p["name"]: _Proc(ProcSpec(**_spec_args(p))) for p in plan["processes"]}
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.set_inheritable(True)
        self.forward_port: int = self.listener.getsockname()[1]
        SOCKET_DIR.mkdir(parents=True, exist_ok=True)
        self.sock_path = socket_path(self.prefix)
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control.bind(str(self.sock_path))
        self.control.listen(16)
        self._running = True
        self._published: dict[str, int | None] = {}

    # -- processes --------------------------------------------------------------------------

    def _spawn(self, proc: _Proc) -> None:
        spec = proc.spec
        argv = list(spec.argv)
        fds: tuple[int, ...] = ()
        if spec.pass_listener:
            argv += ["--fd", str(self.listener.fileno())]
            fds = (self.listener.fileno(),)
        if spec.netns and spec.host_mounts:
            argv = ["nsenter", f"--net={netns_path(spec.netns)}", "--", *argv]
        elif spec.netns:
            argv = ["ip", "netns", "exec", spec.netns, *argv]
        env = {**os.environ, **spec.env, MARKER_ENV: self.prefix, "PYTHONUNBUFFERED": "1"}
        with open(self.logs / f"{spec.name}.log", "ab") as out:
            out.write(f"--- start {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            out.flush()
            proc.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, pass_fds=fds
            )
        proc.started_at = time.monotonic()
        log.info("started", extra={"key": spec.name, "count": proc.popen.pid})

    def _reap(self, now: float) -> None:
        for proc in self.procs.values():
            if proc.popen is None or proc.popen.poll() is None:
                continue
            proc.last_exit = proc.popen.returncode
            ran = now - proc.started_at
            proc.popen = None
            if not proc.desired:
                continue
            log.warning(
                "process exited, restarting",
                extra={"key": proc.spec.name, "count": proc.last_exit, "duration": round(ran, 2)},
            )
            proc.backoff = (
                _BACKOFF_MIN if ran > _STABLE_AFTER else min(proc.backoff * 2, _BACKOFF_MAX)
            )
            proc.next_start = now + proc.backoff
            proc.restarts += 1

    def _start_due(self, now: float) -> None:
        for proc in self.procs.values():
            if proc.desired and proc.popen is None and now >= proc.next_start:
                try:
                    self._spawn(proc)
                except OSError as exc:
                    log.error("cannot start", extra={"key": proc.spec.name, "error": str(exc)})
                    proc.next_start = now + _BACKOFF_MAX

    def _stop(self, names: list[str], sig: signal.Signals) -> None:
        procs = [self.procs[n] for n in names]
        for proc in procs:
            proc.desired = False
            if proc.popen is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(sig)
        deadline = time.monotonic() + _STOP_GRACE
        for proc in procs:
            if proc.popen is None:
                continue
            try:
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
            proc.last_exit = proc.popen.returncode
            proc.popen = None

    # -- lab.json ---------------------------------------------------------------------------

    def _publish_pids(self) -> None:
        pids = {n: (p.popen.pid if p.popen else None) for n, p in self.procs.items()}
        if pids == self._published:
            return
        path = self.dir / LAB_FILE
        try:
            lab = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        lab["pids"] = {"supervisor": os.getpid(), **pids}
        lab.setdefault("api", {})["host_url"] = f"https://127.0.0.1:{self.forward_port}"
        for node in lab.get("nodes", []):
            node["speaker_pid"] = pids.get(f"speaker-{node['name']}")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(lab, indent=2) + "\n")
        tmp.replace(path)
        self._published = pids

    # -- control ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "forward_port": self.forward_port,
            "processes": {
                name: {
                    "pid": p.popen.pid if p.popen else None,
                    "running": p.popen is not None,
                    "desired": p.desired,
                    "restarts": p.restarts,
                    "last_exit": p.last_exit,
                }
                for name, p in self.procs.items()
            },
        }

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        names = request.get("names") or []
        unknown = [n for n in names if n not in self.procs]
        if unknown:
            return {"error": f"names: unknown processes {unknown}"}
        if op == "status":
            return self.status()
        if op == "start":
            now = time.monotonic()
            for name in names:
                proc = self.procs[name]
                proc.desired, proc.backoff, proc.next_start = True, _BACKOFF_MIN, now
            self._start_due(now)
            self._publish_pids()
            return self.status()
        if op == "stop":
            self._stop(names, signal.Signals[request.get("signal", "SIGTERM")])
            self._publish_pids()
            return self.status()
        if op == "shutdown":
            self._running = False
            return {"ok": True}
        return {"error": f"op: unknown operation {op!r}"}

    def _serve_one(self) -> None:
        conn, _ = self.control.accept()
        with conn:
            conn.settimeout(5.0)
            try:
                with conn.makefile("rb") as reader:
                    data = reader.readline()
                reply = self.handle(json.loads(data or b"{}"))
            except (OSError, ValueError, KeyError) as exc:
                reply = {"error": str(exc)}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(self, "_running", False))
        now = time.monotonic()
        for proc in self.procs.values():
            if proc.spec.autostart:
                proc.desired, proc.next_start = True, now
        sel = selectors.DefaultSelector()
        sel.register(self.control, selectors.EVENT_READ)
        try:
            while self._running:
                for _key, _ in sel.select(timeout=0.05):
                    self._serve_one()
                now = time.monotonic()
                self._reap(now)
                self._start_due(now)
                self._publish_pids()
        finally:
            self._stop([n for n, p in self.procs.items() if p.popen is not None], signal.SIGTERM)
            self._publish_pids()
            self.control.close()
            with contextlib.suppress(FileNotFoundError):
                self.sock_path.unlink()


def _spec_args(raw: dict[str, Any]) -> dict[str, Any]:
    args = dict(raw)
    args["argv"] = tuple(args["argv"])
    return args


def spec_to_json(spec: ProcSpec) -> dict[str, Any]:
    return asdict(spec)


def request(prefix: str, op: str, *, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
    """Send one request to the supervisor of lab ``prefix`` and return its reply."""
    path = socket_path(prefix)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise SupervisorError(
                f"lab {prefix}: supervisor not reachable at {path}: {exc}"
            ) from exc
        sock.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
        with sock.makefile("rb") as reader:
            data = reader.readline()
    reply: dict[str, Any] = json.loads(data or b"{}")
    if "error" in reply:
        raise SupervisorError(f"lab {prefix}: {reply['error']}")
    return reply


def launch(lab_dir: Path, prefix: str, *, timeout: float = 10.0) -> int:
    """Start the supervisor daemon for ``lab_dir`` and wait until it answers; return its PID."""
    logs = lab_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, MARKER_ENV: prefix}
    with open(logs / "supervisor.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lbd", "lab", "supervise", "--daemonize", "--dir", str(lab_dir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
        )
    # The intermediate process forks the daemon and exits at once, so the daemon is nobody's
    # child here: it survives this command and never lingers as our zombie.
    proc.wait(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(request(prefix, "status", timeout=2.0)["pid"])
        except SupervisorError:
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"lab {prefix}: supervisor did not start; see {logs / 'supervisor.log'}"
                ) from None
            time.sleep(0.02)  # poll until the control socket answers


def run(args: argparse.Namespace) -> int:
    if args.daemonize:
        if os.fork():
            os._exit(0)
        os.setsid()
    lbd_log.setup("info")
    Supervisor(args.dir.resolve()).run()
    return 0

"""Running code inside a lab network namespace, from a process that lives outside it.

``setns(2)`` moves only the calling *thread*; a socket keeps the namespace it was created in for
its whole life. :func:`call_in_netns` uses both facts: it runs a function in a fresh thread that
first joins the namespace, so the caller's threads never leave the root namespace, and sockets the
function creates (a UDP prober, a raw ARP socket, a netlink socket) can then be used from any
thread. Writing ``/proc/sys/net/...`` from such a thread sets that namespace's sysctls, because
the kernel resolves those files in the opener's namespace.

Processes are found per namespace by comparing ``/proc/PID/ns/net`` inodes (what ``ip netns
pids`` does), which also finds processes that forgot to mention the lab in their command line.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

NETNS_RUN_DIR = Path("/var/run/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def netns_path(name: str) -> Path:
    return NETNS_RUN_DIR / name


def enter_netns(name: str) -> None:
    """Move the calling thread (only) into namespace ``name``: for a thread of our own that
    works there for its whole life; everything else uses :func:`call_in_netns`."""
    fd = os.open(netns_path(name), os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into netns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn()`` in a new thread inside namespace ``name`` and return its result (or raise)."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            enter_netns(name)
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=run, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def set_sysctls(name: str, values: dict[str, str]) -> None:
    """Set ``net.*`` sysctls (dotted names) inside namespace ``name``."""

    def write() -> None:
        for key, value in values.items():
            Path("/proc/sys", *key.split(".")).write_text(value)

    call_in_netns(name, write)


def namespaces_with_prefix(prefix: str) -> list[str]:
    """Named namespaces ``<prefix>-*`` (what a lab with that prefix may have left behind)."""
    if not NETNS_RUN_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_RUN_DIR.iterdir() if p.name.startswith(prefix + "-"))


def _inode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in_namespaces(names: Iterable[str]) -> list[int]:
    """PIDs of every process whose network namespace is one of ``names``."""
    inodes = {ino for ino in (_inode(netns_path(n)) for n in names) if ino is not None}
    if not inodes:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _inode(entry / "ns" / "net") in inodes:
            pids.append(int(entry.name))
    return pids


def pids_with_marker(marker: str) -> list[int]:
    """PIDs of processes whose environment contains ``marker`` (e.g. ``LBD_LAB=<prefix>``)."""
    needle = marker.encode()
    pids = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def kill_all(pids: Iterable[int], sig: signal.Signals = signal.SIGKILL) -> int:
    """Send ``sig`` to each PID that still exists; return how many were signalled."""
    count = 0
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            count += 1
    return count

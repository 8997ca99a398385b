"""The membership key file: read at start, then watched so that a rotated Secret takes effect.

Format and rotation design: :mod:`lbd.core.keyring` (one key per line, every key both signs and
verifies, a key that left the file is accepted ``--membership-key-grace`` seconds more).

How a change is noticed: by reading the file once a second and comparing its bytes with the
last content seen. Kubernetes updates a Secret volume by writing the new files into a fresh
timestamped directory and renaming a ``..data`` symlink over the old one (the kubelet's atomic
writer), so the path always opens either the whole old content or the whole new one. inotify
was considered and not chosen: a watch on the file follows the *old* target's inode, which never
changes (the old directory is deleted, the watch must be re-armed on the new one), so one has to
watch the directory for the ``..data`` rename instead; the standard library has no inotify (a
ctypes binding or a dependency); and it would miss a file updated another way (rewritten in
place, bind-mounted from the host). The poll costs one open and read of a tiny tmpfs file a
second, notices every kind of update, and its 1 s delay is nothing beside the kubelet's own
60-90 s. (A Secret mounted with ``subPath`` is never updated by the kubelet: the manifests mount
the directory.)

A changed file that is unusable (unreadable, empty, a key too short, too many keys) changes
nothing: the keys in use stay, the error is logged once per distinct content, and
``lbd_membership_key_reloads_total{result="Rejected"}`` counts it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from lbd.core.keyring import KeyFileError, parse_key_file
from lbd.metrics import SpeakerMetrics

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0


class MembershipKeyError(ValueError):
    """The membership key is missing or unusable."""


def read_keys(path: str | os.PathLike[str]) -> tuple[bytes, ...]:
    """The keys in ``path`` (:func:`lbd.core.keyring.parse_key_file`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise MembershipKeyError(f"membership key: cannot read {path}: {exc.strerror}") from exc
    try:
        return parse_key_file(data)
    except KeyFileError as exc:
        raise MembershipKeyError(f"membership key: {path} {exc}") from exc


def load_keys(path: str | os.PathLike[str] | None, *, insecure: bool = False) -> tuple[bytes, ...]:
    """The keys to start with.

    No path: refuse (:class:`MembershipKeyError`) unless ``insecure``, in which case the empty key
    is used - heartbeats still carry a MAC, but anyone on the network can forge one.
    """
    if path is None:
        if insecure:
            log.warning("membership heartbeats are NOT authenticated (--insecure-membership)")
            return (b"",)
        raise MembershipKeyError(
            "membership key: no key file given; mount one (--membership-key FILE) "
            "or pass --insecure-membership"
        )
    return read_keys(path)


class KeyFileWatcher:
    """Re-reads ``path`` every ``interval`` seconds; hands a changed, valid key list to ``apply``.

    ``apply`` returns True if the keys in use changed (:meth:`lbd.net.membership.Membership.
    set_keys`). :meth:`poll` does one check; :meth:`start` runs it on a thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        apply: Callable[[Sequence[bytes]], bool],
        *,
        interval: float = POLL_INTERVAL,
        metrics: SpeakerMetrics | None = None,
    ) -> None:
        self.path = Path(path)
        self.apply = apply
        self.interval = interval
        self.metrics = metrics
        self._seen: bytes | None = None  # the first poll re-applies the keys in use: no change
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            self._reject(f"cannot read {self.path}: {exc.strerror}")
            return
        if data == self._seen:
            self._error = None
            return
        self._seen = data
        try:
            keys = parse_key_file(data)
        except KeyFileError as exc:
            self._reject(f"{self.path} {exc}")
            return
        self._error = None
        if self.apply(keys) and self.metrics is not None:
            self.metrics.key_reloads_total.labels("Applied").inc()

    def _reject(self, why: str) -> None:
        if why == self._error:
            return  # said once per distinct problem; the file is read again every second
        self._error = why
        log.error(
            "membership key file changed but is unusable; the keys in use stay",
            extra={"error": why},
        )
        if self.metrics is not None:
            self.metrics.key_reloads_total.labels("Rejected").inc()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="key-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # never let a surprise end the watch: the next poll retries
                log.exception("membership key file check failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

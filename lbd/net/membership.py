"""Heartbeat transport: UDP sender and receiver threads around :mod:`lbd.core.membership`.

The wire format, authentication and the alive/leaving/dead state machine are pure
(``lbd.core.membership``); this module only moves datagrams and keeps time:

- a *sender* thread signs a heartbeat (fresh boot id per process, sequence +1 per heartbeat) and
  sends it to every peer every ``interval``, and at once when the local link health changes;
- a *receiver* thread verifies datagrams, feeds the table, and wakes at the next possible expiry
  so that a dead peer is noticed ``dead_after`` after its last heartbeat, not a full poll later.

``on_change`` runs on the receiver thread whenever the set of live peers or their reported
interfaces changes; it must be quick (the speaker's reconciler only sets a flag).

Errors on the socket (a peer's network unreachable, EINTR, ENETDOWN) are counted and never end
either thread: membership must outlive anything the network does.

Both threads ask for a real-time priority (:mod:`lbd.net.priority`): a heartbeat sender starved
of CPU for ``dead_after`` on a busy node would make its peers take its VIPs away.

Addresses: receivers accept a peer's heartbeat only from that peer's InternalIP (the address they
send their own heartbeats to, :mod:`lbd.core.membership`). On a node with several addresses the
kernel's routing could pick another source address, so when this node's own InternalIP is known
(``set_peers`` may include this node) every heartbeat is sent from it explicitly (``IP_PKTINFO``,
ip(7)); if the kernel refuses (the address is not on this host), heartbeats go out with the
routing's choice and a warning says why peers may drop them.

Keys: heartbeats are signed with, and accepted under, every key of a :class:`~lbd.core.keyring.
KeyRing` (the key file's keys plus those that left it less than the key grace ago), so that the
key rotates with no heartbeat of a live peer dropped (design: :mod:`lbd.core.keyring`).
:meth:`Membership.set_keys` takes a new key file content (:mod:`lbd.net.keyfile` watches the
file); the set in use is logged, and exported as ``lbd_membership_key_info``, once per change,
including the moment an old key's grace ends (noticed within one heartbeat interval; from then
on it is neither accepted nor used to sign).

The boot (:func:`new_boot`) names this process start: a hash of the kernel's boot id and the
start time read from CLOCK_BOOTTIME (never steps) and the wall clock (orders kernel boots).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from lbd.core.keyring import DEFAULT_GRACE, KeyRing, KeySet, describe
from lbd.core.membership import (
    DEFAULT_DEAD_AFTER,
    DEFAULT_INTERVAL,
    DEFAULT_PORT,
    Boot,
    Heartbeat,
    HeartbeatDrop,
    MembershipTable,
    PeerState,
    PeerStatus,
    decode,
    encode,
)
from lbd.metrics import SpeakerMetrics
from lbd.net.priority import raise_thread_priority
from lbd.runtime.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

LEAVING_COPIES = 3  # UDP may drop one; three back-to-back copies make a graceful exit reliable
IP_PKTINFO = 8  # <linux/in.h>; not exported by the socket module
SO_RXQ_OVFL = 40  # <asm-generic/socket.h>: each datagram carries the socket's drop count
SO_RCVBUFFORCE = 33
RCVBUF = 4 << 20  # 1 000 peers send 10 000 heartbeats/s: room for a stall of the receiver
KERNEL_BOOT_ID = "/proc/sys/kernel/random/boot_id"

PeerAddress = str | tuple[str, int]


def new_boot(boot_id_path: str = KERNEL_BOOT_ID) -> Boot:
    """A boot for this process start (see :class:`lbd.core.membership.Boot`).

    Without a readable kernel boot id, a random host tag makes every start its own "kernel
    boot", ordered by the wall clock alone (still correct unless the clock steps back across a
    restart).
    """
    try:
        raw = Path(boot_id_path).read_bytes().strip()
        host = hashlib.sha256(b"lbd-boot-host:" + raw).digest()[:8] if raw else os.urandom(8)
    except OSError:
        host = os.urandom(8)
    return Boot(
        host=host,
        started_ns=time.time_ns(),
        uptime_ns=time.clock_gettime_ns(time.CLOCK_BOOTTIME),
        nonce=os.urandom(8),
    )


def _pktinfo(source: str) -> list[tuple[int, int, bytes]]:
    """Ancillary data that makes ``sendmsg`` use ``source`` (struct in_pktinfo, ip(7))."""
    return [
        (socket.IPPROTO_IP, IP_PKTINFO, struct.pack("i4s4s", 0, socket.inet_aton(source), bytes(4)))
    ]


class Membership:
    """Heartbeats with the peer speakers; answers who is alive."""

    def __init__(
        self,
        *,
        node_name: str,
        key: bytes | Sequence[bytes],
        key_grace: float = DEFAULT_GRACE,
        bind: tuple[str, int] = ("0.0.0.0", DEFAULT_PORT),
        interval: float = DEFAULT_INTERVAL,
        dead_after: float = DEFAULT_DEAD_AFTER,
        clock: Clock = SYSTEM_CLOCK,
        on_change: Callable[[], None] | None = None,
        metrics: SpeakerMetrics | None = None,
        rt_priority: int | None = 1,
        boot: Boot | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"heartbeat interval: must be > 0 s, got {interval}")
        if dead_after <= interval:
            raise ValueError(
                f"dead_after: must exceed the heartbeat interval ({interval} s), got {dead_after}"
            )
        self.node_name = node_name
        self.interval = interval
        self.clock = clock
        self.on_change = on_change
        self.metrics = metrics
        self.rt_priority = rt_priority  # a starved sender would be declared dead by its peers
        self._ring = KeyRing(
            (key,) if isinstance(key, bytes) else key, grace=key_grace, now=clock.monotonic()
        )
        self._keys: KeySet = self._ring.keys(clock.monotonic())
        self._keys_until = self._ring.next_expiry  # the cached set is valid until then
        self._keys_version = -1  # the ring version last logged and exported
        self._bind = bind
        self.boot = boot or new_boot()
        self._seq = 0
        self._table = MembershipTable(node_name, dead_after)
        self._table.self_boot = self.boot
        self._lock = threading.Lock()
        self._peers: dict[str, tuple[str, int]] = {}
        self._source: str | None = None  # this node's InternalIP, when known: sent from it
        self._source_refused: str | None = None  # ... unless the kernel refused it (logged once)
        self._interfaces: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._send_now = threading.Event()
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = -1, -1
        self._threads: list[threading.Thread] = []
        self._last_view: dict[str, tuple[bool, frozenset[str]]] = {}
        self._seen_version = -1
        self._rxq_dropped = 0
        self._change_lock = threading.Lock()
        self.dropped: Counter[HeartbeatDrop] = Counter()
        self.sent = 0
        self.send_errors = 0
        self.received = 0
        with self._lock:
            self._refresh_keys(clock.monotonic())

    # -- configuration (any thread) ------------------------------------------------------
    def set_peers(self, peers: Mapping[str, PeerAddress]) -> None:
        """Peers by node name -> IP (default port) or (IP, port).

        Heartbeats of a peer are accepted only from its IP. This node may be included: its IP is
        then the source address of every heartbeat sent.
        """
        resolved = {
            name: (addr, self._bind[1]) if isinstance(addr, str) else addr
            for name, addr in peers.items()
        }
        own = resolved.pop(self.node_name, None)
        with self._lock:
            self._peers = resolved
            self._source = own[0] if own is not None and ":" not in own[0] else None
            self._table.set_peers({name: addr[0] for name, addr in resolved.items()})
        self._check_change()

    def set_interfaces_up(self, interfaces: frozenset[str]) -> None:
        """This node's announce interfaces that are up; a change is sent at once."""
        with self._lock:
            changed = interfaces != self._interfaces
            self._interfaces = frozenset(interfaces)
            self._table.self_interfaces = self._interfaces
            self._table.version += changed
        if changed:
            self._send_now.set()

    def set_keys(self, keys: Sequence[bytes]) -> bool:
        """The key file now holds ``keys`` (:mod:`lbd.core.keyring`): keys that left it are
        still accepted, and still used to sign, for the key grace. True if the keys changed."""
        with self._lock:
            changed = self._ring.load(keys, self.clock.monotonic())
            self._refresh_keys(self.clock.monotonic())
        return changed

    def _keys_at(self, now: float) -> KeySet:
        """The keys to sign with and accept at ``now``; O(1) except when a key expires."""
        if now >= self._keys_until:
            with self._lock:
                self._refresh_keys(now)
        return self._keys

    def _refresh_keys(self, now: float) -> None:
        """Under ``_lock``: take the ring's keys as of ``now``; say so once per change."""
        self._keys = self._ring.keys(now)
        self._keys_until = self._ring.next_expiry
        if self._ring.version == self._keys_version:
            return
        self._keys_version = self._ring.version
        state = self._ring.state(now)
        log.info(describe(state, now), extra={"node": self.node_name})
        if self.metrics is not None:
            info = self.metrics.key_info
            info.clear()
            for kid in state.current:
                info.labels(kid, "Current").set(1)
            for kid, _until in state.retiring:
                info.labels(kid, "Retiring").set(1)

    # -- queries -------------------------------------------------------------------------
    def alive(self) -> Mapping[str, PeerState]:
        """Every known peer and this node, with liveness as of now."""
        with self._lock:
            return self._table.view(self.clock.monotonic())

    def last_seen(self, node: str) -> float | None:
        """When this node last accepted a heartbeat from ``node`` (on :attr:`clock`)."""
        with self._lock:
            return self._table.last_seen(node)

    def alive_peers(self) -> Mapping[str, frozenset[str]]:
        """Live peers (this node excluded) -> the announce interfaces each reported up."""
        return {
            name: st.interfaces_up
            for name, st in self.alive().items()
            if st.alive and name != self.node_name
        }

    @property
    def port(self) -> int:
        """The bound UDP port (useful when binding port 0)."""
        return self._sock.getsockname()[1] if self._sock is not None else self._bind[1]

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:  # past net.core.rmem_max with CAP_NET_ADMIN (lbd.net.capabilities), else capped
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        with contextlib.suppress(OSError):  # heartbeats the kernel dropped are counted
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        sock.bind(self._bind)
        sock.setblocking(False)
        self._sock = sock
        self._wake_r, self._wake_w = os.pipe()
        for target, name in ((self._send_loop, "hb-send"), (self._recv_loop, "hb-recv")):
            t = threading.Thread(target=target, name=f"{name}-{self.node_name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, graceful: bool = True) -> None:
        """Stop; ``graceful`` first tells the peers we are leaving so they take over at once."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._send_now.set()
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        for t in self._threads:
            t.join(timeout=2.0)
        if graceful and self._sock is not None:
            for _ in range(LEAVING_COPIES):
                self._send_all(PeerStatus.LEAVING)
        if self._sock is not None:
            self._sock.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    # -- threads -------------------------------------------------------------------------
    def _send_all(self, status: PeerStatus) -> None:
        with self._lock:
            self._seq += 1
            hb = Heartbeat(self.node_name, self.boot, self._seq, status, self._interfaces)
            peers = list(self._peers.values())
            source = self._source if self._bind[0] in ("", "0.0.0.0") else None
        data = encode(hb, self._keys_at(self.clock.monotonic()))
        sock = self._sock
        assert sock is not None
        ancillary = _pktinfo(source) if source and source != self._source_refused else None
        sent = errors = 0
        for addr in peers:
            try:
                if ancillary is not None:
                    sock.sendmsg([data], ancillary, 0, addr)
                else:
                    sock.sendto(data, addr)
                sent += 1
            except OSError as exc:
                if ancillary is not None and exc.errno in (errno.EINVAL, errno.EADDRNOTAVAIL):
                    self._refuse_source(source)
                    ancillary = None
                # unreachable peer, ENETDOWN, full buffer: try again next interval
                errors += 1
        self.sent += sent
        self.send_errors += errors
        if self.metrics is not None:
            self.metrics.heartbeats_sent_total.inc(sent)
            self.metrics.heartbeat_send_errors_total.inc(errors)

    def _refuse_source(self, source: str | None) -> None:
        self._source_refused = source
        log.warning(
            "cannot send heartbeats from this node's InternalIP (not an address of this host); "
            "peers accept heartbeats only from it and will drop ours as WrongSource",
            extra={"node": self.node_name, "address": source},
        )

    def _send_loop(self) -> None:
        raise_thread_priority(self.rt_priority)
        # A fixed cadence: with 1 000 peers one round of sends takes milliseconds, and waiting a
        # full interval after it would stretch the period (measured: 8 000 instead of 10 000
        # heartbeats/s sent, tests/bench/bench_membership.py). After a stall, no catch-up burst.
        next_at = self.clock.monotonic()
        while not self._stop.is_set():
            self._send_all(PeerStatus.ALIVE)
            now = self.clock.monotonic()
            next_at = max(next_at + self.interval, now)
            self._send_now.wait(min(self.interval, next_at - now))
            self._send_now.clear()

    def _recv_loop(self) -> None:
        assert self._sock is not None
        sock = self._sock
        raise_thread_priority(self.rt_priority)
        while not self._stop.is_set():
            with self._lock:
                expiry = self._table.next_expiry(self.clock.monotonic())  # O(1)
            timeout = self.interval
            if expiry is not None:
                timeout = min(timeout, max(0.0, expiry - self.clock.monotonic()) + 0.001)
            try:
                ready, _, _ = select.select([sock.fileno(), self._wake_r], [], [], timeout)
            except InterruptedError:
                continue
            if sock.fileno() in ready:
                self._drain(sock)
            self._check_change()

    def _drain(self, sock: socket.socket) -> None:
        cmsg_space = socket.CMSG_SPACE(4)
        while True:
            try:
                data, ancillary, _flags, (source, _port) = sock.recvmsg(2048, cmsg_space)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.ENETDOWN, errno.ECONNREFUSED):
                    continue
                log.warning("heartbeat receive failed: %s", exc)
                return
            self.received += 1
            if self.metrics is not None:
                self.metrics.heartbeats_received_total.inc()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(value) >= 4:
                    self._kernel_drops(int.from_bytes(value[:4], "little"))
            hb = decode(data, self._keys_at(self.clock.monotonic()))
            if isinstance(hb, HeartbeatDrop):
                self._drop(hb)
                continue
            with self._lock:
                why = self._table.receive(hb, self.clock.monotonic(), source)
            if why is not None:
                self._drop(why)

    def _drop(self, why: HeartbeatDrop, count: int = 1) -> None:
        self.dropped[why] += count
        if self.metrics is not None:
            self.metrics.heartbeats_dropped_total.labels(why.value).inc(count)

    def _kernel_drops(self, total: int) -> None:
        """``total``: the socket's drop counter (SO_RXQ_OVFL) when this datagram was queued."""
        new = (total - self._rxq_dropped) & 0xFFFFFFFF
        self._rxq_dropped = total
        if new:
            self._drop(HeartbeatDrop.RECEIVE_BUFFER, new)

    def _check_change(self) -> None:
        with self._change_lock:
            with self._lock:
                self._table.expire(self.clock.monotonic())
                if self._table.version == self._seen_version:
                    return  # nothing that view() shows changed: no O(peers) view per datagram
                self._seen_version = self._table.version
            view = {n: (s.alive, s.interfaces_up) for n, s in self.alive().items()}
            if view == self._last_view:
                return
            self._last_view = view
        if self.metrics is not None:
            self.metrics.peers_alive.set(sum(1 for alive, _ in view.values() if alive))
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("membership on_change callback failed")

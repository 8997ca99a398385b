"""The ARP/NDP responder: answers for owned VIPs from a raw socket per interface.

Threads:

- one *port* thread per interface runs the hot path: blocking ``recv`` (with a kernel receive
  timeout, so there is no ``poll`` per frame) -> :func:`lbd.core.arp.decide_reply` /
  :func:`lbd.core.ndp.decide_reply` -> ``send``. It reads the interface's answer table
  through one attribute, which :meth:`Responder.set_owned` replaces with a new immutable
  object: the swap is atomic, the hot path takes no lock, and a VIP that is lost stops being
  answered with the very next frame.
  It counts in plain integers (no metrics library call per frame) and hands claims (another
  MAC announcing an owned VIP) to the announcer through a queue, so no user code and no logging
  run on the hot path. While one claim per VIP is on its way, later ones are not queued: the
  re-announcement that answers the first comes after them too (:mod:`lbd.core.conflict`).
- one *announcer* thread sends gratuitous ARP / unsolicited NA on the schedule of
  :class:`lbd.core.garp.GarpScheduler`, has every claim decided by the one
  :class:`lbd.core.conflict.ConflictJudge` (a hand-over in either direction is not a conflict;
  a real conflict is counted, logged, passed to ``on_conflict`` and re-announced) and copies
  the counters, drops by reason included, into :class:`lbd.metrics.SpeakerMetrics` once a
  second.

Port threads run with a real-time priority when allowed (:mod:`lbd.net.priority`): replies
must not wait for a CPU on a busy node.

Robustness: malformed frames are just drop reasons; ``EINTR``/``ENETDOWN``/``ENOBUFS`` are
counted and ignored; an interface that vanishes (its index changes or disappears) makes the port
close its socket and reopen it by name every ``reopen_delay`` seconds until it is back. Nothing
that arrives from the network ends a thread.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import queue
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from lbd.core import arp, ndp
from lbd.core.conflict import Claim, ConflictJudge, ConflictRule, Outcome, Verdict
from lbd.core.garp import GarpPlan, GarpScheduler
from lbd.metrics import SpeakerMetrics
from lbd.net.packet import open_packet_socket, set_multicast, take_drops
from lbd.net.priority import raise_thread_priority
from lbd.runtime.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

_ARP = b"\x08\x06"
_IGNORED_ERRNOS = frozenset({errno.EINTR, errno.EAGAIN, errno.ENETDOWN, errno.ENOBUFS})
RECV_TIMEOUT = 0.2  # s: how soon a port thread notices stop() or a vanished interface
CONFLICT_LOG_INTERVAL = 10.0  # per VIP: a GARP war is counted in full but logged this often


@dataclass(frozen=True, slots=True)
class _Table:
    """What one interface answers for (packed addresses, for lookups straight from the frame)."""

    arp: frozenset[bytes] = frozenset()
    ndp: frozenset[bytes] = frozenset()


_EMPTY = _Table()


def _mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _key(vip: str) -> tuple[bool, bytes]:
    """(is_ipv6, packed) for a VIP string; raises ValueError naming the VIP."""
    try:
        addr = ipaddress.ip_address(vip)
    except ValueError as exc:
        raise ValueError(f"owned: {vip!r} is not an IP address") from exc
    return addr.version == 6, addr.packed


class _Port:
    """One interface: its socket, its answer table and its receive thread."""

    def __init__(self, owner: Responder, ifname: str) -> None:
        self.owner = owner
        self.ifname = ifname
        self.table = _EMPTY
        self.mac = b""
        self.up = False  # socket open and bound
        self._sock: socket.socket | None = None
        self._ifindex = 0
        self._groups: set[bytes] = set()
        self._lock = threading.Lock()  # socket (re)open vs. group joins from set_owned
        self._stop = threading.Event()
        self.claims_queued: set[bytes] = set()  # VIPs with a claim on its way to the announcer
        # Hot-path counters: plain ints, read by the announcer thread.
        self.drops: Counter[StrEnum] = Counter()
        self.arp_requests = self.arp_replies = self.ndp_requests = self.ndp_replies = 0
        self.send_errors = 0
        self.reopens = 0
        self.buffer_drops = 0  # dropped by the kernel: our receive buffer was full
        self.thread = threading.Thread(target=self._run, name=f"responder-{ifname}", daemon=True)
        self.thread.start()

    # -- control (other threads) -----------------------------------------------------------
    def set_table(self, table: _Table) -> None:
        self.table = table  # the atomic swap; the hot path reads it once per frame
        with self._lock:
            self._sync_groups()

    def stop(self) -> None:
        """Stop answering now; the thread notices within ``RECV_TIMEOUT``."""
        self.table = _EMPTY
        self._stop.set()

    def join(self) -> None:
        self.thread.join(timeout=2.0)

    def send(self, frame: bytes) -> bool:
        sock = self._sock
        if sock is None:
            return False
        try:
            sock.send(frame)
            return True
        except OSError:
            self.send_errors += 1
            return False

    # -- internals ---------------------------------------------------------------------------
    def _sync_groups(self) -> None:
        """Join the solicited-node group of every owned IPv6 VIP, leave the others."""
        sock = self._sock
        if sock is None:
            self._groups.clear()
            return
        want = {ndp.solicited_node_mac(ip) for ip in self.table.ndp}
        for mac in want - self._groups:
            try:
                set_multicast(sock, self._ifindex, mac, join=True)
                self._groups.add(mac)
            except OSError as exc:
                log.warning("cannot join %s on %s: %s", _mac_str(mac), self.ifname, exc)
        for mac in self._groups - want:
            with contextlib.suppress(OSError):
                set_multicast(sock, self._ifindex, mac, join=False)
            self._groups.discard(mac)

    def _open(self) -> bool:
        try:
            ifindex = socket.if_nametoindex(self.ifname)
            sock, mac = open_packet_socket(self.ifname)
        except OSError:
            return False
        with self._lock:
            self._sock, self.mac, self._ifindex = sock, mac, ifindex
            self._groups.clear()
            self._sync_groups()
        self.up = True
        self.owner._port_opened(self.ifname)
        return True

    def poll_buffer_drops(self) -> int:
        with self._lock:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self.buffer_drops += take_drops(self._sock)
            return self.buffer_drops

    def _close(self) -> None:
        self.poll_buffer_drops()
        with self._lock:
            sock, self._sock = self._sock, None
            self._groups.clear()
        self.up = False
        if sock is not None:
            sock.close()

    def _vanished(self) -> bool:
        try:
            return socket.if_nametoindex(self.ifname) != self._ifindex
        except OSError:
            return True

    def _run(self) -> None:
        raise_thread_priority(self.owner.rt_priority)
        while not self._stop.is_set():
            if not self._open():
                self._stop.wait(self.owner.reopen_delay)
                continue
            try:
                self._serve()
            except Exception:  # a bug must not silently end answering on this interface
                log.exception("responder loop failed on %s; reopening", self.ifname)
            self._close()
            if not self._stop.is_set():
                self.reopens += 1
                self._stop.wait(self.owner.reopen_delay)

    def _serve(self) -> None:
        sock = self._sock
        assert sock is not None
        # Blocking recv with a kernel receive timeout: two syscalls per answered request
        # (recv, send) instead of four with poll + non-blocking reads, and a periodic wake-up to
        # notice stop() and a vanished interface.
        sock.settimeout(None)
        usec = int(RECV_TIMEOUT * 1e6)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, usec))
        recv, send = sock.recv, sock.send
        mac = self.mac
        arp_decide, ndp_decide = arp.decide_reply, ndp.decide_reply
        arp_claim, ndp_claim = arp.claimed_by_other, ndp.claimed_by_other
        arp_dropped = {arp.DropReason.GRATUITOUS, arp.DropReason.FROM_SELF}
        drops = self.drops
        my_macs = frozenset({mac})
        stopping = self._stop.is_set
        while not stopping():
            try:
                frame = recv(65535)
            except (BlockingIOError, TimeoutError):  # SO_RCVTIMEO expired: idle
                if self._vanished():
                    return
                continue
            except OSError as exc:
                if exc.errno in _IGNORED_ERRNOS:
                    if exc.errno == errno.ENETDOWN and self._vanished():
                        return
                    continue
                raise
            table = self.table
            if frame[12:14] == _ARP:
                out = arp_decide(frame, mac, table.arp)
                if isinstance(out, bytes):
                    self.arp_requests += 1
                    try:
                        send(out)
                        self.arp_replies += 1
                    except OSError:
                        self.send_errors += 1
                    continue
                drops[out] += 1
                if out in arp_dropped:
                    self.arp_requests += 1
                claim = arp_claim(frame, my_macs, table.arp)
            else:
                out6 = ndp_decide(frame, mac, table.ndp)
                if isinstance(out6, bytes):
                    self.ndp_requests += 1
                    try:
                        send(out6)
                        self.ndp_replies += 1
                    except OSError:
                        self.send_errors += 1
                    continue
                drops[out6] += 1
                claim = ndp_claim(frame, my_macs, table.ndp)
            if claim is not None:
                self._report_conflict(*claim)

    def _report_conflict(self, vip: bytes, mac: bytes) -> None:
        if vip in self.claims_queued:
            return  # the queued claim is answered after this one anyway
        self.claims_queued.add(vip)
        now = self.owner.clock.monotonic()
        claim = Claim(str(ipaddress.ip_address(vip)), self.ifname, _mac_str(mac), now)
        self.owner._claims.put((self, vip, claim))
        self.owner._wake.set()


def _port_counts(p: _Port) -> Counter[str]:
    out: Counter[str] = Counter(
        arp_requests=p.arp_requests,
        arp_replies=p.arp_replies,
        ndp_requests=p.ndp_requests,
        ndp_replies=p.ndp_replies,
        send_errors=p.send_errors,
        reopens=p.reopens,
        buffer_drops=p.poll_buffer_drops(),
    )
    for reason, n in list(p.drops.items()):
        family = "arp" if isinstance(reason, arp.DropReason) else "ndp"
        out[f"drop_{family}_{reason}"] += n
    return out


class Responder:
    """Answers ARP and NDP for the VIPs of the last table given to :meth:`set_owned`."""

    def __init__(
        self,
        *,
        node_name: str = "",
        metrics: SpeakerMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
        garp_plan: GarpPlan | None = None,
        on_conflict: Callable[[str, str], None] | None = None,
        on_announced: Callable[[str, float], None] | None = None,
        reopen_delay: float = 1.0,
        rt_priority: int | None = 1,
        conflict_rule: ConflictRule | None = None,
    ) -> None:
        self.node_name = node_name
        self.rt_priority = rt_priority  # SCHED_RR priority of the port threads; None = normal
        self.metrics = metrics
        self.clock = clock
        self.on_conflict = on_conflict
        self.on_announced = on_announced
        """``on_announced(vip, at)``: the first gratuitous frame for a VIP gained was sent at
        ``at`` (the end of a failover as clients see it: ``lbd_failover_seconds``)."""
        self.reopen_delay = reopen_delay
        self._judge = ConflictJudge(conflict_rule or ConflictRule())
        self._garp = GarpScheduler(garp_plan)
        self._lock = threading.Lock()
        self._ports: dict[str, _Port] = {}
        self._listen: frozenset[str] = frozenset()
        self._owned: dict[str, tuple[str, ...]] = {}
        self._unannounced: set[str] = set()  # gained, first gratuitous frame not sent yet
        self._claims: queue.SimpleQueue[tuple[_Port, bytes, Claim]] = queue.SimpleQueue()
        self._logged_conflict: dict[str, float] = {}  # VIP -> when its conflict was last logged
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._announcer: threading.Thread | None = None
        self._flushed: Counter[str] = Counter()
        self._retired: Counter[str] = Counter()  # counts of ports already closed
        self.garp_sent = 0
        self.conflicts: Counter[str] = Counter()
        self.handovers_seen = 0  # another MAC within the grace after gaining: not conflicts

    @property
    def conflict_rule(self) -> ConflictRule:
        return self._judge.rule

    @conflict_rule.setter
    def conflict_rule(self, rule: ConflictRule) -> None:
        with self._lock:
            self._judge.rule = rule

    # -- public API ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the announcer thread (idempotent; the ``set_*`` calls start it too)."""
        with self._lock:
            if self._announcer is None and not self._stopped.is_set():
                self._announcer = threading.Thread(
                    target=self._announce_loop, name="responder-announcer", daemon=True
                )
                self._announcer.start()

    def set_interfaces(self, names: Iterable[str]) -> None:
        """Interfaces to listen on even without an owned VIP (conflict watching, quick start)."""
        with self._lock:
            self._listen = frozenset(names)
            self._apply_locked()
        self.start()

    def set_owned(self, owned: Mapping[str, tuple[str, ...]]) -> None:
        """Replace the whole answer table: ``{vip: interfaces}``.

        Takes effect atomically per interface. VIPs gained (or announced on new interfaces) get
        a gratuitous burst; VIPs lost are not answered from the next frame on.
        """
        for vip in owned:
            _key(vip)  # validate before changing anything
        now = self.clock.monotonic()
        with self._lock:
            if self._stopped.is_set():
                return
            old = self._owned
            self._owned = {vip: tuple(ifs) for vip, ifs in owned.items()}
            self._apply_locked()
            self._judge.set_owned(self._owned, now)
            for vip in old.keys() - self._owned.keys():
                self._garp.discard(vip)
                self._unannounced.discard(vip)
            self._unannounced |= self._owned.keys() - old.keys()
            for vip, ifs in self._owned.items():
                if old.get(vip) != ifs:
                    self._garp.add(vip, now)
        self.start()
        self._wake.set()

    def owned(self) -> Mapping[str, tuple[str, ...]]:
        with self._lock:
            return dict(self._owned)

    def stop(self) -> None:
        """Stop answering at once, then stop the threads and close the sockets."""
        with self._lock:
            self._stopped.set()
            ports = list(self._ports.values())
            self._ports.clear()
            self._owned = {}
            self._judge.set_owned({}, self.clock.monotonic())
        for p in ports:
            p.stop()  # empties its table first
        self._wake.set()
        for p in ports:
            p.join()
        if self._announcer is not None:
            self._announcer.join(timeout=2.0)

    def ports_ready(self) -> bool:
        """True when every interface in use has an open socket (for tests and readiness)."""
        with self._lock:
            return all(p.up for p in self._ports.values())

    def stats(self) -> dict[str, int]:
        """Totals over all interfaces (replies, requests, drops by reason, errors)."""
        with self._lock:
            ports = list(self._ports.values())
        with self._lock:
            out: Counter[str] = Counter(self._retired)
        for p in ports:
            out.update(_port_counts(p))
        out["garp_sent"] = self.garp_sent
        out["conflicts"] = sum(self.conflicts.values())
        out["handovers_seen"] = self.handovers_seen
        return dict(out)

    # -- internals ----------------------------------------------------------------------------
    def _apply_locked(self) -> None:
        per_if: dict[str, tuple[set[bytes], set[bytes]]] = {n: (set(), set()) for n in self._listen}
        for vip, ifs in self._owned.items():
            is_v6, key = _key(vip)
            for ifname in ifs:
                v4set, v6set = per_if.setdefault(ifname, (set(), set()))
                (v6set if is_v6 else v4set).add(key)
        for ifname in list(self._ports.keys() - per_if.keys()):
            gone = self._ports.pop(ifname)
            gone.stop()
            self._retired.update(_port_counts(gone))
            threading.Thread(target=gone.join, daemon=True).start()
        for ifname, (v4, v6) in per_if.items():
            port = self._ports.get(ifname)
            if port is None:
                port = self._ports[ifname] = _Port(self, ifname)
            port.set_table(_Table(frozenset(v4), frozenset(v6)))

    def _port_opened(self, ifname: str) -> None:
        """A port (re)opened - maybe with a new MAC: announce its VIPs again from the start."""
        now = self.clock.monotonic()
        with self._lock:
            if self._stopped.is_set():
                return
            for vip, ifs in self._owned.items():
                if ifname in ifs:
                    self._garp.add(vip, now)
        self._wake.set()

    def _announce(self, vip: str, ifnames: Iterable[str]) -> bool:
        """Send ``vip``'s gratuitous frames on ``ifnames``; True if one left."""
        v6, key = _key(vip)
        sent = False
        for ifname in ifnames:
            port = self._ports.get(ifname)
            if port is None or not port.mac:
                continue
            frames = (ndp.unsolicited(key, port.mac),) if v6 else arp.gratuitous(key, port.mac)
            for frame in frames:
                if port.send(frame):
                    self.garp_sent += 1
                    sent = True
        return sent

    def _announce_loop(self) -> None:
        next_flush = self.clock.monotonic()
        while not self._stopped.is_set():
            now = self.clock.monotonic()
            first: list[tuple[str, float]] = []
            with self._lock:
                for vip in self._garp.due(now):
                    if self._announce(vip, self._owned.get(vip, ())) and vip in self._unannounced:
                        self._unannounced.discard(vip)
                        first.append((vip, self.clock.monotonic()))
                wake_at = self._garp.next_wakeup(now)
            for vip, sent_at in first:
                self._report_announced(vip, sent_at)
            judge_at = self._handle_conflicts()
            if now >= next_flush:
                self._flush_metrics()
                next_flush = now + 1.0
            timeout = next_flush - now
            for at in (wake_at, judge_at):
                if at is not None:
                    timeout = min(timeout, at - now)
            self._wake.wait(max(timeout, 0.0))
            self._wake.clear()
        self._flush_metrics()

    def _handle_conflicts(self) -> float | None:
        """Give new claims to the judge and act on what it decides; returns when to come back."""
        now = self.clock.monotonic()
        with self._lock:
            while True:
                try:
                    port, key, claim = self._claims.get_nowait()
                except queue.Empty:
                    break
                port.claims_queued.discard(key)  # later claims on that port are queued again
                self._judge.claim(claim)
            outcomes, wake = self._judge.decide(now)
            for outcome in outcomes:
                if outcome.reannounce:
                    # re-assert our claim once; in a hand-over to us it puts our MAC back in
                    # caches right after the previous owner's last reply
                    self._announce(outcome.first.vip, (outcome.first.interface,))
        for outcome in outcomes:
            if outcome.verdict is Verdict.CONFLICT:
                self._report(outcome, now)
            else:
                self.handovers_seen += 1
                c = outcome.first
                log.debug(
                    "another MAC answers during a hand-over",
                    extra={
                        "vip": c.vip,
                        "node": self.node_name,
                        "mac": c.mac,
                        "reason": outcome.verdict,
                    },
                )
        return wake

    def _report(self, outcome: Outcome, now: float) -> None:
        c = outcome.first
        self.conflicts[c.vip] += 1
        last = self._logged_conflict.get(c.vip)
        if last is None or now - last >= CONFLICT_LOG_INTERVAL:
            self._logged_conflict[c.vip] = now
            log.warning(
                "another MAC claims an owned VIP; re-announced",
                extra={
                    "vip": c.vip,
                    "node": self.node_name,
                    "mac": c.mac,
                    "interface": c.interface,
                    "count": self.conflicts[c.vip],
                },
            )
        if self.metrics is not None:
            self.metrics.vip_conflicts_total.labels(c.vip).inc()
        if self.on_conflict is not None:
            try:
                self.on_conflict(c.vip, c.mac)
            except Exception:
                log.exception("on_conflict callback failed")

    def _report_announced(self, vip: str, at: float) -> None:
        if self.on_announced is not None:
            try:
                self.on_announced(vip, at)
            except Exception:
                log.exception("on_announced callback failed")

    def _flush_metrics(self) -> None:
        if self.metrics is None:
            return
        totals = self.stats()
        m = self.metrics
        for name, counter in (
            ("arp_requests", m.arp_requests_total),
            ("arp_replies", m.arp_replies_total),
            ("ndp_requests", m.ndp_requests_total),
            ("ndp_replies", m.ndp_replies_total),
            ("garp_sent", m.garp_sent_total),
            ("buffer_drops", m.receive_buffer_drops_total),
            ("send_errors", m.send_errors_total),
            ("reopens", m.socket_reopens_total),
            ("handovers_seen", m.handovers_seen_total),
        ):
            delta = totals.get(name, 0) - self._flushed[name]
            if delta > 0:
                counter.inc(delta)
                self._flushed[name] += delta
        for name, total in totals.items():
            if not name.startswith("drop_") or total <= self._flushed[name]:
                continue
            family, _, reason = name.removeprefix("drop_").partition("_")
            dropped = m.arp_dropped_total if family == "arp" else m.ndp_dropped_total
            dropped.labels(reason).inc(total - self._flushed[name])
            self._flushed[name] = total

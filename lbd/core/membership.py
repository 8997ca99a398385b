"""Speaker membership: the heartbeat wire format and who is alive, without any I/O.

Wire format (version 3, network byte order), authenticated with HMAC-SHA256::

    magic "LBHB" (4) | version (1) | state (1: 0 alive, 1 leaving)
    | boot: host (8) | started, wall clock ns (8) | started, CLOCK_BOOTTIME ns (8) | nonce (8)
    | seq (8) | name length (1) | name (utf-8) | interface count (1) | per interface: length (1)
    | name
    | per key of the sender's ring: key id (4) | HMAC-SHA256 over all bytes before the first
      key id (32)
    | tag count (1, 1-8)

Version 3 adds the key ids and the several tags: a sender signs with every key of its ring, so
that the key can be rotated with no heartbeat of a live speaker dropped (the design is in
:mod:`lbd.core.keyring`). Version 2 carried one untagged HMAC; a speaker of one version drops
the other's heartbeats (``UnknownVersion``), so all nodes are upgraded together.

What the authentication relies on (and nothing else):

- HMAC (RFC 2104) with SHA-256 (FIPS 180-4) is a MAC: without the key nobody can produce a valid
  tag for a message that was not sent (RFC 2104 section 6; Bellare, Canetti, Krawczyk 1996). The
  tag is never truncated (RFC 2104 section 5 allows it; we keep all 32 bytes).
- Each tag covers *every* byte of the heartbeat's body: magic, version, state, the whole boot,
  the sequence number, the name and the interfaces. A changed version byte (a downgrade) breaks
  the tag like any other field.
- The encoding is unambiguous: fixed-size fields, each variable field prefixed by its length, and
  :func:`decode` refuses trailing bytes. So one signed byte string is one heartbeat; a valid tag
  cannot be re-read as different field values. The tags are outside the body and unsigned: the
  tag count only says where the body ends (a wrong count makes a different body, which no tag
  verifies), a key id only says which key a tag claims (any id can be written; only the HMAC
  decides), and removing a tag can only make a heartbeat be dropped, as dropping it would.
- A receiver verifies only the tags whose key id it holds (at most 8 tags, so at most 8 HMACs
  for one datagram, forged or not), compares in constant time (:func:`hmac.compare_digest`),
  and parses no field of the body before one tag verified. A heartbeat with no tag of a key the
  receiver holds is dropped as ``KeyMismatch`` (the sender uses another key: a configuration
  problem, or an old key after its grace); one with a tag of a held key that does not verify as
  ``BadMac`` (forged or corrupted). The version byte is read before any tag is verified, only to
  know the layout: ``UnknownVersion`` counts datagrams of another format, forged or not.

The HMAC proves who *made* a heartbeat, not when: anyone on the segment can capture one and send
it again later. Freshness therefore comes from order, judged by each receiver per peer:

- within one boot, the sequence number must grow (the sender counts up from 1);
- a boot is newer than another if it started later. Within one kernel boot of a machine (same
  ``host``: a hash of ``/proc/sys/kernel/random/boot_id``) "later" is read from CLOCK_BOOTTIME,
  which never steps, so clock steps and any number of restarts in a row keep the order exact.
  Across kernel boots it is read from the wall clock: a reboot takes far longer than the few
  seconds an NTP step moves the clock. The nonce (8 random bytes) breaks ties;
- a heartbeat of a boot newer than the one known replaces it (the peer restarted). A heartbeat
  of an older boot is dropped (``OldBoot``): a boot that is still heard is never retired by an
  older one, and a boot of the same host that is older is a replay in every case. Only when the
  known boot has gone silent (or left) may an older boot *of another kernel boot* replace it: a
  machine that rebooted with its clock behind (a real-time clock off by more than the previous
  speaker's uptime) must not stay dead for its peers. The kernel boots a receiver has moved away
  from are remembered, and never accepted again.

So a captured heartbeat replayed after any number of restarts is older than the boot the
receivers know and is dropped, and a replayed ``leaving`` is either a replay (same boot) or older.
Residual risk, by design: a receiver that has never heard any boot of a peer accepts the first one
it hears; a newer boot then always wins. A receiver that restarted while a peer was dead can thus
be shown that peer's old heartbeats (from a kernel boot it never saw) for as long as the capture
lasts; the peer's first real heartbeat ends it.

A heartbeat is accepted only from the address the receiver sends that peer its own heartbeats to
(the Node's InternalIP): a key alone is not enough to speak for another node from another host.
This is a check against misuse of the shared key and misrouted traffic, not against a forged IP
source address on the segment (the replay rules above do not depend on it).

Liveness is measured on the receiver's own monotonic clock from the arrival of the last valid
heartbeat (client-go's lesson: never trust another machine's timestamps for durations). A peer is
dead ``dead_after`` seconds after its last valid heartbeat, or at once when it says it is leaving.

Timing defaults: heartbeats every 100 ms, dead after 400 ms (4 intervals). The failover budget is
p99 < 1 s from the owner dying to clients reaching the new owner: detection takes between
``dead_after`` and ``dead_after + interval`` (0.4-0.5 s), election and the first gratuitous ARP
take milliseconds, leaving half the budget for timers and the client's retry. Four intervals
tolerate three consecutive lost heartbeats before a false failover. The cost is 10 small UDP
packets per second per peer (tests/bench/bench_membership.py measures it up to 1 000 nodes).
"""

from __future__ import annotations

import hmac
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from lbd.core.keyring import KEY_ID_LEN, MAX_KEYS, KeySet

MAGIC = b"LBHB"
VERSION = 3
MAC_LEN = 32
TAG_LEN = KEY_ID_LEN + MAC_LEN
BOOT_LEN = 32
MAX_NAME = 253  # a Kubernetes node name is a DNS subdomain
MAX_INTERFACES = 64
DEFAULT_PORT = 7947
DEFAULT_INTERVAL = 0.1
DEFAULT_DEAD_AFTER = 0.4
RETIRED_HOSTS = 16  # kernel boots of one peer a receiver remembers having moved away from
_U64 = 2**64
_FIXED = len(MAGIC) + 2 + BOOT_LEN + 8  # magic, version, state, boot, seq


class PeerStatus(IntEnum):
    ALIVE = 0
    LEAVING = 1


class HeartbeatDrop(StrEnum):
    """Why a received heartbeat was not accepted (counted per reason)."""

    MALFORMED = "Malformed"
    UNKNOWN_VERSION = "UnknownVersion"  # another wire format version (a speaker of a release
    # before or after this one)
    KEY_MISMATCH = "KeyMismatch"  # signed only with keys this node does not hold
    BAD_MAC = "BadMac"  # a tag of a key this node holds that does not verify: forged, corrupted
    UNKNOWN_NODE = "UnknownNode"
    WRONG_SOURCE = "WrongSource"  # not from the address of the node it names
    REPLAY = "Replay"  # same boot, sequence not newer
    OLD_BOOT = "OldBoot"  # a boot older than the one known, or of a kernel boot moved away from
    SELF = "Self"  # our own name from another boot: a second speaker with our name
    RECEIVE_BUFFER = "ReceiveBuffer"  # dropped by the kernel: the socket's buffer was full


@dataclass(frozen=True, slots=True)
class Boot:
    """One start of one speaker process; signed in every heartbeat it sends.

    ``host``: 8 bytes naming the machine's kernel boot; ``started_ns``: wall clock at start;
    ``uptime_ns``: CLOCK_BOOTTIME at start (monotonic within ``host``); ``nonce``: 8 random bytes.
    """

    host: bytes
    started_ns: int
    uptime_ns: int
    nonce: bytes

    def __post_init__(self) -> None:
        if len(self.host) != 8 or len(self.nonce) != 8:
            raise ValueError("Boot.host/Boot.nonce: must be 8 bytes each")
        for name in ("started_ns", "uptime_ns"):
            value = getattr(self, name)
            if not 0 <= value < _U64:
                raise ValueError(f"Boot.{name}: must fit in 64 bits, got {value}")

    def newer_than(self, other: Boot) -> bool:
        """Started after ``other`` (module docstring: uptime within a kernel boot, else wall)."""
        if self.host == other.host:
            return (self.uptime_ns, self.nonce) > (other.uptime_ns, other.nonce)
        return (self.started_ns, self.nonce) > (other.started_ns, other.nonce)

    def pack(self) -> bytes:
        return (
            self.host
            + self.started_ns.to_bytes(8, "big")
            + self.uptime_ns.to_bytes(8, "big")
            + self.nonce
        )

    @classmethod
    def unpack(cls, raw: bytes) -> Boot:
        return cls(
            host=raw[0:8],
            started_ns=int.from_bytes(raw[8:16], "big"),
            uptime_ns=int.from_bytes(raw[16:24], "big"),
            nonce=raw[24:32],
        )


@dataclass(frozen=True)
class Heartbeat:
    node: str
    boot: Boot
    seq: int
    status: PeerStatus = PeerStatus.ALIVE
    interfaces_up: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.node or len(self.node.encode()) > MAX_NAME:
            raise ValueError(f"Heartbeat.node: must be 1-{MAX_NAME} bytes, got {self.node!r}")
        if not 0 <= self.seq < _U64:
            raise ValueError(f"Heartbeat.seq: must fit in 64 bits, got {self.seq}")
        if len(self.interfaces_up) > MAX_INTERFACES or any(
            not i or len(i.encode()) > 255 for i in self.interfaces_up
        ):
            raise ValueError("Heartbeat.interfaces_up: at most 64 names of 1-255 bytes")


def _keyset(keys: bytes | KeySet) -> KeySet:
    return keys if isinstance(keys, KeySet) else KeySet.of(keys)


def encode(hb: Heartbeat, keys: bytes | KeySet) -> bytes:
    """Serialise ``hb`` and sign it with every key of ``keys`` (one tag each)."""
    name = hb.node.encode()
    parts = [
        MAGIC,
        bytes([VERSION, int(hb.status)]),
        hb.boot.pack(),
        hb.seq.to_bytes(8, "big"),
        bytes([len(name)]),
        name,
        bytes([len(hb.interfaces_up)]),
    ]
    for ifname in sorted(hb.interfaces_up):
        raw = ifname.encode()
        parts += [bytes([len(raw)]), raw]
    body = b"".join(parts)
    ring = _keyset(keys)
    # hmac.digest: the one-shot C implementation, a third cheaper than hmac.new() per datagram
    tags = [k.id + hmac.digest(k.secret, body, "sha256") for k in ring.keys]
    return body + b"".join(tags) + bytes([len(tags)])


def _verify(body: bytes, tags: bytes, keys: KeySet) -> HeartbeatDrop | None:
    """None if one tag verifies with a key of ``keys``, else why not (module docstring)."""
    held = False
    for at in range(0, len(tags), TAG_LEN):
        kid = tags[at : at + KEY_ID_LEN]
        secrets = keys.by_id.get(kid)
        if secrets is None:
            continue
        held = True
        mac = tags[at + KEY_ID_LEN : at + TAG_LEN]
        for secret in secrets:  # at most MAX_KEYS tags: a bounded cost for a forged datagram
            if hmac.compare_digest(mac, hmac.digest(secret, body, "sha256")):
                return None
    return HeartbeatDrop.BAD_MAC if held else HeartbeatDrop.KEY_MISMATCH


def decode(data: bytes, keys: bytes | KeySet) -> Heartbeat | HeartbeatDrop:
    """Verify and parse a datagram; a tag is verified before any field of the body is read."""
    if len(data) < 5 or data[:4] != MAGIC:
        return HeartbeatDrop.MALFORMED
    if data[4] != VERSION:  # read unverified, only to pick the layout: every tag covers it too
        return HeartbeatDrop.UNKNOWN_VERSION
    count = data[-1]
    end = len(data) - 1 - count * TAG_LEN
    if not 1 <= count <= MAX_KEYS or end < _FIXED + 3:  # 3: name length, a name, iface count
        return HeartbeatDrop.MALFORMED
    body = data[:end]
    why = _verify(body, data[end:-1], _keyset(keys))
    if why is not None:
        return why
    try:
        if body[5] not in (0, 1):
            return HeartbeatDrop.MALFORMED
        status = PeerStatus(body[5])
        boot = Boot.unpack(body[6 : 6 + BOOT_LEN])
        seq = int.from_bytes(body[_FIXED - 8 : _FIXED], "big")
        i = _FIXED
        n = body[i]
        raw_node = body[i + 1 : i + 1 + n]
        if n == 0 or len(raw_node) != n:
            return HeartbeatDrop.MALFORMED
        node = raw_node.decode()
        i += 1 + n
        count = body[i]
        i += 1
        names: list[str] = []
        for _ in range(count):
            n = body[i]
            raw = body[i + 1 : i + 1 + n]
            if len(raw) != n:
                return HeartbeatDrop.MALFORMED
            names.append(raw.decode())
            i += 1 + n
        if i != len(body):
            return HeartbeatDrop.MALFORMED
        return Heartbeat(node, boot, seq, status, frozenset(names))
    except (IndexError, UnicodeDecodeError, ValueError):
        return HeartbeatDrop.MALFORMED


@dataclass(frozen=True)
class PeerState:
    """What this speaker believes about one peer."""

    name: str
    alive: bool
    interfaces_up: frozenset[str] = frozenset()
    boot: Boot | None = None
    seq: int = 0
    last_seen: float | None = None  # receiver's monotonic time of the last valid heartbeat
    leaving: bool = False
    address: str | None = None  # where its heartbeats must come from


@dataclass
class _Peer:
    address: str
    boot: Boot | None = None
    seq: int = -1
    last_seen: float | None = None
    leaving: bool = False
    interfaces_up: frozenset[str] = frozenset()
    retired_hosts: deque[bytes] = field(default_factory=lambda: deque(maxlen=RETIRED_HOSTS))


class MembershipTable:
    """The receive-side state machine. Not thread-safe: the transport serialises calls.

    ``receive`` applies the order, replay and source rules to one decoded heartbeat; ``view``
    answers who is alive at a given time. Peers and their addresses come from the speaker wiring
    (``set_peers``: Node name -> InternalIP); heartbeats naming anything else are dropped.

    Cost per heartbeat is O(1), so that a node with 1 000 peers (10 000 heartbeats a second) does
    not scan its table per datagram: live peers are kept in order of their last heartbeat (each
    accepted one moves its peer to the end), so the next peer to expire is always the first one.
    ``version`` grows whenever the answer of ``view`` may have changed (a peer came alive, left,
    died, reported other interfaces, or the peer set changed); the transport builds a view and
    tells the speaker only then.
    """

    def __init__(self, self_name: str, dead_after: float = DEFAULT_DEAD_AFTER) -> None:
        if dead_after <= 0:
            raise ValueError(f"dead_after: must be > 0 seconds, got {dead_after}")
        self.self_name = self_name
        self.dead_after = dead_after
        self.self_interfaces: frozenset[str] = frozenset()
        self.self_boot: Boot | None = None
        self.version = 0
        self._peers: dict[str, _Peer] = {}
        self._live: OrderedDict[str, float] = OrderedDict()  # name -> last_seen, oldest first

    def set_peers(self, peers: Mapping[str, str]) -> None:
        """Replace the peers (name -> address); a peer that stays keeps its state.

        A peer whose address changed keeps its boot and sequence (the same speaker, renumbered):
        only where its heartbeats must come from changes.
        """
        wanted = {name: addr for name, addr in peers.items() if name != self.self_name}
        for gone in set(self._peers) - set(wanted):
            del self._peers[gone]
            self._live.pop(gone, None)
            self.version += 1
        for name, addr in wanted.items():
            peer = self._peers.get(name)
            if peer is None:
                self._peers[name] = _Peer(address=addr)
                self.version += 1
            else:
                peer.address = addr

    def receive(self, hb: Heartbeat, now: float, source: str) -> HeartbeatDrop | None:
        """Apply one authenticated heartbeat that came from ``source`` at ``now``.

        Returns None if it was accepted, else why not.
        """
        if hb.node == self.self_name:
            return None if hb.boot == self.self_boot else HeartbeatDrop.SELF
        peer = self._peers.get(hb.node)
        if peer is None:
            return HeartbeatDrop.UNKNOWN_NODE
        if source != peer.address:
            return HeartbeatDrop.WRONG_SOURCE
        current = peer.boot
        if current is not None and hb.boot == current:
            if hb.seq <= peer.seq:
                return HeartbeatDrop.REPLAY
        elif current is not None:
            why = self._new_boot(peer, current, hb.boot, now)
            if why is not None:
                return why
        was_alive = self._is_alive(peer, now)
        leaving = hb.status is PeerStatus.LEAVING
        if not was_alive or leaving or hb.interfaces_up != peer.interfaces_up:
            self.version += 1
        peer.boot = hb.boot
        peer.seq = hb.seq
        peer.last_seen = now
        peer.leaving = leaving
        peer.interfaces_up = hb.interfaces_up
        if leaving:
            self._live.pop(hb.node, None)
        else:
            self._live[hb.node] = now
            self._live.move_to_end(hb.node)
        return None

    def _new_boot(self, peer: _Peer, current: Boot, new: Boot, now: float) -> HeartbeatDrop | None:
        """May ``new`` replace ``current``? Retires ``current``'s kernel boot when it does."""
        if new.host in peer.retired_hosts:
            return HeartbeatDrop.OLD_BOOT
        # Older: within one kernel boot always a replay; from another kernel boot it may be a
        # machine that came back with its clock behind, once the known boot has gone silent.
        older = not new.newer_than(current)
        if older and (new.host == current.host or self._is_alive(peer, now)):
            return HeartbeatDrop.OLD_BOOT
        if new.host != current.host:
            peer.retired_hosts.append(current.host)
        return None

    def _is_alive(self, peer: _Peer, now: float) -> bool:
        return (
            not peer.leaving
            and peer.last_seen is not None
            and now - peer.last_seen <= self.dead_after
        )

    def view(self, now: float) -> Mapping[str, PeerState]:
        """Every known peer and this node (always alive) as of ``now``."""
        out = {
            self.self_name: PeerState(
                name=self.self_name,
                alive=True,
                interfaces_up=self.self_interfaces,
                boot=self.self_boot,
            )
        }
        for name, p in sorted(self._peers.items()):
            out[name] = PeerState(
                name=name,
                alive=self._is_alive(p, now),
                interfaces_up=p.interfaces_up,
                boot=p.boot,
                seq=max(p.seq, 0),
                last_seen=p.last_seen,
                leaving=p.leaving,
                address=p.address,
            )
        return out

    def last_seen(self, name: str) -> float | None:
        """When the last valid heartbeat of ``name`` arrived (receiver's monotonic time)."""
        peer = self._peers.get(name)
        return None if peer is None else peer.last_seen

    def expire(self, now: float) -> None:
        """Note the peers that died by ``now`` (bumps ``version`` if any did)."""
        live = self._live
        while live:
            name, last_seen = next(iter(live.items()))
            if now - last_seen <= self.dead_after:
                return
            del live[name]
            self.version += 1

    def next_expiry(self, now: float) -> float | None:
        """The earliest time a currently alive peer would be declared dead (for timers)."""
        self.expire(now)
        if not self._live:
            return None
        return next(iter(self._live.values())) + self.dead_after

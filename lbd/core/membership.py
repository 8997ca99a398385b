"""Speaker membership: the heartbeat wire format and who is alive, without any I/O.

Wire format (version 1, network byte order), authenticated with HMAC-SHA256::

    magic "LBHB" (4) | version (1) | state (1: 0 alive, 1 leaving) | boot id (16) | seq (8)
    | name length (1) | name (utf-8) | interface count (1) | per interface: length (1) | name
    | HMAC-SHA256 over all preceding bytes (32)

Replay protection without synchronised clocks: a heartbeat is accepted only if its sequence number
is greater than the last accepted one of the same boot id. A sender picks a fresh random boot id
at each start (so its sequence may restart at 1), and receivers remember a few retired boot ids
per peer so that a captured heartbeat of an earlier boot cannot be replayed to resurrect (or
"leave") a peer. A replay of a boot this receiver never saw cannot be detected this way; its
sequence numbers would still have to beat the current boot's once that boot is heard again.

Liveness is measured on the receiver's own monotonic clock from the arrival of the last valid
heartbeat (client-go's lesson: never trust another machine's timestamps). A peer is dead
``dead_after`` seconds after its last valid heartbeat, or at once when it says it is leaving.

Timing defaults: heartbeats every 100 ms, dead after 400 ms (4 intervals). The failover budget is
p99 < 1 s from the owner dying to clients reaching the new owner: detection takes between
``dead_after`` and ``dead_after + interval`` (0.4-0.5 s), election and the first gratuitous ARP
take milliseconds, leaving half the budget for timers and the client's retry. Four intervals
tolerate three consecutive lost heartbeats before a false failover. The cost is 10 small UDP
packets per second per peer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

MAGIC = b"LBHB"
VERSION = 1
MAC_LEN = 32
MAX_NAME = 253  # a Kubernetes node name is a DNS subdomain
MAX_INTERFACES = 64
DEFAULT_PORT = 7947
DEFAULT_INTERVAL = 0.1
DEFAULT_DEAD_AFTER = 0.4
RETIRED_BOOTS = 8


class PeerStatus(IntEnum):
    ALIVE = 0
    LEAVING = 1


class HeartbeatDrop(StrEnum):
    """Why a received heartbeat was not accepted (counted per reason)."""

    MALFORMED = "Malformed"
    BAD_MAC = "BadMac"
    UNKNOWN_NODE = "UnknownNode"
    REPLAY = "Replay"  # sequence not newer for this boot id, or a retired boot id
    SELF = "Self"  # our own name from another boot: a second speaker with our name


@dataclass(frozen=True)
class Heartbeat:
    node: str
    boot_id: bytes
    seq: int
    status: PeerStatus = PeerStatus.ALIVE
    interfaces_up: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.node or len(self.node.encode()) > MAX_NAME:
            raise ValueError(f"Heartbeat.node: must be 1-{MAX_NAME} bytes, got {self.node!r}")
        if len(self.boot_id) != 16:
            raise ValueError("Heartbeat.boot_id: must be 16 bytes")
        if not 0 <= self.seq < 2**64:
            raise ValueError(f"Heartbeat.seq: must fit in 64 bits, got {self.seq}")
        if len(self.interfaces_up) > MAX_INTERFACES or any(
            not i or len(i.encode()) > 255 for i in self.interfaces_up
        ):
            raise ValueError("Heartbeat.interfaces_up: at most 64 names of 1-255 bytes")


def encode(hb: Heartbeat, key: bytes) -> bytes:
    """Serialise and sign ``hb``."""
    name = hb.node.encode()
    parts = [
        MAGIC,
        bytes([VERSION, int(hb.status)]),
        hb.boot_id,
        hb.seq.to_bytes(8, "big"),
        bytes([len(name)]),
        name,
        bytes([len(hb.interfaces_up)]),
    ]
    for ifname in sorted(hb.interfaces_up):
        raw = ifname.encode()
        parts += [bytes([len(raw)]), raw]
    body = b"".join(parts)
    return body + hmac.new(key, body, hashlib.sha256).digest()


def decode(data: bytes, key: bytes) -> Heartbeat | HeartbeatDrop:
    """Verify and parse a datagram; the MAC is checked before any field is trusted."""
    if len(data) < len(MAGIC) + 2 + 16 + 8 + 2 + MAC_LEN or data[:4] != MAGIC:
        return HeartbeatDrop.MALFORMED
    body, mac = data[:-MAC_LEN], data[-MAC_LEN:]
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        return HeartbeatDrop.BAD_MAC
    try:
        if body[4] != VERSION or body[5] not in (0, 1):
            return HeartbeatDrop.MALFORMED
        status = PeerStatus(body[5])
        boot_id = body[6:22]
        seq = int.from_bytes(body[22:30], "big")
        i = 30
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
        return Heartbeat(node, boot_id, seq, status, frozenset(names))
    except (IndexError, UnicodeDecodeError, ValueError):
        return HeartbeatDrop.MALFORMED


@dataclass(frozen=True)
class PeerState:
    """What this speaker believes about one peer."""

    name: str
    alive: bool
    interfaces_up: frozenset[str] = frozenset()
    boot_id: bytes = b""
    seq: int = 0
    last_seen: float | None = None  # receiver's monotonic time of the last valid heartbeat
    leaving: bool = False


@dataclass
class _Peer:
    boot_id: bytes = b""
    seq: int = -1
    last_seen: float | None = None
    leaving: bool = False
    interfaces_up: frozenset[str] = frozenset()
    retired: deque[bytes] = field(default_factory=lambda: deque(maxlen=RETIRED_BOOTS))


class MembershipTable:
    """The receive-side state machine. Not thread-safe: the transport serialises calls.

    ``receive`` verifies order/replay rules for one decoded heartbeat; ``view`` answers who is
    alive at a given time. Peers are named by the speaker wiring (``set_peers``); heartbeats from
    names outside that set are dropped.
    """

    def __init__(self, self_name: str, dead_after: float = DEFAULT_DEAD_AFTER) -> None:
        if dead_after <= 0:
            raise ValueError(f"dead_after: must be > 0 seconds, got {dead_after}")
        self.self_name = self_name
        self.dead_after = dead_after
        self.self_interfaces: frozenset[str] = frozenset()
        self._peers: dict[str, _Peer] = {}
        self.self_boot_id = b""

    def set_peers(self, names: frozenset[str] | set[str]) -> None:
        """Replace the set of known peers; state of peers that stay is kept."""
        wanted = set(names) - {self.self_name}
        for gone in set(self._peers) - wanted:
            del self._peers[gone]
        for name in wanted:
            self._peers.setdefault(name, _Peer())

    def receive(self, hb: Heartbeat, now: float) -> HeartbeatDrop | None:
        """Apply one authenticated heartbeat received at ``now``; None if accepted."""
        if hb.node == self.self_name:
            return None if hb.boot_id == self.self_boot_id else HeartbeatDrop.SELF
        peer = self._peers.get(hb.node)
        if peer is None:
            return HeartbeatDrop.UNKNOWN_NODE
        if hb.boot_id == peer.boot_id:
            if hb.seq <= peer.seq:
                return HeartbeatDrop.REPLAY
        else:
            if hb.boot_id in peer.retired:
                return HeartbeatDrop.REPLAY
            if peer.boot_id:
                peer.retired.append(peer.boot_id)
            peer.boot_id = hb.boot_id
        peer.seq = hb.seq
        peer.last_seen = now
        peer.leaving = hb.status is PeerStatus.LEAVING
        peer.interfaces_up = hb.interfaces_up
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
                name=self.self_name, alive=True, interfaces_up=self.self_interfaces
            )
        }
        for name, p in sorted(self._peers.items()):
            out[name] = PeerState(
                name=name,
                alive=self._is_alive(p, now),
                interfaces_up=p.interfaces_up,
                boot_id=p.boot_id,
                seq=max(p.seq, 0),
                last_seen=p.last_seen,
                leaving=p.leaving,
            )
        return out

    def next_expiry(self, now: float) -> float | None:
        """The earliest time a currently alive peer would be declared dead (for timers)."""
        times = [
            p.last_seen + self.dead_after
            for p in self._peers.values()
            if self._is_alive(p, now) and p.last_seen is not None
        ]
        return min(times) if times else None

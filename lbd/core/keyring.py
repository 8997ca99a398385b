"""The membership key ring: which keys sign heartbeats and which verify them, at each moment.

Rotating the shared heartbeat key must never make a live speaker deaf to another. Kubernetes
updates a mounted Secret on each node on its own schedule: the kubelet refreshes a pod's Secret
volumes when it resyncs the pod, every ``syncFrequency`` (1 min by default) plus up to half of
that again as jitter (``workerResyncIntervalJitterFactor = 0.5`` in the kubelet's pod workers),
plus the delay of its Secret cache (a watch by default: about nothing; with the older TTL cache
strategy 0-300 s, growing with the cluster's size). So nodes see a new key up to 60-90 s apart,
in any order, and the key a node holds at a given moment is one of: only the old one, the old
and the new, only the new.

The rule that makes this safe, whatever the order: **every key a speaker accepts, it also signs
with**. A heartbeat carries one tag per key of its sender's ring (a key id and the HMAC with that
key, :mod:`lbd.core.membership`), and a receiver accepts it if one tag verifies with a key of its
own ring. So two speakers hear each other exactly when their rings share a key, and a ring keeps
the old key for ``grace`` seconds after the key left the file:

====================  ======================  =========================================
a node's state        it signs with           it accepts
====================  ======================  =========================================
not yet updated       old                     old
updated, in grace     new and old             new and old
grace over            new                     new
====================  ======================  =========================================

Any two states less than ``grace`` apart share the old or the new key, so with ``grace`` longer
than the spread of the nodes' updates no heartbeat of a live peer is ever dropped, and no
coordination between speakers is needed: nobody has to know what its peers hold. A sender that
switched to signing with the new key alone as soon as it saw it would be dropped by every peer
not yet updated (they would see it dead and take its VIPs: a split); keeping only the old one
until "everyone has the new one" would need each speaker to learn its peers' key sets. Tags for
keys a receiver does not hold are ignored; they cost 36 bytes each and one HMAC per heartbeat
round (not per peer).

The old key stops working ``grace`` seconds after each node saw it leave its file (it is then
neither accepted nor used to sign): a leaked old key is not accepted forever. ``grace = 0``
revokes at once (for a key known to be leaked, accepting that nodes not yet updated are cut off
until they are). A key that comes back into the file is current again.

The key file holds one key per line (text, e.g. base64: a random binary key could contain a
newline byte), at least :data:`MIN_KEY_BYTES` each, at most :data:`MAX_FILE_KEYS`; every key in
it is current. A file with two keys is the two-step rotation for the cautious: ``new`` added
beside ``old`` first, ``old`` removed once every node has the two-key file. At every step every
speaker shares a key with every other, also one that (re)starts in between and so has only what
the file says at that moment; in the one-step rotation (the file's key replaced) a speaker that
starts during the spread of the update holds the new key alone until the others see it.

A key id is the first 4 bytes of SHA-256 of the key, shown in hex (``printf %s KEY | sha256sum``
shows it as its first 8 characters). It only says which key a tag claims to use; it is neither
secret nor authenticated (a forger may write any id): only the HMAC decides.

Pure: the caller passes ``now`` (its monotonic clock) to every call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

KEY_ID_LEN = 4
MIN_KEY_BYTES = 16
MAX_FILE_KEYS = 4
MAX_KEYS = 8  # tags in one heartbeat: the file's keys plus the retiring ones
DEFAULT_GRACE = 300.0
"""Seconds an old key is still accepted after it left the key file.

Five times the kubelet's default worst case of 90 s for a Secret change to reach every node
(module docstring), and more than its TTL cache strategy adds up to 2 000 nodes (60 s). Longer
than needed costs nothing in normal operation; it only keeps a leaked old key valid for longer.
"""


class KeyFileError(ValueError):
    """A key file's content is unusable; the message names the line and the reason."""


def key_id(secret: bytes) -> bytes:
    """The id of ``secret``: the first 4 bytes of its SHA-256 (module docstring)."""
    return hashlib.sha256(secret).digest()[:KEY_ID_LEN]


@dataclass(frozen=True)
class MacKey:
    """One HMAC key and its id."""

    secret: bytes = field(repr=False)
    id: bytes

    @classmethod
    def of(cls, secret: bytes) -> MacKey:
        return cls(secret, key_id(secret))

    @property
    def hex(self) -> str:
        return self.id.hex()


@dataclass(frozen=True)
class KeySet:
    """The keys in use at one moment: each signs every heartbeat sent, any verifies one.

    ``by_id``: id -> the secrets with that id (two keys sharing an id are both tried).
    """

    keys: tuple[MacKey, ...]
    by_id: Mapping[bytes, tuple[bytes, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.keys) <= MAX_KEYS:
            raise ValueError(f"KeySet.keys: 1-{MAX_KEYS} keys, got {len(self.keys)}")
        by_id: dict[bytes, tuple[bytes, ...]] = {}
        for k in self.keys:
            by_id[k.id] = (*by_id.get(k.id, ()), k.secret)
        object.__setattr__(self, "by_id", by_id)

    @classmethod
    def of(cls, *secrets: bytes) -> KeySet:
        return cls(tuple(MacKey.of(s) for s in dict.fromkeys(secrets)))

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(k.hex for k in self.keys)


def parse_key_file(data: bytes) -> tuple[bytes, ...]:
    """The keys of a key file: one per line, blank lines skipped, duplicates kept once."""
    keys: list[bytes] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        key = line.strip()
        if not key:
            continue
        if len(key) < MIN_KEY_BYTES:
            raise KeyFileError(
                f"line {number} holds {len(key)} bytes, need at least {MIN_KEY_BYTES} "
                "(one key per line, as text such as base64)"
            )
        if key not in keys:
            keys.append(key)
    if not keys:
        raise KeyFileError("holds no key")
    if len(keys) > MAX_FILE_KEYS:
        raise KeyFileError(f"holds {len(keys)} keys, at most {MAX_FILE_KEYS} are allowed")
    return tuple(keys)


@dataclass(frozen=True)
class RingState:
    """What a ring holds, for logs and metrics: current key ids, retiring ids and when each is
    no longer accepted (the caller's monotonic time)."""

    current: tuple[str, ...]
    retiring: tuple[tuple[str, float], ...] = ()

    @property
    def ids(self) -> tuple[str, ...]:
        return self.current + tuple(i for i, _ in self.retiring)


def describe(state: RingState, now: float) -> str:
    """One log line for a ring (pure presentation of :class:`RingState`)."""
    ids = ", ".join(state.ids)
    text = f"membership keys: signing with and accepting {ids}"
    if state.retiring:
        text += "; retiring " + ", ".join(
            f"{i} (accepted {max(0.0, until - now):.0f} s more)" for i, until in state.retiring
        )
    return text


class KeyRing:
    """The keys of the key file plus the keys that left it less than ``grace`` seconds ago.

    Not thread-safe (the transport holds a lock). :meth:`keys` is O(1) between changes: the set
    is rebuilt only when the file's keys change or a retiring key expires.
    """

    def __init__(self, secrets: Sequence[bytes], *, grace: float, now: float) -> None:
        if not 0 <= grace < float("inf"):  # NaN or inf would keep an old key forever
            raise ValueError(f"key grace: must be a finite number >= 0 seconds, got {grace}")
        self.grace = grace
        self._current: tuple[bytes, ...] = ()
        self._retiring: dict[bytes, float] = {}  # secret -> monotonic time it stops being valid
        self._set: KeySet | None = None
        self._next_expiry = float("inf")
        self.version = 0
        self.load(secrets, now)

    def load(self, secrets: Sequence[bytes], now: float) -> bool:
        """The key file now holds ``secrets``; True if the ring changed (a key in use, or one
        that became retiring or current again: the :meth:`state` to log).

        Raises ValueError (nothing changed) for an empty list or more than MAX_FILE_KEYS.
        """
        wanted = tuple(dict.fromkeys(secrets))
        if not 1 <= len(wanted) <= MAX_FILE_KEYS:
            raise ValueError(f"key file: 1-{MAX_FILE_KEYS} keys, got {len(wanted)}")
        self._expire(now)
        before = self._in_use()
        for gone in self._current:
            if gone not in wanted:
                self._retiring[gone] = now + self.grace
        for key in wanted:
            self._retiring.pop(key, None)
        self._current = wanted
        # Bounded tags per heartbeat: when the file changed again and again within the grace,
        # the key closest to its end goes first.
        while len(self._current) + len(self._retiring) > MAX_KEYS:
            del self._retiring[min(self._retiring, key=self._retiring.__getitem__)]
        self._expire(now)
        return self._rebuilt(before)

    def keys(self, now: float) -> KeySet:
        """The keys to sign with and to accept at ``now``."""
        if now >= self._next_expiry:
            before = self._in_use()
            self._expire(now)
            self._rebuilt(before)
        assert self._set is not None
        return self._set

    def state(self, now: float) -> RingState:
        self.keys(now)
        return RingState(
            current=tuple(key_id(k).hex() for k in self._current),
            retiring=tuple(
                (key_id(k).hex(), until)
                for k, until in sorted(self._retiring.items(), key=lambda kv: kv[1])
            ),
        )

    @property
    def next_expiry(self) -> float:
        """When the next retiring key stops being accepted (inf: none is retiring)."""
        return self._next_expiry

    def _in_use(self) -> tuple[frozenset[bytes], frozenset[bytes]]:
        return frozenset(self._current), frozenset(self._retiring)

    def _expire(self, now: float) -> None:
        for key in [k for k, until in self._retiring.items() if now >= until]:
            del self._retiring[key]
        self._next_expiry = min(self._retiring.values(), default=float("inf"))

    def _rebuilt(self, before: tuple[frozenset[bytes], frozenset[bytes]]) -> bool:
        if self._set is not None and self._in_use() == before:
            return False
        self._set = KeySet.of(*self._current, *self._retiring)
        self.version += 1
        return True

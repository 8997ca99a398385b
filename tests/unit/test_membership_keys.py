"""Key rotation in the transport (:mod:`lbd.net.membership`) and the key file watch
(:mod:`lbd.net.keyfile`): real UDP on loopback, a key file updated the way the kubelet updates a
Secret volume.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from lbd.cli import build_parser
from lbd.core.keyring import key_id
from lbd.core.membership import HeartbeatDrop
from lbd.metrics import SpeakerMetrics
from lbd.net.keyfile import KeyFileWatcher
from lbd.net.membership import Membership
from tests.unit.test_membership_transport import running, wait_for
from tests.unit.test_speaker_wiring import root_logger  # noqa: F401 - a fixture used below

K1 = b"first-key-0123456789abcdefghij"
K2 = b"second-key-0123456789abcdefghi"
ID1, ID2 = key_id(K1).hex(), key_id(K2).hex()


class SecretVolume:
    """A Secret volume as the kubelet writes it (its atomic writer): the files live in a
    timestamped directory, ``..data`` links to it, each file name links to ``..data/NAME``. An
    update writes a new directory and renames a new ``..data`` link over the old one, so a
    reader opens either every old file or every new one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def write(self, files: dict[str, bytes]) -> None:
        stamp = self.root / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{uuid.uuid4().hex[:9]}"
        stamp.mkdir()
        for name, data in files.items():
            (stamp / name).write_bytes(data)
        data_link = self.root / "..data"
        old = os.readlink(data_link) if data_link.is_symlink() else None
        tmp = self.root / "..data_tmp"
        os.symlink(stamp.name, tmp)
        os.rename(tmp, data_link)  # the atomic moment
        for name in files:
            if not (self.root / name).is_symlink():
                os.symlink(f"..data/{name}", self.root / name)
        if old is not None:
            for f in (self.root / old).iterdir():
                f.unlink()
            (self.root / old).rmdir()

    @property
    def key(self) -> Path:
        return self.root / "key"


@pytest.fixture
def metrics() -> SpeakerMetrics:
    return SpeakerMetrics()


def member(name: str, keys: Sequence[bytes], **kw: object) -> Membership:
    return Membership(
        node_name=name,
        key=keys,
        bind=("127.0.0.1", 0),
        interval=0.05,
        dead_after=0.3,
        **kw,  # type: ignore[arg-type]
    )


class DeathWatch:
    """Records every moment ``m`` saw a peer die (on_change runs on its receiver thread)."""

    def __init__(self, m: Membership) -> None:
        self.m = m
        self.deaths: list[set[str]] = []
        self.peers: set[str] = set()
        m.on_change = self._changed

    def _changed(self) -> None:
        alive = set(self.m.alive_peers())
        if self.peers - alive:
            self.deaths.append(self.peers - alive)
        self.peers = alive


@pytest.fixture
def trio() -> Iterator[tuple[Membership, ...]]:
    with running(*(member(n, [K1], key_grace=0.8) for n in ("a", "b", "c"))) as ms:
        yield ms


def all_see_all(ms: Sequence[Membership]) -> bool:
    return all(len(m.alive_peers()) == len(ms) - 1 for m in ms)


def test_rotation_in_any_order_loses_no_peer_for_a_moment(trio: tuple[Membership, ...]) -> None:
    """b, then c, then a take K2 (apart by less than the 0.8 s grace, more than dead_after):
    nobody ever sees a peer die, no heartbeat is dropped, and after the graces all sign with K2
    alone."""
    assert wait_for(lambda: all_see_all(trio))
    watches = [DeathWatch(m) for m in trio]
    for w in watches:
        w.peers = set(w.m.alive_peers())
    a, b, c = trio
    for m in (b, c, a):
        assert m.set_keys([K2])
        time.sleep(0.35)
    time.sleep(0.8 + 0.3)  # every grace over, and a dead_after more
    assert all_see_all(trio)
    assert [w.deaths for w in watches] == [[], [], []]
    for m in trio:
        assert not (set(m.dropped) & {HeartbeatDrop.KEY_MISMATCH, HeartbeatDrop.BAD_MAC})
        assert m._keys_at(m.clock.monotonic()).ids == (ID2,)


def test_after_the_grace_the_old_key_is_dropped_and_counted(metrics: SpeakerMetrics) -> None:
    """a never saw the new key: once b's grace is over, each drops the other as KeyMismatch."""
    with running(member("a", [K1]), member("b", [K1], key_grace=1.0, metrics=metrics)) as (a, b):
        assert wait_for(lambda: "a" in b.alive_peers() and "b" in a.alive_peers())
        b.set_keys([K2])
        text = generate_latest(metrics.registry).decode()
        assert f'lbd_membership_key_info{{key_id="{ID1}",state="Retiring"}} 1.0' in text
        assert f'lbd_membership_key_info{{key_id="{ID2}",state="Current"}} 1.0' in text
        time.sleep(0.5)
        assert "a" in b.alive_peers() and "b" in a.alive_peers()  # within the grace
        assert wait_for(lambda: b.dropped[HeartbeatDrop.KEY_MISMATCH] >= 3, timeout=2.0)
        assert wait_for(lambda: a.dropped[HeartbeatDrop.KEY_MISMATCH] >= 3)
        assert wait_for(lambda: "a" not in b.alive_peers() and "b" not in a.alive_peers())
        text = generate_latest(metrics.registry).decode()
        assert 'lbd_heartbeats_dropped_total{reason="KeyMismatch"}' in text
        assert f'key_id="{ID1}"' not in text


def test_each_change_of_the_keys_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lbd.net.membership")
    m = member("a", [K1], key_grace=0.2)
    assert not m.set_keys([K1])  # the same file again: nothing to say
    assert m.set_keys([K2])
    time.sleep(0.25)
    m._keys_at(m.clock.monotonic())  # the sender or the receiver notices the grace end
    m._keys_at(m.clock.monotonic())
    lines = [r.getMessage() for r in caplog.records if "membership keys" in r.getMessage()]
    assert lines == [
        f"membership keys: signing with and accepting {ID1}",
        f"membership keys: signing with and accepting {ID2}, {ID1}; "
        f"retiring {ID1} (accepted 0 s more)",
        f"membership keys: signing with and accepting {ID2}",
    ]


# --- the key file watch ----------------------------------------------------------------------


class Applied:
    """Stands for Membership.set_keys: records each call, True if the keys changed."""

    def __init__(self, in_use: Sequence[bytes]) -> None:
        self.in_use = tuple(in_use)
        self.calls: list[tuple[bytes, ...]] = []

    def __call__(self, keys: Sequence[bytes]) -> bool:
        self.calls.append(tuple(keys))
        changed, self.in_use = tuple(keys) != self.in_use, tuple(keys)
        return changed


def test_a_secret_update_is_noticed_and_applied(tmp_path: Path, metrics: SpeakerMetrics) -> None:
    vol = SecretVolume(tmp_path / "membership")
    vol.write({"key": K1})
    applied = Applied([K1])
    watch = KeyFileWatcher(vol.key, applied, metrics=metrics)
    watch.poll()
    watch.poll()
    assert applied.calls == [(K1,)]  # read once; an unchanged file is not applied again
    vol.write({"key": K2 + b"\n" + K1 + b"\n"})
    watch.poll()
    assert applied.calls[-1] == (K2, K1)
    assert (
        'lbd_membership_key_reloads_total{result="Applied"} 1.0'
        in generate_latest(metrics.registry).decode()
    )


def test_an_unusable_update_changes_nothing_and_is_said_once(
    tmp_path: Path, metrics: SpeakerMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    vol = SecretVolume(tmp_path / "membership")
    vol.write({"key": K1})
    applied = Applied([K1])
    watch = KeyFileWatcher(vol.key, applied, metrics=metrics)
    watch.poll()
    vol.write({"key": b"too-short\n"})
    for _ in range(3):
        watch.poll()
    assert applied.calls == [(K1,)]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "line 1 holds 9 bytes, need at least 16" in errors[0].__dict__["error"]
    text = generate_latest(metrics.registry).decode()
    assert 'lbd_membership_key_reloads_total{result="Rejected"} 1.0' in text
    vol.write({"key": K2})
    watch.poll()
    assert applied.calls[-1] == (K2,)


def test_the_watch_thread_polls_every_interval(tmp_path: Path) -> None:
    vol = SecretVolume(tmp_path / "membership")
    vol.write({"key": K1})
    seen = threading.Event()
    applied = Applied([K1])

    def apply(keys: Sequence[bytes]) -> bool:
        if tuple(keys) == (K2,):
            seen.set()
        return applied(keys)

    watch = KeyFileWatcher(vol.key, apply, interval=0.02)
    watch.start()
    try:
        vol.write({"key": K2})
        assert seen.wait(2.0)
    finally:
        watch.stop()


# --- the speaker's flags ---------------------------------------------------------------------


@pytest.mark.usefixtures("root_logger")
def test_speaker_key_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    key = tmp_path / "key"
    key.write_bytes(b"short\n" + K1)
    base = ["speaker", "--node-name", "n1", "--membership-key", str(key)]
    assert parser.parse_args(base).membership_key_grace == 300.0
    for bad in ("-1", "nan", "inf"):
        args = parser.parse_args([*base, "--membership-key-grace", bad])
        assert args.func(args) == 2
        err = capsys.readouterr().err
        assert "--membership-key-grace: must be a finite number >= 0 seconds, got" in err
    args = parser.parse_args(base)
    assert args.func(args) == 2  # refused before anything starts: the key file names the line
    assert f"lbd speaker: --membership-key: {key} line 1 holds 5 bytes" in capsys.readouterr().err

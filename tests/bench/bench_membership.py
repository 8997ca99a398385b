"""Benchmark membership at scale: one real speaker's heartbeats among N simulated speakers.

    .venv/bin/python tests/bench/bench_membership.py [--nodes 10,100,300,1000] [--seconds 8]

For each N, two processes on 127.0.0.1 (no root needed):

- *node*: a real :class:`lbd.net.membership.Membership` (the speaker's transport: UDP socket,
  sender and receiver threads, the pure table of :mod:`lbd.core.membership`) with N-1 peers. It
  sends its heartbeats to every peer every 100 ms (to a sink socket nobody reads: the cost of
  sending is the same) and receives theirs.
- *peers*: N-1 simulated speakers. Their heartbeats are built and signed beforehand with the
  real wire format and HMAC key (version 2, a boot per peer, sequence numbers counting up, one
  interface), then sent from 127.0.0.1 at 10 per second per peer, each peer at its own phase
  within the interval (real speakers are not synchronised). Three of them stop at known times.

Per N it prints, for the one real node: heartbeats sent and received per second, CPU seconds per
second spent on membership (the node process does nothing else; all threads, user + system),
and the time from a peer's last heartbeat to the node declaring it dead (three peers stopped:
median and worst). Then a cost model from the same run (microseconds per heartbeat sent and
received). Last line: one JSON object. Never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lbd.core.membership import (  # noqa: E402
    DEFAULT_DEAD_AFTER,
    DEFAULT_INTERVAL,
    Boot,
    Heartbeat,
    encode,
)

HERE = str(Path(__file__).resolve())
KEY = b"bench-membership-key-0123456789abcdef"
HOST = "127.0.0.1"
KILLED = 3  # peers that stop sending, to measure detection


def peer_name(i: int) -> str:
    return f"peer-{i:04d}"


# ----------------------------------------------------------------------------- node (child)
def role_node(a: argparse.Namespace) -> None:
    from lbd.net.membership import Membership

    names = [peer_name(i) for i in range(a.n - 1)]
    dead_at: dict[str, float] = {}
    m: Membership

    def on_change() -> None:
        now = time.monotonic()
        alive = m.alive()
        for name in names[:KILLED]:
            if name not in dead_at and alive[name].last_seen is not None and not alive[name].alive:
                dead_at[name] = now

    m = Membership(
        node_name="node",
        key=KEY,
        bind=(HOST, 0),
        interval=DEFAULT_INTERVAL,
        dead_after=DEFAULT_DEAD_AFTER,
        on_change=on_change,
        rt_priority=None,  # the default manifests grant no SYS_NICE
    )
    m.start()
    m.set_interfaces_up(frozenset({"eth0"}))
    m.set_peers({name: (HOST, a.sink_port) for name in names})
    print(f"ready {m.port}", flush=True)
    start = a.start + a.warmup
    time.sleep(max(0.0, start - time.monotonic()))
    cpu0, sent0, recv0, t0 = time.process_time(), m.sent, m.received, time.monotonic()
    time.sleep(max(0.0, start + a.seconds - time.monotonic()))
    cpu, sent, recv, t1 = time.process_time(), m.sent, m.received, time.monotonic()
    time.sleep(max(0.0, a.start + a.warmup + a.seconds + 1.0 - time.monotonic()))
    alive = sum(1 for st in m.alive().values() if st.alive) - 1
    m.stop(graceful=False)
    span = t1 - t0
    print(
        json.dumps(
            {
                "cpu_per_s": (cpu - cpu0) / span,
                "sent_per_s": (sent - sent0) / span,
                "received_per_s": (recv - recv0) / span,
                "dead_at": dead_at,
                "alive_at_end": alive,
                "dropped": {str(k): v for k, v in m.dropped.items()},
                "send_errors": m.send_errors,
            }
        ),
        flush=True,
    )


# ----------------------------------------------------------------------------- peers (child)
def role_peers(a: argparse.Namespace) -> None:
    n_peers = a.n - 1
    interval = DEFAULT_INTERVAL
    total = a.warmup + a.seconds + 1.0
    ticks = int(total / interval)
    stop_at = {i: a.start + a.warmup + a.seconds * (i + 1) / (KILLED + 1) for i in range(KILLED)}
    host = os.urandom(8)
    boots = [Boot(host, time.time_ns(), 10**12 + i, os.urandom(8)) for i in range(n_peers)]
    schedule: list[tuple[float, int, bytes]] = []
    for k in range(ticks):
        for i in range(n_peers):
            at = a.start + k * interval + interval * i / n_peers
            if i in stop_at and at >= stop_at[i]:
                continue
            hb = Heartbeat(peer_name(i), boots[i], k + 1, interfaces_up=frozenset({"eth0"}))
            schedule.append((at, i, encode(hb, KEY)))
    schedule.sort(key=lambda e: e[0])
    last_sent: dict[str, float] = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((HOST, 0))
    target = (HOST, a.node_port)
    print("ready", flush=True)
    late = 0.0
    for at, i, data in schedule:
        ahead = at - time.monotonic()
        if ahead > 0.0005:
            time.sleep(ahead)
        late = max(late, -ahead)
        try:
            sock.sendto(data, target)
        except OSError:
            continue
        if i < KILLED:
            last_sent[peer_name(i)] = time.monotonic()
    print(json.dumps({"last_sent": last_sent, "datagrams": len(schedule), "late_s": late}))


# ----------------------------------------------------------------------------- cost model
def unit_costs(n_peers: int = 100, rounds: int = 20) -> dict[str, float]:
    """Microseconds per heartbeat for encode, decode (HMAC) and the table, in this process."""
    from lbd.core.membership import MembershipTable, decode

    host = os.urandom(8)
    boots = [Boot(host, 1, i, os.urandom(8)) for i in range(n_peers)]
    beats = [
        Heartbeat(peer_name(i), boots[i], k + 1, interfaces_up=frozenset({"eth0"}))
        for k in range(rounds)
        for i in range(n_peers)
    ]
    t = time.perf_counter()
    wire = [encode(hb, KEY) for hb in beats]
    enc = (time.perf_counter() - t) / len(beats)
    t = time.perf_counter()
    decoded = [decode(w, KEY) for w in wire]
    dec = (time.perf_counter() - t) / len(beats)
    table = MembershipTable("node", DEFAULT_DEAD_AFTER)
    table.set_peers({peer_name(i): HOST for i in range(n_peers)})
    t = time.perf_counter()
    for j, hb in enumerate(decoded):
        assert isinstance(hb, Heartbeat)
        table.receive(hb, j * 1e-4, HOST)
    rec = (time.perf_counter() - t) / len(decoded)
    return {"encode_us": enc * 1e6, "decode_us": dec * 1e6, "table_us": rec * 1e6}


# ----------------------------------------------------------------------------- orchestration
def child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, HERE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def last_json(text: str) -> dict[str, object]:
    lines = [x for x in text.splitlines() if x.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def run_one(n: int, seconds: float, warmup: float) -> dict[str, object]:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # receives the node's heartbeats
    sink.bind((HOST, 0))
    try:
        start = time.monotonic() + 3.0 + n / 200  # time for the peers to sign their heartbeats
        common = ["--n", str(n), "--start", repr(start), "--seconds", str(seconds)]
        common += ["--warmup", str(warmup)]
        node = child("node", *common, "--sink-port", str(sink.getsockname()[1]))
        assert node.stdout is not None
        line = node.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(
                f"node did not start: {line} {node.stderr.read() if node.stderr else ''}"
            )
        peers = child("peers", *common, "--node-port", line[1])
        p_out, p_err = peers.communicate(timeout=warmup + seconds + 120)
        n_out, n_err = node.communicate(timeout=60)
        if peers.returncode or node.returncode:
            raise RuntimeError(f"child failed: {p_err[-2000:]} {n_err[-2000:]}")
    finally:
        sink.close()
    res, sim = last_json(n_out), last_json(p_out)
    dead_at = res.get("dead_at") or {}
    last_sent = sim.get("last_sent") or {}
    assert isinstance(dead_at, dict) and isinstance(last_sent, dict)
    detect = sorted(
        (float(dead_at[p]) - float(last_sent[p])) * 1000 for p in last_sent if p in dead_at
    )
    return {
        "nodes": n,
        "sent_per_s": round(float(str(res["sent_per_s"])), 1),
        "received_per_s": round(float(str(res["received_per_s"])), 1),
        "cpu_percent": round(100 * float(str(res["cpu_per_s"])), 2),
        "detect_ms_median": round(detect[len(detect) // 2], 1) if detect else None,
        "detect_ms_max": round(detect[-1], 1) if detect else None,
        "detected": f"{len(detect)}/{KILLED}",
        "alive_at_end": res.get("alive_at_end"),
        "dropped": res.get("dropped"),
        "sender_late_ms": round(1000 * float(str(sim.get("late_s", 0))), 1),
    }


def orchestrate(a: argparse.Namespace) -> int:
    costs = unit_costs()
    rows = []
    print(
        f"{'nodes':>6} {'sent/s':>9} {'recv/s':>9} {'CPU % core':>10} "
        f"{'detect p50':>10} {'detect max':>10} {'detected':>8} {'alive':>6}",
        flush=True,
    )
    for n in a.nodes:
        row = run_one(n, a.seconds, a.warmup)
        rows.append(row)
        print(
            f"{n:>6} {row['sent_per_s']:>9} {row['received_per_s']:>9} {row['cpu_percent']:>10} "
            f"{row['detect_ms_median']!s:>8}ms {row['detect_ms_max']!s:>8}ms "
            f"{row['detected']:>8} {row['alive_at_end']!s:>6}",
            flush=True,
        )
    per_beat = costs["decode_us"] + costs["table_us"]
    print(
        f"cost model (this process): encode {costs['encode_us']:.1f} us/heartbeat (once per "
        f"interval), decode+verify {costs['decode_us']:.1f} us, table {costs['table_us']:.1f} us "
        f"per heartbeat received, plus one sendto and one recvfrom each",
        flush=True,
    )
    biggest = rows[-1]
    print(
        json.dumps(
            {
                "bench": "membership",
                "interval_s": DEFAULT_INTERVAL,
                "dead_after_s": DEFAULT_DEAD_AFTER,
                "rows": rows,
                "cpu_percent_at_max_nodes": biggest["cpu_percent"],
                "max_nodes": biggest["nodes"],
                "decode_us": round(costs["decode_us"], 2),
                "table_us": round(costs["table_us"], 2),
                "encode_us": round(costs["encode_us"], 2),
                "receive_cpu_us_per_heartbeat_model": round(per_beat, 2),
            }
        )
    )
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument(
        "--nodes",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[10, 100, 300, 1000],
        help="cluster sizes, comma-separated",
    )
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per size")
    p.add_argument("--warmup", type=float, default=2.0)
    sub = p.add_subparsers(dest="role")
    for name in ("node", "peers"):
        sp = sub.add_parser(name)
        sp.add_argument("--n", type=int, required=True)
        sp.add_argument("--start", type=float, required=True)
        sp.add_argument("--seconds", type=float, required=True)
        sp.add_argument("--warmup", type=float, required=True)
    sub.choices["node"].add_argument("--sink-port", type=int, required=True)
    sub.choices["peers"].add_argument("--node-port", type=int, required=True)
    a = p.parse_args()
    if a.role == "node":
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        role_node(a)
        return 0
    if a.role == "peers":
        role_peers(a)
        return 0
    return orchestrate(a)


if __name__ == "__main__":
    sys.exit(main())

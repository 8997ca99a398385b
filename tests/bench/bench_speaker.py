"""Benchmark the speaker's network layer in network namespaces (needs root).

    .venv/bin/python tests/bench/bench_speaker.py [--duration 3] [--idle 10]
        [--drop-caps NET_ADMIN,SYS_NICE] [--load 2]

Topology: one bridge segment with a ``node`` namespace and a ``client`` namespace (veth pairs).

1. ARP answer ratio at 10 000 and 40 000 requests/s offered, and request-to-reply latency
   (p50/p99) at 5 000/s; first against the lbd responder (its own process in ``node``, owning
   VIP 198.18.100.7), then against the node's kernel answering for its own address 198.18.0.1.
   The generator is its own process: a raw-socket loop paced by monotonic time. Every request
   carries a sequence number in its sender MAC (02:SS:SS:SS:SS:01); a receiver process matches
   replies by the target MAC they are addressed to. (The sender IP stays fixed: the kernel only
   answers when it can create a neighbour entry for the sender, so thousands of sender IPs would
   measure the neighbour table, not ARP.) Latency is from the generator's clock reading just
   before ``send`` to the kernel's receive timestamp of the reply at the client socket.
2. Idle cost: a process with a responder owning 1 000 VIPs, membership with 10 simulated peers
   (another process sending heartbeats every 100 ms), and the link monitor; after a 3 s warm-up
   it reads its own CPU time (/proc/self/stat) over ``--idle`` seconds and its VmRSS.

Capabilities (issue 16): ``--drop-caps NET_ADMIN,SYS_NICE`` starts the responder without them
(``setpriv --bounding-set``), as the default manifests do: no real-time priority, receive buffer
capped at net.core.rmem_max. ``--load N`` runs N busy processes during the ARP steps, a node whose
CPUs are busy (where the priority matters). Compare the same ``--load`` with and without.

Prints a table, then one JSON line. Never asserts on time.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lbd.core import arp  # noqa: E402

PY = sys.executable
HERE = str(Path(__file__).resolve())
ETH_P_ALL = 0x0003
VIP = "198.18.100.7"
KEY = b"bench-membership-key-0123456789"
SO_TIMESTAMPNS = 35


def seq_mac(i: int) -> bytes:
    return b"\x02" + i.to_bytes(4, "big") + b"\x01"


def raw_socket(ifname: str, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(263, 23, 1)  # PACKET_IGNORE_OUTGOING
    sock.bind((ifname, ETH_P_ALL))
    return sock


# ----------------------------------------------------------------------------- roles (children)
def role_gen(a: argparse.Namespace) -> None:
    """Send ``count`` ARP requests at ``rate``/s starting at monotonic ``start``."""
    sock = raw_socket(a.iface)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    # Offer the load even on a busy machine: the generator gets the responder's real-time
    # priority too (it sleeps whenever it is ahead of schedule).
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    sip, tip = arp.vip_key(a.src_ip), arp.vip_key(a.target)
    frames = [
        arp.request(src_mac=seq_mac(i), src_ip=sip, target_ip=tip, dst_mac=arp.BROADCAST)
        for i in range(a.count)
    ]
    # The Ethernet source is the sequence MAC too, so the bridge learns where replies go.
    frames = [f[:6] + f[22:28] + f[12:] for f in frames]
    sent = array.array("d", bytes(8 * a.count))
    send, mono, sleep, interval = sock.send, time.monotonic, time.sleep, 1.0 / a.rate
    wall = time.time
    start = a.start
    late = max(0.0, mono() - start)
    errors = 0
    # Pace by monotonic time; frames due within the next 0.5 ms go out at once (micro-bursts of
    # <= 20 frames at 40k/s) so that the generator sleeps instead of spinning a core the
    # responder needs on this 2-core machine.
    for i in range(a.count):
        due = start + i * interval
        ahead = due - mono()
        if ahead > 0.0005:
            sleep(ahead)
        sent[i] = wall()  # wall clock: compared with the receiver's kernel timestamps
        try:
            send(frames[i])
        except OSError:
            errors += 1
    Path(a.out).write_bytes(sent.tobytes())
    achieved = a.count / max(mono() - start, 1e-9)
    print(
        json.dumps({"errors": errors, "achieved_rate": round(achieved), "late_s": late}),
        flush=True,
    )


def role_recv(a: argparse.Namespace) -> None:
    """Record the first reply time per sequence number until SIGTERM (or monotonic ``until``).

    Reply times are the kernel's receive timestamps (SO_TIMESTAMPNS, wall clock), so that this
    process being descheduled on a busy machine does not inflate the measured latency.
    """
    sock = raw_socket(a.iface, rcvbuf=16 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    tip = arp.vip_key(a.target)
    got = array.array("d", bytes(8 * a.count))
    dups = 0
    mono = time.monotonic
    cmsg_space = socket.CMSG_SPACE(16)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("ready", flush=True)
    sock.setblocking(False)
    while not stop and (left := a.until - mono()) > 0:
        select.select([sock], [], [], min(left, 0.05))
        while True:
            try:
                f, anc, _flags, _addr = sock.recvmsg(2048, cmsg_space)
            except BlockingIOError:
                break
            if f[12:14] != b"\x08\x06" or f[20:22] != b"\x00\x02" or f[28:32] != tip:
                continue
            t = time.time()
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack("qq", data[:16])
                    t = sec + nsec * 1e-9
            seq = int.from_bytes(f[33:37], "big")
            if seq < a.count:
                if got[seq]:
                    dups += 1
                else:
                    got[seq] = t
    Path(a.out).write_bytes(got.tobytes())
    print(json.dumps({"dups": dups}), flush=True)


def role_responder(a: argparse.Namespace) -> None:
    from lbd.metrics import SpeakerMetrics
    from lbd.net.capabilities import effective
    from lbd.net.responder import Responder

    r = Responder(node_name="node", metrics=SpeakerMetrics())
    r.set_owned({VIP: (a.iface,)})
    deadline = time.monotonic() + 5
    while not r.ports_ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    cpu0 = _cpu_seconds()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    stats: dict[str, object] = dict(r.stats())
    replies = int(str(stats.get("arp_replies", 0)))
    stats["cpu_us_per_reply"] = round(1e6 * (_cpu_seconds() - cpu0) / max(replies, 1), 1)
    stats["caps"] = sorted(effective(Path("/proc/self/status").read_text()))
    r.stop()
    print(json.dumps(stats), flush=True)


def role_peers(a: argparse.Namespace) -> None:
    from lbd.net.membership import Membership

    peers = []
    for i in range(a.peers):
        m = Membership(node_name=f"peer{i}", key=KEY, bind=(a.ip, 7950 + i))
        m.start()
        m.set_interfaces_up(frozenset({"eth0"}))
        m.set_peers({"node": (a.node_ip, 7947)})
        peers.append(m)
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for m in peers:
        m.stop(graceful=False)


def _cpu_seconds() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def role_idle(a: argparse.Namespace) -> None:
    from lbd.metrics import SpeakerMetrics
    from lbd.net.links import LinkMonitor
    from lbd.net.membership import Membership
    from lbd.net.responder import Responder

    metrics = SpeakerMetrics()
    links = LinkMonitor()
    links.start()
    r = Responder(node_name="node", metrics=metrics)
    vips = {f"198.18.{100 + i // 250}.{1 + i % 250}": (a.iface,) for i in range(a.vips)}
    r.set_owned(vips)
    m = Membership(node_name="node", key=KEY, bind=(a.ip, 7947), metrics=metrics)
    m.start()
    m.set_interfaces_up(links.interfaces_up())
    m.set_peers({f"peer{i}": (a.peer_ip, 7950 + i) for i in range(a.peers)})
    time.sleep(3.0)  # warm-up: the takeover burst of 1 000 VIPs is over after 2 s
    cpu0, t0 = _cpu_seconds(), time.monotonic()
    time.sleep(a.idle)
    cpu = (_cpu_seconds() - cpu0) / (time.monotonic() - t0)
    out = {
        "idle_cpu_percent": round(100 * cpu, 2),
        "rss_mb": round(_rss_mb(), 1),
        "peers_alive": len(m.alive_peers()),
        "vips": len(vips),
        "garp_sent": r.stats()["garp_sent"],
    }
    m.stop()
    r.stop()
    links.stop()
    print(json.dumps(out), flush=True)


# ----------------------------------------------------------------------------- orchestration
def in_ns(ns: str, *args: str) -> list[str]:
    """``args`` run as this script in namespace ``ns`` (a leading ``setpriv ... --`` wraps it)."""
    if "--" in args:
        i = args.index("--")
        return ["ip", "netns", "exec", ns, *args[:i], PY, HERE, *args[i + 1 :]]
    return ["ip", "netns", "exec", ns, PY, HERE, *args]


def without_caps(names: list[str]) -> list[str]:
    """A setpriv prefix that starts the child without ``names``: as root, a process gets its
    capabilities from the bounding set at exec, so dropping them there is enough."""
    if not names:
        return []
    drop = ",".join(f"-{n.lower()}" for n in names)
    return ["setpriv", f"--bounding-set={drop}", "--"]


def wait_ready(p: subprocess.Popen[str]) -> None:
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"child did not start: {line!r} {p.stderr.read() if p.stderr else ''}")


def last_json(text: str) -> dict[str, object]:
    lines = [x for x in text.splitlines() if x.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def run_load(seg: object, target: str, rate: int, duration: float, tmp: Path) -> dict[str, float]:
    from tests.netns.conftest import Segment

    assert isinstance(seg, Segment)
    client = seg["client"]
    count = int(rate * duration)
    start = time.monotonic() + 2.0  # the generator builds its frames before that
    until = start + 4 * duration + 10  # safety net; normally stopped 0.5 s after the generator
    recv_out, gen_out = tmp / "recv.bin", tmp / "gen.bin"
    rx = subprocess.Popen(
        in_ns(client.ns, "recv", "--iface", "eth0", "--target", target, "--count", str(count),
              "--until", repr(until), "--out", str(recv_out)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_ready(rx)
    gen = subprocess.run(
        in_ns(client.ns, "gen", "--iface", "eth0", "--target", target, "--src-ip", client.ipv4,
              "--rate", str(rate), "--count", str(count), "--start", repr(start),
              "--out", str(gen_out)),
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    time.sleep(0.5)  # replies still in flight
    rx.send_signal(signal.SIGTERM)
    rx_out, _ = rx.communicate(timeout=duration + 30)
    sent = array.array("d")
    sent.frombytes(gen_out.read_bytes())
    got = array.array("d")
    got.frombytes(recv_out.read_bytes())
    lat = sorted((g - s) * 1000 for s, g in zip(sent, got, strict=True) if g)
    answered = len(lat)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else float("nan")

    return {
        "offered_rate": rate,
        "achieved_rate": float(str(last_json(gen.stdout).get("achieved_rate", 0))),
        "requests": count,
        "answered": answered,
        "answered_percent": round(100 * answered / count, 3),
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "duplicates": float(str(last_json(rx_out).get("dups", 0))),
    }


def orchestrate(a: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench_speaker needs root (network namespaces, raw sockets)", file=sys.stderr)
        print(json.dumps({"skipped": "needs root"}))
        return 0
    from tests.netns.conftest import build_segment, run

    created: list[str] = []
    results: dict[str, object] = {}
    prefix = "lb" + os.urandom(3).hex()
    try:
        seg = build_segment(prefix, ["node", "client"], created)
        node, client = seg["node"], seg["client"]
        with tempfile.TemporaryDirectory() as td:
            tmp = Path(td)
            for who, target in (("lbd", VIP), ("kernel", node.ipv4)):
                if who not in a.steps:
                    continue
                resp = None
                if who == "lbd":
                    resp = subprocess.Popen(
                        in_ns(node.ns, *without_caps(a.drop_caps), "responder", "--iface", "eth0"),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    )  # fmt: skip
                    wait_ready(resp)
                hogs = [subprocess.Popen([PY, "-c", "while True: pass"]) for _ in range(a.load)]
                try:
                    for rate in a.rates:
                        res = run_load(seg, target, rate, a.duration, tmp)
                        results[f"{who}_{rate}"] = res
                        print(
                            f"{who:6s} offered {rate:6d}/s (achieved {res['achieved_rate']:8.0f})"
                            f"  answered {res['answered_percent']:7.3f} %"
                            f"  p50 {res['p50_ms']:.3f} ms  p99 {res['p99_ms']:.3f} ms",
                            flush=True,
                        )
                finally:
                    for hog in hogs:
                        hog.kill()
                        hog.wait()
                    if resp is not None:
                        resp.send_signal(signal.SIGTERM)
                        out, _ = resp.communicate(timeout=10)
                        results["lbd_responder_stats"] = last_json(out)
                        print(f"lbd    responder {results['lbd_responder_stats']}", flush=True)
            if "idle" in a.steps:
                peers = subprocess.Popen(
                    in_ns(client.ns, "peers", "--ip", client.ipv4, "--node-ip", node.ipv4,
                          "--peers", str(a.peers)),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
                wait_ready(peers)
                try:
                    idle = subprocess.run(
                        in_ns(node.ns, "idle", "--iface", "eth0", "--ip", node.ipv4,
                              "--peer-ip", client.ipv4, "--peers", str(a.peers),
                              "--vips", str(a.vips), "--idle", str(a.idle)),
                        capture_output=True, text=True, check=True, timeout=a.idle + 60,
                    )  # fmt: skip
                finally:
                    peers.send_signal(signal.SIGTERM)
                    peers.communicate(timeout=10)
                results["idle"] = last_json(idle.stdout)
                print(f"idle   {results['idle']}", flush=True)
    finally:
        for ns in reversed(created):
            run("ip", "netns", "del", ns, check=False)
    summary = {
        "bench": "speaker",
        "arp_answered_percent_10k": _get(results, "lbd_10000", "answered_percent"),
        "arp_answered_percent_40k": _get(results, "lbd_40000", "answered_percent"),
        "arp_p50_ms_5k": _get(results, "lbd_5000", "p50_ms"),
        "arp_p99_ms_5k": _get(results, "lbd_5000", "p99_ms"),
        "kernel_answered_percent_10k": _get(results, "kernel_10000", "answered_percent"),
        "kernel_answered_percent_40k": _get(results, "kernel_40000", "answered_percent"),
        "kernel_p50_ms_5k": _get(results, "kernel_5000", "p50_ms"),
        "kernel_p99_ms_5k": _get(results, "kernel_5000", "p99_ms"),
        "achieved_rate_40k": _get(results, "lbd_40000", "achieved_rate"),
        "responder_cpu_us_per_reply": _get(results, "lbd_responder_stats", "cpu_us_per_reply"),
        "idle_cpu_percent": _get(results, "idle", "idle_cpu_percent"),
        "idle_rss_mb": _get(results, "idle", "rss_mb"),
        "idle_vips": a.vips,
        "idle_peers": a.peers,
        "responder_caps": _get(results, "lbd_responder_stats", "caps"),
        "background_load": a.load,
        "receive_buffer_drops": _get(results, "lbd_responder_stats", "buffer_drops"),
    }
    print(json.dumps(summary))
    return 0


def _get(results: dict[str, object], key: str, field: str) -> object:
    entry = results.get(key)
    return entry.get(field) if isinstance(entry, dict) else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=3.0, help="seconds per load step")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement")
    p.add_argument("--vips", type=int, default=1000)
    p.add_argument("--peers", type=int, default=10)
    p.add_argument(
        "--rates",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[10_000, 40_000, 5_000],
        help="offered ARP request rates, comma-separated",
    )
    p.add_argument(
        "--drop-caps",
        type=lambda v: [x.strip().upper() for x in v.split(",") if x.strip()],
        default=[],
        help="capabilities the responder runs without, e.g. NET_ADMIN,SYS_NICE",
    )
    p.add_argument("--load", type=int, default=0, help="busy processes during the ARP steps")
    p.add_argument(
        "--steps",
        type=lambda v: set(v.split(",")),
        default={"lbd", "kernel", "idle"},
        help="which of lbd,kernel,idle to run",
    )
    sub = p.add_subparsers(dest="role")
    g = sub.add_parser("gen")
    r = sub.add_parser("recv")
    for sp in (g, r):
        sp.add_argument("--iface", required=True)
        sp.add_argument("--target", required=True)
        sp.add_argument("--count", type=int, required=True)
        sp.add_argument("--out", required=True)
    g.add_argument("--src-ip", required=True)
    g.add_argument("--rate", type=float, required=True)
    g.add_argument("--start", type=float, required=True)
    r.add_argument("--until", type=float, required=True)
    sub.add_parser("responder").add_argument("--iface", required=True)
    pe = sub.add_parser("peers")
    pe.add_argument("--ip", required=True)
    pe.add_argument("--node-ip", required=True)
    pe.add_argument("--peers", type=int, default=10)
    i = sub.add_parser("idle")
    for name in ("--iface", "--ip", "--peer-ip"):
        i.add_argument(name, required=True)
    i.add_argument("--peers", type=int, default=10)
    i.add_argument("--vips", type=int, default=1000)
    i.add_argument("--idle", type=float, default=10.0)
    a = p.parse_args()
    if a.role in ("responder", "peers"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    roles = {
        "gen": role_gen,
        "recv": role_recv,
        "responder": role_responder,
        "peers": role_peers,
        "idle": role_idle,
    }
    if a.role in roles:
        roles[a.role](a)
        return 0
    return orchestrate(a)


if __name__ == "__main__":
    sys.exit(main())

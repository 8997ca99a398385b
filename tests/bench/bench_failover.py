"""Hard failover as a client sees it, in the network-namespace lab, on both control planes.

For each control plane (the stand-in, then the real one: etcd, kube-apiserver,
kube-controller-manager, real kube-proxy in nftables mode and echo Pods on every node), a 5-node
lab with 200 LoadBalancer Services (200 VIPs, ``externalTrafficPolicy: Cluster``). Twenty times:
pick a VIP, find its owner (the node answering ARP for it), probe the VIP every 10 ms from the
client, cut the owner off (``kill-node``: its switch port down, its speaker SIGKILLed and, on the
real lab, its pods marked not ready at once, ``--pod-eviction-delay 0``) and measure

- the client-observed interruption on that VIP (last answer before -> first answer after), for
  a client that sends each request from a new source port (a new connection per request, as
  curl or a DNS resolver does), and beside it for one long-lived UDP flow (one source port);
- the share of the probes sent in the 10 s after the kill that were answered: on the real lab a
  probe can be sent by the new owner's kube-proxy to a pod of the dead node until the pod is
  marked not ready, the EndpointSlice changes and kube-proxy resyncs (and drops the UDP
  conntrack entries towards it), so this says how long the dead node's pods keep costing;
- the time from the kill until *every* VIP the dead node owned is answered again.

Then the node is restored, and the next round starts once every VIP is announced by its ranked
owner again (that time, from the restore, is reported too). docs/SPEAKER.md's targets: p99 < 1 s,
median < 0.5 s. Prints figures; the last line is one JSON object with both control planes.

What the real lab adds to lbd's own failover (the VIP answered by another node's MAC): the new
owner's kube-proxy picks a pod for each new flow among the Service's endpoints as it knows them,
and with pods on every node that is a dead node's pod one time in N until the pods are marked
not ready, the endpointslice controller has rewritten the Service's EndpointSlice and
kube-proxy has synced (at most once a second, its ``minSyncPeriod``). A client with a new flow
per request loses those requests (the answered share) but is answered again as soon as the VIP
moves; one long-lived flow sent to a dead pod waits for all of that (the one-flow
interruption). With many Services that is a storm of EndpointSlice writes after every kill (200
here), which on 2 shared cores takes seconds: ``--vips 20`` shows the failover without it.

    .venv/bin/python tests/bench/bench_failover.py [--nodes 5] [--vips 200] [--rounds 20]
        [--window 10] [--control-plane both|real|stand-in]

Without the real binaries (``make k8s``) the real lab is left out, and the JSON says why.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from lbd.core.election import rank
from lbd.k8s.client import SERVICES
from lbd.lab.cluster import probe, supervisor
from lbd.lab.cluster.lab import (
    REAL,
    STAND_IN,
    Lab,
    LabError,
    LabOptions,
    choose_control_plane,
    down,
    kill_node,
    restore_node,
    up,
)
from lbd.lab.scenarios import scenario


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def show_speaker(lab: Lab, node: str) -> None:
    """What the supervisor and the log say about ``node``'s speaker (for an anomaly)."""
    name = f"speaker-{node}"
    state = supervisor.request(lab.prefix, "status")["processes"].get(name)
    print(f"  {name}: {state}")
    log = lab.dir / "logs" / f"{name}.log"
    if log.exists():
        for line in log.read_text(errors="replace").splitlines()[-5:]:
            print(f"    {line[:240]}")


def owners_now(lab: Lab, vips: list[str], *, timeout: float = 2.0) -> dict[str, str]:
    """Which node owns each VIP now. On the stand-in, the node whose echo answers (the owner
    answers itself); on the real lab a pod on any node answers, so: the one MAC answering ARP."""
    if not lab.real:
        return probe.owners(lab.data["client"]["netns"], vips, timeout=timeout)
    c = lab.data["client"]
    macs = {n["mac"]: n["name"] for n in lab.data["nodes"]}
    found = probe.arp_owners(c["netns"], c["ifname"], c["mac"], c["ipv4"], vips, wait=timeout / 4)
    return {v: macs[m[0]] for v, m in found.items() if len(m) == 1 and m[0] in macs}


def settle(
    lab: Lab, vips: list[str], expected: dict[str, str], timeout: float, *, explain_after: float
) -> float | None:
    """The time at which every VIP is owned by its ranked owner, or None at the timeout.

    Still wrong ``explain_after`` seconds in: print who owns those VIPs and the client's
    neighbour entries for them (a stale MAC, or a node that does not answer at all).
    """
    client = lab.data["client"]["netns"]
    start = time.monotonic()
    deadline = start + timeout
    explained = False
    while time.monotonic() < deadline:
        now = owners_now(lab, vips)
        wrong = [v for v in vips if now.get(v) != expected[v]]
        if not wrong:
            return time.monotonic()
        if not explained and time.monotonic() - start > explain_after:
            explained = True
            for v in wrong[:3]:
                neigh = subprocess.run(
                    ["ip", "-n", client, "neigh", "show", v],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.strip()
                print(f"  slow: {v} owned by {now.get(v)}, not {expected[v]}; neigh: {neigh}")
    return None


def run(kind: str, nodes: int, vip_count: int, rounds: int, window: float) -> dict[str, object]:
    prefix = "bf" + uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        lab = up(LabOptions(prefix=prefix, nodes=nodes, dir=Path(tmp) / prefix, control_plane=kind))
        started = time.monotonic() - t0
        print(f"[{kind}] lab up with {nodes} nodes in {started:.1f} s")
        try:
            return {"lab_up_s": round(started, 1), **_measure(lab, vip_count, rounds, window)}
        finally:
            down(prefix=prefix, lab_dir=lab.dir)


def _kill_round(
    lab: Lab, vip: str, owner: str, theirs: list[str], others: set[str], window: float
) -> tuple[scenario.Failover, dict[str, tuple[float, str]]]:
    """Kill ``owner`` while probing ``vip``; meanwhile, from the kill on, wait for an answer
    from another node on each of ``theirs`` (the VIPs the owner had)."""
    back: dict[str, tuple[float, str]] = {}
    watchers: list[threading.Thread] = []

    def watch(since: float) -> None:
        back.update(
            probe.first_answers(
                lab.data["client"]["netns"],
                theirs,
                accept=others,
                since=since,
                not_before=since,
                timeout=15.0,
            )
        )

    def cut() -> None:
        # from the moment the node is cut off: answers to earlier probes do not count
        thread = threading.Thread(target=watch, args=(time.monotonic(),), daemon=True)
        thread.start()
        watchers.append(thread)

    def kill() -> None:
        kill_node(lab, owner, on_cut=cut)

    result = scenario.measure_failover(
        lab, vip, owner, kill=kill, window=window, fresh_flows=True, also_one_flow=True
    )
    for thread in watchers:
        thread.join()
    return result, back


def _measure(lab: Lab, vip_count: int, rounds: int, window: float) -> dict[str, object]:
    kind = lab.kind
    kube = scenario.host_kube(lab)
    t0 = time.monotonic()
    names = [f"bench-{i}" for i in range(vip_count)]
    for name in names:
        # only the port the probes use: on the real lab every port is rules on every node
        svc = scenario.echo_service(name)
        svc["spec"]["ports"] = [p for p in svc["spec"]["ports"] if p["protocol"] == "UDP"]
        kube.create(SERVICES.path(namespace=scenario.NAMESPACE), svc)
    vips = [scenario.wait_for_vips(kube, name, timeout=60.0)[0] for name in names]
    client = lab.data["client"]["netns"]
    answered = probe.first_answers(client, vips, since=time.monotonic(), timeout=30.0)
    if len(answered) != len(vips):
        silent = [v for v in vips if v not in answered]
        raise scenario.ScenarioError(f"{len(silent)} VIPs never answered, e.g. {silent[:3]}")
    all_nodes = {n["name"] for n in lab.data["nodes"]}
    # Each Service has one VIP, its ranking key: the owner docs/SPEAKER.md's election must pick.
    expected = {vip: rank(vip, all_nodes)[0] for vip in vips}
    owners = owners_now(lab, vips, timeout=4.0)
    spread = dict(sorted(Counter(owners.values()).items()))
    print(
        f"[{kind}] {vip_count} VIPs assigned and answered in {time.monotonic() - t0:.1f} s; "
        f"owners {spread}"
    )
    print(f"[{kind}] node MACs: " + ", ".join(f"{n['name']} {n['mac']}" for n in lab.data["nodes"]))
    off = sum(1 for v in vips if owners.get(v) != expected[v])
    print(f"[{kind}] VIPs owned by their ranked owner at the start: {len(vips) - off}/{len(vips)}")
    interruptions: list[float] = []
    one_flow: list[float] = []
    shares: list[float] = []
    all_back: list[float] = []
    misdirected_rounds = 0
    converge: list[float] = []
    for i in range(rounds):
        vip = vips[(i * 37) % len(vips)]
        # Start every round from what the client sees now; note when it differs from the
        # ranking (a VIP still or again announced by the wrong node).
        now = owners_now(lab, vips)
        wrong = Counter((now.get(v), expected[v]) for v in vips if now.get(v) != expected[v])
        if wrong:
            misdirected_rounds += 1
            detail = ", ".join(
                f"{n} by {seen} instead of {want}" for (seen, want), n in wrong.items()
            )
            print(f"  note: VIPs not owned by their ranked owner: {detail}")
        owner = now.get(vip) or scenario.arp_owner(lab, vip, timeout=20.0)
        theirs = [v for v, o in now.items() if o == owner]
        result, back = _kill_round(lab, vip, owner, theirs, all_nodes - {owner}, window)
        missing = len(theirs) - len(back)
        worst = max(t for t, _node in back.values()) if back else float("nan")
        interruptions.append(result.outage)
        one_flow.append(result.one_flow_outage or 0.0)
        shares.append(result.answered_share)
        if not missing:
            all_back.append(worst)
        print(
            f"round {i + 1:2d}: killed {owner} (owned {len(theirs)} VIPs): {vip} interrupted "
            f"{result.outage * 1000:6.0f} ms (one flow {one_flow[-1] * 1000:6.0f} ms), "
            f"now owned by {result.new_owner}, "
            f"{result.answered_share:6.1%} answered in {window:g} s; all its VIPs answered "
            f"after {worst * 1000:6.0f} ms" + (f" ({missing} never answered)" if missing else "")
        )
        restore_node(lab, owner)
        # Ownership returns to the restored node (stable ranking): wait for that before the next
        # round so each round starts from the same state. During the hand-back old and new
        # owner answer for a moment (by design: the returning node answers before it takes
        # over) and the client may follow either.
        restored_at = time.monotonic()
        settled = settle(lab, vips, expected, timeout=15.0, explain_after=4.0)
        if settled is None:
            print(f"  note: ranking not fully restored 15 s after restoring {owner}")
            show_speaker(lab, owner)
        else:
            converge.append(settled - restored_at)
            print(f"  {owner} restored: every VIP on its ranked owner after {converge[-1]:.1f} s")
    return {
        "nodes": len(all_nodes),
        "vips": vip_count,
        "rounds": rounds,
        "probe_interval_ms": 10,
        "interruption_p50_s": round(statistics.median(interruptions), 3),
        "interruption_p99_s": round(percentile(interruptions, 99), 3),
        "interruption_max_s": round(max(interruptions), 3),
        "one_flow_interruption_p50_s": round(statistics.median(one_flow), 3),
        "one_flow_interruption_p99_s": round(percentile(one_flow, 99), 3),
        "answered_in_window_p50": round(statistics.median(shares), 4),
        "answered_in_window_min": round(min(shares), 4),
        "answered_in_window_mean": round(statistics.fmean(shares), 4),
        "window_s": window,
        "all_vips_back_p50_s": round(statistics.median(all_back), 3) if all_back else None,
        "all_vips_back_p99_s": round(percentile(all_back, 99), 3) if all_back else None,
        "rounds_with_unanswered_vips": rounds - len(all_back),
        "rounds_starting_with_vips_off_ranking": misdirected_rounds,
        "restore_to_ranking_p50_s": round(statistics.median(converge), 3) if converge else None,
        "restore_to_ranking_max_s": round(max(converge), 3) if converge else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--vips", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--window", type=float, default=10.0, help="seconds observed after a kill")
    parser.add_argument("--control-plane", choices=("both", REAL, STAND_IN), default="both")
    args = parser.parse_args()
    result: dict[str, object] = {
        "bench": "failover",
        "target": "p99 < 1 s, median < 0.5 s (docs/SPEAKER.md)",
        "load_1m": round(os.getloadavg()[0], 2),
    }
    kinds = (STAND_IN, REAL) if args.control_plane == "both" else (args.control_plane,)
    for kind in kinds:
        try:
            chosen = choose_control_plane(kind)
        except LabError as exc:
            print(f"[{kind}] left out: {exc}")
            result[kind] = {"skipped": str(exc)}
            continue
        print(f"[{kind}] {chosen.line}")
        result[kind] = run(kind, args.nodes, args.vips, args.rounds, args.window)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

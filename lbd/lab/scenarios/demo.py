"""``lbd lab demo``: watch lbd give a Service an address and move it when its node dies.

A narrated scenario on a fresh lab: every step says what it does, on which node, with which MAC,
and how long it took; a failed step stops the scenario with a non-zero exit, and the lab is torn
down in every case (unless ``--keep``). The same helpers (:mod:`.scenario`) drive the end-to-end
tests, so what the demo shows is what CI checks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from lbd.lab.cluster.lab import Lab, LabOptions, default_dir, down, kill_node, restore_node, up
from lbd.lab.cluster.netns import namespaces_with_prefix
from lbd.lab.scenarios import scenario

T = TypeVar("T")


class StepFailedError(RuntimeError):
    pass


@dataclass
class Narrator:
    """Prints numbered steps with their duration, and collects the summary."""

    out: Callable[[str], None]
    step_no: int = 0

    def step(self, title: str, fn: Callable[[], T]) -> T:
        self.step_no += 1
        self.out(f"\n[{self.step_no}] {title}")
        started = time.monotonic()
        try:
            result = fn()
        except (scenario.ScenarioError, StepFailedError) as exc:
            self.out(f"    FAILED after {time.monotonic() - started:.2f} s: {exc}")
            raise
        self.out(f"    ({time.monotonic() - started:.2f} s)")
        return result

    def say(self, text: str) -> None:
        self.out(f"    {text}")


def run_demo(
    *, prefix: str, nodes: int, lab_dir: Path | None, keep: bool, out: Callable[[str], None] = print
) -> int:
    def emit(line: str) -> None:
        out(line)
        sys.stdout.flush()

    narrator = Narrator(emit)
    opts = LabOptions(prefix=prefix, nodes=nodes, dir=lab_dir)
    lab: Lab | None = None
    leftover = lab_dir or default_dir(prefix)
    if namespaces_with_prefix(prefix) or (leftover / "lab.json").exists():
        # A demo that was interrupted (Ctrl-C, a crash) must not block the next one.
        out(f"removing a leftover demo lab {prefix}")
        down(prefix=prefix, lab_dir=leftover if leftover.is_dir() else None)
    try:
        lab = narrator.step(
            f"Bring up the lab: {nodes} nodes, a client, an API server, 2 controllers, speakers",
            lambda: up(opts, progress=narrator.say),
        )
        summary = _scenario(lab, narrator)
    except Exception as exc:
        out(f"\ndemo failed: {exc}")
        if lab is not None:
            out(f"logs: {lab.dir / 'logs'}")
        return 1
    finally:
        if lab is not None and not keep:
            report = down(prefix=lab.prefix, lab_dir=lab.dir)
            out(f"\nlab {report.prefix} removed ({len(report.namespaces)} namespaces)")
        elif lab is not None:
            out(f"\nlab kept: lbd lab down --dir {lab.dir}")
    out("\nSummary")
    for line in summary:
        out(f"  {line}")
    return 0


def _scenario(lab: Lab, n: Narrator) -> list[str]:
    macs = {node["mac"]: node["name"] for node in lab.data["nodes"]}
    kube = scenario.host_kube(lab)
    svc = "echo"

    def create() -> str:
        scenario.create_echo_service(kube, svc)
        vips = scenario.wait_for_vips(kube, svc)
        n.say(f"Service default/{svc} (type LoadBalancer) got {', '.join(vips)} from pool lab")
        return vips[0]

    vip = n.step(
        "Create a LoadBalancer Service and wait for the controller to assign a VIP", create
    )

    def _show_status(node: str) -> None:
        # What `kubectl get servicel2status` shows; written by the speaker, asynchronously.
        seen = scenario.wait_announced_by(kube, svc, node)
        n.say(f"ServiceL2Status default/{svc}: announced by {seen or '(not written yet)'}")

    def arp() -> str:
        answers = scenario.wait_for_arp(lab, vip)
        if len(answers) != 1:
            raise StepFailedError(
                f"expected exactly one MAC to answer ARP for {vip}, got {answers}"
            )
        n.say(f"client asks 'who has {vip}?' -> {answers[0]} ({macs.get(answers[0], '?')})")
        return str(macs.get(answers[0], "?"))

    owner = n.step(f"ARP from the client: which MAC answers for {vip}?", arp)

    def traffic() -> str:
        udp = scenario.wait_for_answer(lab, vip)
        tcp = scenario.tcp(lab, vip)
        n.say(f"UDP {vip}:9000 answered by {udp}; TCP {vip}:9000 answered by {tcp}")
        if udp != owner or tcp != owner:
            raise StepFailedError(f"traffic reached {udp}/{tcp}, but {owner} answered ARP")
        _show_status(udp)
        return udp

    owner = n.step("Send traffic to the VIP: which node answers?", traffic)

    def failover() -> scenario.Failover:
        result = scenario.measure_failover(lab, vip, owner, kill=lambda: kill_node(lab, owner))
        n.say(f"cut {owner} off (its link down, its speaker killed with SIGKILL)")
        n.say(
            f"traffic moved {owner} -> {result.new_owner}: interruption {result.outage:.3f} s "
            f"({result.lost} of {result.sent} probes at 10 ms lost)"
        )
        answers = scenario.wait_for_arp(lab, vip)
        n.say(f"ARP for {vip} now answered by {', '.join(answers)} ({macs.get(answers[0], '?')})")
        _show_status(result.new_owner)
        return result

    result = n.step(
        f"Kill the owner node {owner} while the client sends a probe every 10 ms", failover
    )

    def restore() -> str:
        restore_node(lab, owner)
        n.say(f"{owner}: link up, speaker restarted; waiting for it to rejoin")
        # The ranking is stable: once its heartbeats are seen again, the VIP goes back to it.
        back = scenario.wait_for_answer(lab, vip, node=owner, timeout=30.0)
        n.say(f"{vip} answered by {back} again")
        return back

    after = n.step(f"Restore {owner}", restore)
    return [
        f"VIP {vip} for Service default/{svc}",
        f"first owner {owner} ({lab.node(owner)['mac']})",
        f"after killing {owner}: {result.new_owner}, client-observed interruption "
        f"{result.outage * 1000:.0f} ms",
        f"after restoring {owner}: {after}",
    ]

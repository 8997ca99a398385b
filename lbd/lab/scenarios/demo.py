"""``lbd lab demo``: watch lbd give a Service an address and move it when its node dies.

A narrated scenario on a fresh lab: every step says what it does, on which node, with which MAC,
and how long it took; a failed step stops the scenario with a non-zero exit, and the lab is torn
down in every case (unless ``--keep``; after a failure its logs stay). The same helpers
(:mod:`.scenario`) drive the end-to-end tests, so what the demo shows is what CI checks.

On the **real** control plane (the default when ``make k8s`` has built it) the demo follows the
tutorials this project started from: echo Pods run on every node, ``kubectl get svc`` shows the
Service's EXTERNAL-IP once lbd assigned it, ``kubectl get endpointslices`` shows the pods the real
endpointslice controller selected, ``curl http://EXTERNAL-IP/`` from the client is answered by a
pod through the real kube-proxy on the node that answers ARP, and when that node dies the address
moves, the node's pods leave the EndpointSlice, and the client's traffic goes on. On the
**stand-in** it shows the same failover with the stand-ins (the node itself answers), and says
why it runs there.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from lbd.lab.cluster.lab import (
    Lab,
    LabOptions,
    choose_control_plane,
    default_dir,
    down,
    kill_node,
    restore_node,
    up,
)
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

    def shell(self, prompt: str, output: str) -> None:
        """Show a command as a user would type it, and its output."""
        self.out(f"    $ {prompt}")
        for line in output.rstrip("\n").splitlines():
            self.out(f"      {line}")


def run_demo(
    *,
    prefix: str,
    nodes: int,
    lab_dir: Path | None,
    keep: bool,
    control_plane: str | None = None,
    out: Callable[[str], None] = print,
) -> int:
    def emit(line: str) -> None:
        out(line)
        sys.stdout.flush()

    narrator = Narrator(emit)
    try:
        choice = choose_control_plane(control_plane)
    except RuntimeError as exc:
        out(f"demo: {exc}")
        return 1
    out(f"demo: {choice.line}")
    opts = LabOptions(prefix=prefix, nodes=nodes, dir=lab_dir, control_plane=choice.kind)
    lab: Lab | None = None
    failed = False
    leftover = lab_dir or default_dir(prefix)
    if namespaces_with_prefix(prefix) or (leftover / "lab.json").exists():
        # A demo that was interrupted (Ctrl-C, a crash) must not block the next one.
        out(f"removing a leftover demo lab {prefix}")
        down(prefix=prefix, lab_dir=leftover if leftover.is_dir() else None)
    what = (
        "etcd, kube-apiserver, kube-controller-manager, kube-proxy and echo pods on every node"
        if choice.kind == "real"
        else "the API stand-in, kube-proxy and echo stand-ins"
    )
    try:
        lab = narrator.step(
            f"Bring up the lab: {nodes} nodes, a client, {what}, 2 lbd controllers, speakers",
            lambda: up(opts, progress=narrator.say),
        )
        summary = _real(lab, narrator) if lab.real else _stand_in(lab, narrator)
    except Exception as exc:
        failed = True
        out(f"\ndemo failed: {exc}")
        if lab is not None:
            out(f"logs: {lab.dir / 'logs'}")
        return 1
    finally:
        if lab is not None and not keep:
            report = down(prefix=lab.prefix, lab_dir=lab.dir, keep_logs=failed)
            out(f"\nlab {report.prefix} removed ({len(report.namespaces)} namespaces)")
        elif lab is not None:
            out(f"\nlab kept: lbd lab down --dir {lab.dir}")
    out("\nSummary")
    for line in summary:
        out(f"  {line}")
    return 0


def _stand_in(lab: Lab, n: Narrator) -> list[str]:
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

    def answered_again() -> str:
        back = scenario.wait_for_answer(lab, vip, node=owner, timeout=30.0)
        n.say(f"{vip} answered by {back} again")
        return back

    after = _restore(lab, n, owner, "speaker restarted; waiting for it to rejoin", answered_again)
    return [
        "control plane: stand-in (`make k8s` builds the real one; the demo then runs on it)",
        f"VIP {vip} for Service default/{svc}",
        f"first owner {owner} ({lab.node(owner)['mac']})",
        f"after killing {owner}: {result.new_owner}, client-observed interruption "
        f"{result.outage * 1000:.0f} ms",
        f"after restoring {owner}: {after}",
    ]


def _restore(lab: Lab, n: Narrator, owner: str, restarted: str, back: Callable[[], str]) -> str:
    """The last step of both demos: bring the killed owner back, and wait until ``back`` sees
    its VIP return to it (the ranking is stable: once its heartbeats are seen again, the VIP
    goes back to it)."""

    def restore() -> str:
        restore_node(lab, owner)
        n.say(f"{owner}: link up, {restarted}")
        return back()

    return n.step(f"Restore {owner}", restore)


SERVICE_YAML = """\
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  type: LoadBalancer
  selector:
    app: echo
  ports:
  - {name: http, port: 80, targetPort: 80}
  - {name: udp-echo, port: 9000, targetPort: 9000, protocol: UDP}
"""


def _kubectl(lab: Lab, *args: str, stdin: str | None = None) -> str:
    """Run the lab's kubectl (the one ``make k8s`` built) against the lab, from the host."""
    from lbd.lab.control_plane import find_binaries

    done = subprocess.run(
        [str(find_binaries().kubectl), "--kubeconfig", str(lab.host_kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise StepFailedError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _real(lab: Lab, n: Narrator) -> list[str]:
    kube = scenario.host_kube(lab)
    svc = "echo"

    def pods() -> None:
        n.shell("kubectl get pods -o wide", _kubectl(lab, "get", "pods", "-o", "wide"))

    n.step("Echo pods run on every node (placed by the lab, kubelet's part played by it)", pods)

    def create() -> str:
        n.shell(
            "kubectl apply -f echo-service.yaml",
            _kubectl(lab, "apply", "-f", "-", stdin=SERVICE_YAML),
        )
        vips = scenario.wait_for_vips(kube, svc)
        n.shell(f"kubectl get svc {svc}", _kubectl(lab, "get", "svc", svc))
        n.say(f"lbd's controller assigned {vips[0]} from the IPAddressPool 'lab' (EXTERNAL-IP)")
        return vips[0]

    vip = n.step("Create a LoadBalancer Service, as in the tutorial", create)

    def slices() -> None:
        selector = f"kubernetes.io/service-name={svc}"
        scenario.poll(
            lambda: _kubectl(lab, "get", "endpointslices", "-l", selector, "-o", "name").strip(),
            timeout=10.0,
            what=f"an EndpointSlice for {svc}",
        )
        n.shell(
            f"kubectl get endpointslices -l {selector}",
            _kubectl(lab, "get", "endpointslices", "-l", selector),
        )
        n.shell(
            f"kubectl get endpointslices -l {selector} -o jsonpath=...   # pod, node, ready",
            _endpoints(lab, svc),
        )
        n.say("written by kube-controller-manager's endpointslice controller, read by kube-proxy")

    n.step("The EndpointSlice lists the pods", slices)

    def curl() -> str:
        owner = scenario.arp_owner(lab, vip)
        scenario.poll(lambda: _try_http(lab, vip), timeout=10.0, what=f"http://{vip}/ to answer")
        for _ in range(4):
            n.shell(f"curl http://{vip}/   # from the client", scenario.http_get(lab, vip))
        n.say(
            f"{owner} answers ARP for {vip} ({lab.node(owner)['mac']}); its kube-proxy "
            "(nftables DNAT) sends each connection to one of the pods, on any node"
        )
        seen = scenario.wait_announced_by(kube, svc, owner)
        n.say(f"ServiceL2Status default/{svc}: announced by {seen or '(not written yet)'}")
        return owner

    owner = n.step("curl the EXTERNAL-IP from the client, outside the cluster", curl)

    def failover() -> scenario.Failover:
        result = scenario.measure_failover(
            lab, vip, owner, kill=lambda: kill_node(lab, owner), window=3.0
        )
        n.say(f"cut {owner} off (link down, speaker SIGKILLed, its pods marked not ready)")
        n.say(
            f"{vip} now announced by {result.new_owner} ({lab.node(result.new_owner)['mac']}); "
            f"client-observed interruption {result.outage:.3f} s "
            f"({result.lost} of {result.sent} probes at 10 ms lost), "
            f"{result.answered_share:.0%} of the probes of the 3 s after the kill answered"
        )
        n.shell(
            "kubectl get endpointslices -l kubernetes.io/service-name=echo -o jsonpath=...",
            _endpoints(lab, svc),
        )
        n.shell(f"curl http://{vip}/", scenario.http_get(lab, vip))
        return result

    result = n.step(
        f"Kill the owner node {owner} while the client sends a UDP probe every 10 ms", failover
    )

    def announced_again() -> str:
        back = scenario.poll(
            lambda: (o := scenario.arp_owner(lab, vip)) == owner and o,
            timeout=30.0,
            what=f"{owner} to answer ARP for {vip} again",
        )
        scenario.poll(lambda: _try_http(lab, vip), timeout=10.0, what=f"http://{vip}/ to answer")
        n.say(f"{vip} announced by {back} again; curl: {scenario.http_get(lab, vip).strip()}")
        return str(back)

    after = _restore(lab, n, owner, "speaker restarted, its pods ready again", announced_again)
    return [
        f"control plane: real, Kubernetes {_server_version(lab)} (kube-apiserver, etcd, "
        "kube-controller-manager, kube-proxy)",
        f"EXTERNAL-IP {vip} for Service default/{svc}, answered by pods through kube-proxy",
        f"first owner {owner} ({lab.node(owner)['mac']})",
        f"after killing {owner}: {result.new_owner}, client-observed interruption "
        f"{result.outage * 1000:.0f} ms, {result.answered_share:.0%} of probes answered "
        "in the 3 s after",
        f"after restoring {owner}: {after}",
    ]


ENDPOINTS_JSONPATH = (
    "{range .items[*].endpoints[*]}{.targetRef.name}{'\\t'}{.nodeName}{'\\tready='}"
    "{.conditions.ready}{'\\n'}{end}"
)


def _endpoints(lab: Lab, svc: str) -> str:
    """One line per endpoint of ``svc``'s EndpointSlices: pod, node, ready."""
    out = _kubectl(
        lab,
        "get",
        "endpointslices",
        "-l",
        f"kubernetes.io/service-name={svc}",
        "-o",
        f"jsonpath={ENDPOINTS_JSONPATH}",
    )
    return "\n".join(sorted(out.splitlines()))


def _try_http(lab: Lab, vip: str) -> bool:
    try:
        scenario.http_get(lab, vip, timeout=1.0)
    except OSError:
        return False
    return True


def _server_version(lab: Lab) -> str:
    import json

    return str(json.loads(_kubectl(lab, "version", "-o", "json"))["serverVersion"]["gitVersion"])

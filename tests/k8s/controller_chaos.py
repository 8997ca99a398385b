"""Chaos: two ``lbd controller --leader-elect`` processes against the API server while a random
workload runs and faults are injected; then the invariants users rely on are checked.

Used by ``tests/k8s/test_controller_chaos.py`` (a fresh seed every run, plus a fixed regression
seed) and ``tests/bench/bench_chaos.py`` (20 seeds). ``LBD_CHAOS_SEED`` replays one seed.

Workload (seeded, reproducible): ``LBD_CHAOS_OPS`` (2 000) random operations, at most
``LBD_CHAOS_RATE`` (60) a second: create / update / delete Services (requested addresses, pool
annotations, sharing keys, dual-stack, another class, type changes) and create / grow / shrink /
delete pools (with overlaps and typos now and then).

Faults: watch streams closed, bursts of 500 / 429 / 409 answers, two few-second API outages,
and three ``kill -9`` of the active controller (the standby takes over; a new standby is
started), all in the first two thirds of the workload.

Invariants:
1. No address is held by two Services that may not share it (``ipam.sharing_problem``).
2. Every eligible Service has an address: an independent allocator, given the final pools and
   every address the Services hold, would refuse each Service left without one.
3. No Service of another ``loadBalancerClass`` was touched (resourceVersion unchanged since our
   own last write, no status, no annotation).
4. No Service changed address while its request stayed the same and its address stayed inside
   a valid pool (replayed from a watch of every change, in resourceVersion order).
5. At no moment of that history did two Services that may not share an address both show it:
   an address moves from one Service to another only after the first stopped showing it.
6. Once the workload is quiet (last operation done, faults off, a live leader holds the lease),
   invariants 1-3 hold within ``SETTLE_LIMIT`` (2 s).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lbd.core.config import PoolInput, build_config
from lbd.core.ipam import Allocator, sharing_problem
from lbd.core.model import Allocation, ServiceRequest, address_to_int
from lbd.k8s.client import IPADDRESSPOOLS, LEASES, SERVICES, ApiError, JsonDict, Kube
from lbd.k8s.informer import EventType, Informer
from lbd.k8s.service import observe_service
from tests.k8s.controller_support import (
    CONTROLLER_TOKEN,
    ROOT,
    ApiServer,
    controller_argv,
    kube_for,
    service_body,
    wait_for,
)

OPS = int(os.environ.get("LBD_CHAOS_OPS", "2000"))
RATE = float(os.environ.get("LBD_CHAOS_RATE", "60"))
"""Operations per second at most. Unpaced, the workload runs as fast as the in-process lab API
server answers, so the controller (three writes per new Service: status, annotation, Event)
lags it by seconds and "settled within 2 s of quiet" would measure the lab server's throughput
on a busy machine, not liveness. 60/s is still far above a real cluster's churn."""
SETTLE_LIMIT = 2.0
"""Seconds after the workload went quiet by which every invariant must hold (issue 10)."""
REGRESSION_SEED = 20261124
"""The seed the first chaos runs were tuned on; always run, so a fix that regresses shows."""
OTHER_CLASS = "example.com/other"
NAMESPACES = ("default", "team-a", "team-b")
# Candidate pools: name -> list of address sets it may take (grow, shrink, overlap, typo).
POOL_SHAPES: dict[str, list[list[str]]] = {
    "alpha": [["198.18.100.0/26"], ["198.18.100.0/25"], ["198.18.100.0/27"]],
    "beta": [["198.18.101.0/26", "2001:db8:18::100:0/120"], ["198.18.101.0/25"]],
    "gamma": [["198.18.102.0/27"], ["198.18.102.0/26"], ["198.18.100.16/28"]],  # overlaps alpha
    # host bits set (read as 198.18.103.0/28, with a warning), and a typo (Invalid)
    "delta": [["198.18.103.0/28"], ["198.18.103.1/28"], ["198.18.103.0/33"]],
}
REQUEST_FIELDS = ("lbd.io/loadBalancerIPs", "lbd.io/address-pool", "lbd.io/allow-shared-ip")


class Controllers:
    """``lbd controller`` subprocesses sharing one Lease."""

    def __init__(self, kubeconfig: Path, logdir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[Any] = []
        self.n = 0

    def start(self) -> str:
        self.n += 1
        ident = f"ctl{self.n}"
        log = open(self.logdir / f"{ident}.log", "wb")  # noqa: SIM115 (closed in stop_all)
        self.logs.append(log)
        self.procs[ident] = subprocess.Popen(
            controller_argv(
                self.kubeconfig,
                "--leader-elect",
                "--identity",
                ident,
                "--lease-duration",
                "3",
                "--renew-deadline",
                "2",
                "--retry-period",
                "0.5",
                "--health-addr",
                "127.0.0.1:0",
                # no speakers run here: not judging speaker liveness keeps the workload about
                # addresses (else every Service also gets NoLiveSpeaker: a write and an Event)
                "--speaker-namespace=",
            ),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return ident

    def leader_state(self, ident: str | None, admin: Kube) -> list[str]:
        """The allocator state ``ident`` logs on SIGUSR1 (or why there is none), and where
        what its allocator holds differs from what the Services show."""
        proc = self.procs.get(ident or "")
        if proc is None:
            return [f"no state: the lease holder {ident} is not running"]
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        lines = (self.logdir / f"{ident}.log").read_text(errors="replace").splitlines()
        dumps = [line for line in lines if '"msg":"state: ' in line]
        if not dumps:
            return [f"{ident} state: (no dump)"]
        out = [f"{ident} state: {dumps[-1][:6000]}"]
        try:
            state = json.loads(json.loads(dumps[-1])["msg"].removeprefix("state: "))
            held: dict[str, str] = (state.get("allocator") or {}).get("held") or {}
        except (ValueError, KeyError, AttributeError):
            return out
        shown = {
            f"{s['metadata']['namespace']}/{s['metadata']['name']}": ",".join(ingress_addresses(s))
            for s in admin.get(SERVICES.path())["items"]
            if _ours(s)
        }
        for key in sorted(set(held) | {k for k, v in shown.items() if v}):
            if held.get(key, "") != shown.get(key, ""):
                out.append(
                    f"{ident} holds {held.get(key) or 'nothing'} for {key}, which shows "
                    f"{shown.get(key, '(no such Service)') or 'nothing'}"
                )
        return out

    def kill9(self, ident: str) -> None:
        proc = self.procs.pop(ident)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs.clear()
        for log in self.logs:
            log.close()


HistoryEvent = tuple[int, str, JsonDict | None, JsonDict | None]
"""resourceVersion, ``svc`` or ``pool``, the object before (None: new) and after (None: gone)."""


class History:
    """Every Service and pool change seen by a watch, for the replay check."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[HistoryEvent] = []
        self.address_changes: list[float] = []  # when a Service's addresses changed (monotonic)
        self.seen_at: dict[int, float] = {}  # resourceVersion -> wall time the watch saw it

    def save(self, path: Path) -> None:
        """Every change, one JSON line each in resourceVersion order (to read beside the
        controllers' logs, whose lines carry wall times and the pool versions they applied)."""
        with self.lock:
            events = sorted(self.events, key=lambda e: e[0])
            seen = dict(self.seen_at)
        with path.open("w") as out:
            for rv, kind, old, new in events:
                o = new if new is not None else old
                assert o is not None
                line = {
                    "rv": rv,
                    "seen": round(seen.get(rv, 0.0), 3),
                    "kind": kind,
                    "key": f"{o['metadata'].get('namespace') or ''}/{o['metadata']['name']}",
                    "deleted": new is None,
                    "addresses": ingress_addresses(o) if kind == "svc" else None,
                    "request": _request_of(o) if kind == "svc" else o.get("spec"),
                }
                out.write(json.dumps(line) + "\n")

    def handler(self, kind: str) -> Any:
        def on(t: EventType, old: JsonDict | None, new: JsonDict | None) -> None:
            obj = new if new is not None else old
            assert obj is not None
            rv = int(obj["metadata"].get("resourceVersion") or 0)
            moved = (
                kind == "svc"
                and new is not None
                and (old is None or ingress_addresses(old) != ingress_addresses(new))
                and bool(old is not None or ingress_addresses(new))
            )
            with self.lock:
                self.events.append((rv, kind, old, new if t is not EventType.DELETED else None))
                self.seen_at[rv] = time.time()
                if moved:
                    self.address_changes.append(time.monotonic())

        return on

    def last_address_change(self) -> float:
        with self.lock:
            return max(self.address_changes, default=0.0)


def _retry(fn: Any, *args: Any, attempts: int = 30) -> Any:
    """The workload's own requests meet the same faults; retry them like a user would."""
    for _ in range(attempts):
        try:
            return fn(*args)
        except ApiError as exc:
            if exc.status in (404, 422, 400):
                return None
            if exc.status == 409 and exc.reason == "AlreadyExists":
                return None
            time.sleep(0.1)
    return None


class Workload:
    def __init__(self, kube: Kube, rng: random.Random) -> None:
        self.kube = kube
        self.rng = rng
        self.names: set[tuple[str, str]] = set()
        self.other_class_rv: dict[tuple[str, str], str] = {}
        self.serial = 0

    def random_service(self, ns: str, name: str) -> JsonDict:
        rng = self.rng
        ann: dict[str, str] = {}
        spec: dict[str, Any] = {}
        roll = rng.random()
        if roll < 0.08:
            spec["loadBalancerClass"] = OTHER_CLASS
        elif roll < 0.20:
            ann["lbd.io/loadBalancerIPs"] = f"198.18.100.{rng.randrange(0, 64)}"
        elif roll < 0.25:
            ann["lbd.io/loadBalancerIPs"] = rng.choice(["garbage", "198.18.250.1"])
        elif roll < 0.35:
            ann["lbd.io/address-pool"] = rng.choice(list(POOL_SHAPES))
        if rng.random() < 0.15:
            ann["lbd.io/allow-shared-ip"] = rng.choice(["k1", "k2"])
        if rng.random() < 0.15:
            spec["ipFamilies"] = ["IPv4", "IPv6"]
            spec["ipFamilyPolicy"] = "PreferDualStack"
        port = rng.choice([80, 443, 53])
        proto = rng.choice(["TCP", "UDP"])
        return service_body(name, ns, annotations=ann, ports=[(proto, port)], **spec)

    def op(self) -> None:
        rng = self.rng
        r = rng.random()
        if r < 0.06:
            self.pool_op()
        elif r < 0.50 or len(self.names) < 20:
            self.serial += 1
            ns = rng.choice(NAMESPACES)
            name = f"s{self.serial}"
            body = self.random_service(ns, name)
            got = _retry(self.kube.create, SERVICES.path(namespace=ns), body)
            if got is not None:
                self.names.add((ns, name))
                if body["spec"].get("loadBalancerClass") == OTHER_CLASS:
                    self.other_class_rv[(ns, name)] = got["metadata"]["resourceVersion"]
        elif r < 0.80:
            ns, name = rng.choice(sorted(self.names))
            path = SERVICES.path(namespace=ns, name=name)
            if (ns, name) in self.other_class_rv:
                patch: JsonDict = {"metadata": {"labels": {"touch": str(self.serial)}}}
            elif rng.random() < 0.3:
                new_type = rng.choice(["ClusterIP", "LoadBalancer"])
                patch = {"spec": {"type": new_type}}
            else:
                patch = {"metadata": {"annotations": {"lbd.io/loadBalancerIPs": None}}}
                if rng.random() < 0.5:
                    ip = f"198.18.101.{rng.randrange(0, 64)}"
                    patch = {"metadata": {"annotations": {"lbd.io/loadBalancerIPs": ip}}}
            got = _retry(self.kube.patch, path, patch)
            if got is not None and (ns, name) in self.other_class_rv:
                self.other_class_rv[(ns, name)] = got["metadata"]["resourceVersion"]
        else:
            ns, name = rng.choice(sorted(self.names))
            _retry(self.kube.delete, SERVICES.path(namespace=ns, name=name))
            self.names.discard((ns, name))
            self.other_class_rv.pop((ns, name), None)

    def pool_op(self) -> None:
        rng = self.rng
        name = rng.choice(list(POOL_SHAPES))
        path = IPADDRESSPOOLS.path(name=name)
        current = _retry(self.kube.get, path)
        if current is None:
            body = {
                "apiVersion": "lbd.io/v1beta1",
                "kind": "IPAddressPool",
                "metadata": {"name": name},
                "spec": {"addresses": rng.choice(POOL_SHAPES[name])},
            }
            _retry(self.kube.create, IPADDRESSPOOLS.path(), body)
        elif rng.random() < 0.2 and name != "alpha":
            _retry(self.kube.delete, path)
        else:
            _retry(self.kube.patch, path, {"spec": {"addresses": rng.choice(POOL_SHAPES[name])}})


def holder_of_lease(kube: Kube) -> str | None:
    try:
        lease = kube.get(LEASES.path(namespace="lbd-system", name="lbd-controller"))
    except ApiError:
        return None
    return str((lease.get("spec") or {}).get("holderIdentity") or "") or None


@dataclass
class ChaosResult:
    """What one chaos run found (``problems`` empty: every invariant held)."""

    seed: int
    problems: list[str] = field(default_factory=list)
    settle_seconds: float | None = None
    """From quiet to every invariant holding (None: not within the 60 s we waited)."""
    ops: int = 0
    elapsed: float = 0.0
    kills: int = 0
    assigned: int = 0

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        settle = "never" if self.settle_seconds is None else f"{self.settle_seconds:.2f}s"
        return (
            f"seed {self.seed}: {self.ops} operations in {self.elapsed:.1f}s, {self.kills} leader "
            f"kills, {self.assigned} assigned, settled in {settle}: "
            + ("passed" if self.passed else "FAILED")
        )


def chaos_seed() -> int:
    """``LBD_CHAOS_SEED`` if set (to replay a run), else a fresh one."""
    env = os.environ.get("LBD_CHAOS_SEED")
    return int(env) if env else random.SystemRandom().randrange(1, 2**31)


def run_chaos(lab: ApiServer, seed: int, tmp_path: Path, ops: int = OPS) -> ChaosResult:
    """The whole scenario on a clean API server (stand-in or real); returns what it found."""
    result = ChaosResult(seed=seed, ops=ops)
    rng = random.Random(seed)
    admin = kube_for(lab)
    for ns in NAMESPACES[1:]:
        admin.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    admin.create(
        IPADDRESSPOOLS.path(),
        {
            "apiVersion": "lbd.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "alpha"},
            "spec": {"addresses": POOL_SHAPES["alpha"][0]},
        },
    )
    history = History()
    watchers = [
        Informer(kube_for(lab), SERVICES, backoff_max=0.5),
        Informer(kube_for(lab), IPADDRESSPOOLS, backoff_max=0.5),
    ]
    watchers[0].add_handler(history.handler("svc"))
    watchers[1].add_handler(history.handler("pool"))
    for w in watchers:
        w.start()
        assert w.wait_for_sync(10)

    kubeconfig = lab.write_kubeconfig(tmp_path / "kubeconfig", CONTROLLER_TOKEN)
    ctls = Controllers(kubeconfig, tmp_path)
    ctls.start()
    ctls.start()
    work = Workload(admin, rng)
    try:
        wait_for(lambda: holder_of_lease(admin), 20, "a leader")
        started = time.monotonic()
        for i in range(ops):
            op_started = time.monotonic()
            work.op()
            time.sleep(max(0.0, 1.0 / RATE - (time.monotonic() - op_started)))
            if i % 100 == 50:
                fault = rng.choice(["watches", "500", "429", "409", "latency"])
                if fault == "watches":
                    lab.close_watches()
                elif fault == "latency":
                    lab.add_latency(0.02, verb="patch")
                else:
                    lab.fail_next(rng.randint(3, 10), int(fault))
            if i % 100 == 99:
                lab.reset_faults()
            # Disruptions stop at two thirds: the last third is ordinary churn, after which
            # "settled within 2 s of quiet" measures liveness, not a takeover's backlog.
            if i in (ops // 4, ops * 11 // 20):
                lab.outage(2.5)
                time.sleep(2.6)
            if i in (ops * 3 // 20, ops * 2 // 5, ops * 13 // 20):
                leader = wait_for(
                    lambda: (h := holder_of_lease(admin)) in ctls.procs and h, 20, "a live leader"
                )
                if leader in ctls.procs:
                    ctls.kill9(leader)
                    result.kills += 1
                    ctls.start()
        lab.reset_faults()
        result.elapsed = time.monotonic() - started
        if result.kills < 2:
            result.problems.append("the active controller must have been killed at least twice")
        # Quiet: the workload is done, faults are off, and a live replica holds the lease.
        wait_for(lambda: holder_of_lease(admin) in ctls.procs, 30, "a live leader")
        result.settle_seconds, problems = settle(admin, work, history, deadline=60)
        result.problems += problems
        if result.settle_seconds is not None and result.settle_seconds > SETTLE_LIMIT:
            result.problems.append(
                f"settled {result.settle_seconds:.2f}s after the workload went quiet "
                f"(limit {SETTLE_LIMIT}s)"
            )
        if problems:  # what the leader's allocator believes (its SIGUSR1 dump), to debug
            result.problems += ctls.leader_state(holder_of_lease(admin), admin)
        churn = replay(history)
        if churn or os.environ.get("LBD_CHAOS_DEBUG"):
            history.save(tmp_path / "history.jsonl")
        if churn:
            relists = {w.resource.kind: w.relists for w in watchers}
            churn.append(
                f"the observer's watches relisted {relists} times; every "
                f"change it saw, with the controllers' logs: {tmp_path}"
            )
            if os.environ.get("LBD_CHAOS_DEBUG"):
                dump_history(history, churn)
        result.problems += churn
        result.assigned = sum(
            1 for svc in admin.get(SERVICES.path())["items"] if ingress_addresses(svc)
        )
        # alpha (never deleted, 32 addresses at least) alone gives this many: fewer means the
        # run tested nothing.
        if result.assigned < 30:
            result.problems.append(f"only {result.assigned} Services hold an address: vacuous")
    finally:
        ctls.stop_all()
        for w in watchers:
            w.stop()
    return result


def ingress_addresses(svc: JsonDict) -> tuple[str, ...]:
    return observe_service(svc).addresses


def allocated_pool(svc: JsonDict) -> str | None:
    return observe_service(svc).pool_hint


def service_request(svc: JsonDict, ns_labels: dict[str, str]) -> Any:
    return observe_service(svc).request_in(ns_labels)


def _requests(admin: Kube) -> tuple[list[JsonDict], dict[str, JsonDict], dict[str, dict[str, str]]]:
    services = admin.get(SERVICES.path())["items"]
    pools = {p["metadata"]["name"]: p for p in admin.get(IPADDRESSPOOLS.path())["items"]}
    ns_labels = {
        n["metadata"]["name"]: n["metadata"].get("labels") or {}
        for n in admin.get("/api/v1/namespaces")["items"]
    }
    return services, pools, ns_labels


def _ours(svc: JsonDict) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


def check_invariants(admin: Kube, work: Workload) -> list[str]:
    services, pools, ns_labels = _requests(admin)
    problems: list[str] = []
    reqs: dict[str, ServiceRequest] = {}
    held: dict[str, list[str]] = {}
    for svc in services:
        key = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
        addrs = ingress_addresses(svc)
        if not _ours(svc):
            if svc["spec"].get("loadBalancerClass") == OTHER_CLASS:
                continue  # checked below
            if addrs:
                problems.append(f"{key}: not a LoadBalancer but still shows {addrs}")
            continue
        req = service_request(svc, ns_labels.get(svc["metadata"]["namespace"], {}))
        if isinstance(req, ServiceRequest):
            reqs[key] = req
        for a in addrs:
            held.setdefault(a, []).append(key)
    # 1. no address held by two Services that may not share it
    for address, keys in held.items():
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                if a in reqs and b in reqs and sharing_problem(reqs[a], reqs[b]) is None:
                    continue
                problems.append(f"{address} held by {a} and {b}, who may not share")
    # 2. every eligible Service has an address (an independent allocator agrees)
    config = build_config(
        {
            n: PoolInput(spec=p.get("spec") or {}, labels=p["metadata"].get("labels") or {})
            for n, p in pools.items()
        }
    )
    oracle = Allocator()
    oracle.set_pools(config.pools.values(), config.conflicting.keys(), config.invalid.keys())
    by_key = {f"{s['metadata']['namespace']}/{s['metadata']['name']}": s for s in services}
    oracle.restore_all(
        (reqs[k], ingress_addresses(by_key[k]), allocated_pool(by_key[k]))
        for k in reqs
        if ingress_addresses(by_key[k])
    )
    for key, req in sorted(reqs.items(), key=lambda kv: kv[1].age_rank):
        if ingress_addresses(by_key[key]):
            continue
        got = oracle.allocate(req)
        if isinstance(got, Allocation):
            problems.append(f"{key} has no address but could get {got.addresses} from {got.pool}")
            oracle.release(req.key)
    # 3. Services of another class untouched
    for (ns, name), rv in work.other_class_rv.items():
        other = by_key.get(f"{ns}/{name}")
        if other is None:
            continue
        svc = other
        if svc["metadata"]["resourceVersion"] != rv:
            problems.append(f"{ns}/{name} (other class) was written by someone else")
        if svc.get("status", {}).get("conditions") or ingress_addresses(svc):
            problems.append(f"{ns}/{name} (other class) shows our status")
        if allocated_pool(svc):
            problems.append(f"{ns}/{name} (other class) carries our annotation")
    return problems


def settle(
    admin: Kube, work: Workload, history: History, deadline: float
) -> tuple[float | None, list[str]]:
    """Seconds from now (quiet) until invariants 1-3 held (None if not within ``deadline``),
    and the problems still found then.

    The time is that of the last address change a watch saw before the check found everything
    right, not that of the check: the check lists every Service from the lab API server, which
    shares this process (and its interpreter lock) with the controller's writes, so polling it
    often would slow what it measures and polling it rarely would blur the figure.
    """
    start = time.monotonic()
    end = start + deadline
    problems: list[str] = ["not checked"]
    late: list[str] = []
    while time.monotonic() < end:
        problems = check_invariants(admin, work)
        if os.environ.get("LBD_CHAOS_DEBUG"):
            print(f"{time.monotonic() - start:.2f}s: {len(problems)} {problems[:2]}")
        if not problems:
            took = max(0.0, history.last_address_change() - start)
            if took > SETTLE_LIMIT:  # say what was still wrong at the limit
                return took, [f"at {SETTLE_LIMIT}s: {p}" for p in late[:10]]
            return took, []
        if not late and time.monotonic() - start > SETTLE_LIMIT:
            late = problems
        time.sleep(0.5)
    return None, problems[:20]


def dump_history(history: History, churn: list[str]) -> None:
    """LBD_CHAOS_DEBUG=1 prints the history of the offending Services (=all: everything)."""
    bad = {w.strip(",;") for c in churn for w in c.split() if "/" in w and not w[0].isdigit()}
    bad |= {c.split(":")[0] for c in churn}
    with history.lock:
        for rv, kind, old, new in sorted(history.events, key=lambda e: e[0]):
            o = new if new is not None else old
            assert o is not None
            k = f"{o['metadata'].get('namespace')}/{o['metadata']['name']}"
            if k in bad or kind == "pool" or os.environ["LBD_CHAOS_DEBUG"] == "all":
                print(
                    rv,
                    kind,
                    k,
                    new is None,
                    ingress_addresses(o),
                    _request_of(o) if kind == "svc" else o.get("spec"),
                )


def _request_of(svc: JsonDict) -> tuple[Any, ...]:
    ann = svc["metadata"].get("annotations") or {}
    spec = svc.get("spec") or {}
    return (
        tuple(ann.get(f) for f in REQUEST_FIELDS),
        spec.get("type"),
        spec.get("loadBalancerIP"),
        tuple(spec.get("ipFamilies") or ()),
        spec.get("ipFamilyPolicy"),
        tuple(sorted((p.get("protocol"), p.get("port")) for p in spec.get("ports") or [])),
    )


def _uid(obj: JsonDict | None) -> str | None:
    return None if obj is None else obj["metadata"].get("uid")


def _with_replacements(events: list[HistoryEvent]) -> list[HistoryEvent]:
    """A change whose old and new objects differ in uid is a delete and a re-create that the
    watch did not show one by one: the observer's informer relisted after a gap (a ``410 Gone``
    after an outage or closed watches) and reports the replaced object as modified. Replay it
    as the deletion followed by the creation, or a Service moved out of a pool that was deleted
    and re-created in the gap would count as churn."""
    out: list[HistoryEvent] = []
    for rv, kind, old, new in events:
        replaced = old is not None and new is not None and _uid(old) != _uid(new)
        if replaced:
            out.append((rv, kind, old, None))
        out.append((rv, kind, None if replaced else old, new))
    return out


def replay(history: History) -> list[str]:
    """Invariants 4 and 5, replayed from the history in resourceVersion order: address changes
    of a Service whose request did not change since it got the address and whose address never
    left the valid pools meanwhile; and any moment two Services that may not share an address
    both showed it."""
    with history.lock:
        events = _with_replacements(sorted(history.events, key=lambda e: e[0]))
    pools: dict[str, JsonDict] = {}
    # key -> [addresses, request when they were assigned, wanted pool, exempt from the check]
    state: dict[str, list[Any]] = {}
    problems: list[str] = []

    def in_valid_pool(addrs: tuple[str, ...], wanted_pool: str | None) -> bool:
        config = build_config({n: PoolInput(spec=p.get("spec") or {}) for n, p in pools.items()})
        usable = [
            p
            for name, p in config.pools.items()
            if name not in config.conflicting and (wanted_pool is None or name == wanted_pool)
        ]
        for a in addrs:
            fam, value = address_to_int(a)
            if not any(r.contains(fam, value) for p in usable for r in p.ranges):
                return False
        return True

    # invariant 5: who shows which address right now, and under which request
    showing: dict[str, set[str]] = {}
    shown_by: dict[str, tuple[tuple[str, ...], ServiceRequest | None]] = {}

    def show(key: str, addrs: tuple[str, ...], req: ServiceRequest | None, rv: int) -> None:
        before = shown_by.pop(key, ((), None))[0]
        for a in before:
            showing[a].discard(key)
        if not addrs:
            return
        shown_by[key] = (addrs, req)
        for a in addrs:
            for other in sorted(showing.setdefault(a, set())):
                theirs = shown_by[other][1]
                if a in before:
                    continue  # it showed it already: reported when it started
                if req is None or theirs is None or sharing_problem(req, theirs) is not None:
                    problems.append(
                        f"{key}: shows {a} while {other} still shows it (rv {rv}); they may "
                        "not share"
                    )
            showing[a].add(key)

    for rv, kind, old, new in events:
        obj = new if new is not None else old
        assert obj is not None
        name = obj["metadata"]["name"]
        if kind == "svc":
            view = observe_service(obj)
            mine = new is not None and _ours(new)
            req = view.request if isinstance(view.request, ServiceRequest) else None
            show(str(view.key), view.addresses if mine else (), req, rv)
        if kind == "pool":
            if new is None:
                pools.pop(name, None)
            else:
                pools[name] = new
            # A Service whose address left the valid pools may move from now on.
            for held in state.values():
                if held[0] and not held[3] and not in_valid_pool(held[0], held[2]):
                    held[3] = True
            continue
        key = f"{obj['metadata']['namespace']}/{name}"
        if new is None:
            state.pop(key, None)
            continue
        addrs = ingress_addresses(new)
        request = _request_of(new)
        wanted = (new["metadata"].get("annotations") or {}).get("lbd.io/address-pool")
        st = state.get(key)
        if st is None or addrs != st[0]:
            # Losing an address is a move; gaining a family while keeping the other is not.
            lost = st is not None and not set(st[0]) <= set(addrs)
            if st is not None and lost and not st[3] and _ours(new):
                cond: dict[str, Any] = next(
                    (
                        c
                        for c in (new.get("status") or {}).get("conditions") or []
                        if c.get("type") == "lbd.io/AddressAssigned"
                    ),
                    {},
                )
                problems.append(
                    f"{key}: {st[0]} -> {addrs or '()'} with an unchanged request "
                    f"({cond.get('reason')}: {cond.get('message')}; rv {rv})"
                )
            # Addresses handed out from a pool view older than ours (the controller had not yet
            # seen a shrink or delete) are legitimately moved again once it has.
            stale = bool(addrs) and not in_valid_pool(addrs, wanted)
            state[key] = [addrs, request, wanted, not _ours(new) or stale]
        elif request != st[1] or not _ours(new):
            st[3] = True  # the request changed since the assignment: a move is legitimate
    return problems

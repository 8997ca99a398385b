"""The controller against the lab API server, as the controller's service account (RBAC from
deploy/base/rbac.yaml is enforced: a permission the manifests miss fails these tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lbd.controller.controller import ServiceWork
from lbd.core.model import ServiceKey
from lbd.k8s.client import IPADDRESSPOOLS, SERVICES, PatchType
from tests.k8s.controller_support import (
    ApiServer,
    Env,
    addresses,
    condition,
    event_reasons,
    flush,
    get_service,
    iter_services,
    seen_pool,
    service,
    wait_addresses,
    wait_condition,
    wait_for,
    wait_pool_annotation,
)


def holder_call(holder: list[Any], method: str) -> Callable[[], None]:
    def call() -> None:  # late binding: the controller is made after its elector
        getattr(holder[0], method)()

    return call


def test_assigns_an_address_writes_condition_annotation_and_one_event(env: Env):
    seen_pool(env, "lab", ["198.18.100.0/28"])
    service(env.admin, "web")
    assert wait_addresses(env.admin, "web") == ["198.18.100.0"]
    assert wait_pool_annotation(env.admin, "web") == "lab"
    svc = get_service(env.admin, "web")
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "198.18.100.0", "ipMode": "VIP"}]
    assert svc["metadata"]["annotations"]["lbd.io/ip-allocated-from-pool"] == "lab"
    cond = condition(svc)
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("True", "Assigned")
    assert "198.18.100.0" in cond["message"] and "lab" in cond["message"]
    flush(env)
    assert event_reasons(env.admin, "web") == ["IPAllocated"]


def test_requested_ip_and_pool_annotation(env: Env):
    seen_pool(env, "a", ["198.18.100.0/28"])
    seen_pool(env, "b", ["198.18.101.0/28"], autoAssign=False)
    service(env.admin, "want-ip", annotations={"lbd.io/loadBalancerIPs": "198.18.100.9"})
    service(env.admin, "spec-ip", loadBalancerIP="198.18.101.3")
    service(env.admin, "want-pool", annotations={"metallb.universe.tf/address-pool": "b"})
    assert wait_addresses(env.admin, "want-ip") == ["198.18.100.9"]
    assert wait_addresses(env.admin, "spec-ip") == ["198.18.101.3"]
    got = wait_addresses(env.admin, "want-pool")
    assert got[0].startswith("198.18.101."), "the annotated pool is used even with autoAssign off"
    assert wait_pool_annotation(env.admin, "want-pool") == "b"


def test_sharing_an_address_by_key_and_refusing_without(env: Env):
    seen_pool(env, "lab", ["198.18.100.0/28"])
    ann = {"lbd.io/allow-shared-ip": "k", "lbd.io/loadBalancerIPs": "198.18.100.5"}
    service(env.admin, "dns-tcp", annotations=ann, ports=[("TCP", 53)])
    service(env.admin, "dns-udp", annotations=ann, ports=[("UDP", 53)])
    assert wait_addresses(env.admin, "dns-tcp") == ["198.18.100.5"]
    assert wait_addresses(env.admin, "dns-udp") == ["198.18.100.5"]
    service(
        env.admin,
        "intruder",
        annotations={"lbd.io/loadBalancerIPs": "198.18.100.5"},
        ports=[("TCP", 80)],
    )
    cond = wait_condition(env.admin, "intruder", "RequestedIPUnavailable")
    assert cond["status"] == "False"
    assert addresses(get_service(env.admin, "intruder")) == []
    flush(env)
    assert event_reasons(env.admin, "intruder") == ["AllocationFailed"]


def test_dual_stack(env: Env):
    seen_pool(env, "ds", ["198.18.100.0/28", "2001:db8:18::100:0/120"])
    service(env.admin, "ds", ipFamilies=["IPv6", "IPv4"], ipFamilyPolicy="RequireDualStack")
    assert wait_addresses(env.admin, "ds") == ["2001:db8:18::100:0", "198.18.100.0"]
    service(env.admin, "v6", ipFamilies=["IPv6"], ipFamilyPolicy="SingleStack")
    assert wait_addresses(env.admin, "v6") == ["2001:db8:18::100:1"]


def test_services_of_another_class_are_never_touched(env: Env):
    seen_pool(env, "lab", ["198.18.100.0/28"])
    service(env.admin, "theirs", loadBalancerClass="example.com/other")
    service(env.admin, "ours")
    wait_addresses(env.admin, "ours")
    theirs = get_service(env.admin, "theirs")
    assert "status" not in theirs or not theirs["status"].get("conditions")
    assert addresses(theirs) == []
    assert "lbd.io/ip-allocated-from-pool" not in (theirs["metadata"].get("annotations") or {})
    flush(env)
    assert event_reasons(env.admin, "theirs") == []


def test_lb_class_flag_selects_only_that_class(lab: ApiServer):
    env = Env(lab, lb_class="lbd.io/lb")
    try:
        seen_pool(env, "lab", ["198.18.100.0/28"])
        service(env.admin, "classless")
        service(env.admin, "mine", loadBalancerClass="lbd.io/lb")
        wait_addresses(env.admin, "mine")
        env.ctl.queue.add(ServiceWork(ServiceKey("default/classless")))
        wait_for(lambda: env.ctl.queue.pending() == 0, 5, "an idle queue")
        assert addresses(get_service(env.admin, "classless")) == []
    finally:
        env.close()


def test_release_when_no_longer_a_load_balancer_and_reuse_order(env: Env):
    seen_pool(env, "lab", ["198.18.100.0/30"])
    service(env.admin, "a")
    assert wait_addresses(env.admin, "a") == ["198.18.100.0"]
    env.admin.patch(
        SERVICES.path(namespace="default", name="a"),
        {"spec": {"type": "ClusterIP"}},
        patch=PatchType.MERGE,
    )

    def cleared():
        svc = get_service(env.admin, "a")
        ann = svc["metadata"].get("annotations") or {}
        return (
            not addresses(svc)
            and condition(svc) is None
            and "lbd.io/ip-allocated-from-pool" not in ann
        )

    wait_for(cleared, 10, "ingress, condition and annotation cleared")
    flush(env)
    assert event_reasons(env.admin, "a") == ["IPAllocated", "IPReleased"]
    # A just-released address is not handed out while never-used ones remain.
    service(env.admin, "b")
    assert wait_addresses(env.admin, "b") == ["198.18.100.1"]
    env.admin.delete(SERVICES.path(namespace="default", name="b"))
    service(env.admin, "c")
    assert wait_addresses(env.admin, "c") == ["198.18.100.2"]


def test_pool_shrink_reassigns_only_services_outside(env: Env):
    seen_pool(env, "lab", ["198.18.100.0/29"])
    for name in ("a", "b", "c"):
        service(env.admin, name)
        wait_addresses(env.admin, name)
    before = {n: wait_addresses(env.admin, n) for n in ("a", "b", "c")}
    assert before["c"] == ["198.18.100.2"]
    # A merge patch, not get-and-replace: the controller writes the pool's status while the test
    # runs, and on kube-apiserver a status write moves the resourceVersion a replace would carry
    # (CI saw the 409).
    shrunk = ["198.18.100.0-198.18.100.1", "198.18.100.6-198.18.100.7"]
    env.admin.patch(IPADDRESSPOOLS.path(name="lab"), {"spec": {"addresses": shrunk}})
    wait_for(
        lambda: addresses(get_service(env.admin, "c")) in (["198.18.100.6"], ["198.18.100.7"]),
        10,
        "c moved into the shrunk pool",
    )
    assert wait_addresses(env.admin, "a") == before["a"]
    assert wait_addresses(env.admin, "b") == before["b"]
    flush(env)
    assert event_reasons(env.admin, "c") == ["ClearAssignment", "IPAllocated", "IPAllocated"]
    assert event_reasons(env.admin, "a") == ["IPAllocated"]


def test_pool_status_counts_and_conflicts(env: Env):
    seen_pool(env, "one", ["198.18.100.0/30"])
    service(env.admin, "a")
    wait_addresses(env.admin, "a")

    def status(name: str) -> dict[str, Any]:
        return env.admin.get(IPADDRESSPOOLS.path(name=name)).get("status") or {}

    wait_for(lambda: status("one").get("assignedIPv4") == 1, 10, "pool counters")
    assert status("one")["availableIPv4"] == 3
    assert status("one")["waitingServices"] == 0
    seen_pool(env, "two", ["198.18.100.2/31"])

    def conds(name: str) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in status(name).get("conditions") or []}

    def conflicting(name: str) -> dict[str, Any] | None:
        c = conds(name).get("Conflicting")
        return c if c and c["status"] == "True" else None

    # Only the newer pool is Conflicting, naming the older one; the older keeps working.
    c = wait_for(lambda: conflicting("two"), 10, "two marked Conflicting")
    assert "'one'" in c["message"]
    assert wait_for(lambda: status("two").get("availableIPv4") == 0, 10, "two shows 0 available")
    assert conds("one")["Conflicting"]["status"] == "False"
    assert conds("one")["Ready"]["status"] == "True"
    assert wait_addresses(env.admin, "a") == ["198.18.100.0"]
    service(env.admin, "b")
    assert wait_addresses(env.admin, "b") == ["198.18.100.1"]
    # A Service that asks for the conflicting pool is told why and what to fix.
    service(env.admin, "c", annotations={"lbd.io/address-pool": "two"})
    cond = wait_condition(env.admin, "c", "PoolConflicting")
    assert cond["status"] == "False"
    assert "overlaps 'one'" in cond["message"]


def test_invalid_pool_is_reported_with_field_path(env: Env):
    seen_pool(env, "typo", ["198.18.100.0/33"])

    def invalid():
        st = env.admin.get(IPADDRESSPOOLS.path(name="typo")).get("status") or {}
        conds = {c["type"]: c for c in st.get("conditions") or []}
        c = conds.get("Invalid")
        return c if c and c["status"] == "True" else None

    c = wait_for(invalid, 10, "Invalid condition")
    assert "spec.addresses[0]" in c["message"]
    assert "not a valid CIDR" in c["message"]


def test_bad_input_is_reported_on_its_service_only(env: Env):
    seen_pool(env, "lab", ["198.18.100.0/28"])
    service(env.admin, "good")
    first = wait_addresses(env.admin, "good")
    service(env.admin, "garbage", annotations={"lbd.io/loadBalancerIPs": "not-an-ip"})
    service(env.admin, "outside", annotations={"lbd.io/loadBalancerIPs": "198.18.200.1"})
    service(env.admin, "nopool", annotations={"lbd.io/address-pool": "missing"})
    c = wait_condition(env.admin, "garbage", "InvalidRequest")
    assert "metadata.annotations[lbd.io/loadBalancerIPs]" in c["message"]
    wait_condition(env.admin, "outside", "RequestedIPNotInPool")
    wait_condition(env.admin, "nopool", "NoMatchingPool")
    service(env.admin, "after")
    wait_addresses(env.admin, "after")
    assert wait_addresses(env.admin, "good") == first
    flush(env)
    assert event_reasons(env.admin, "garbage") == ["InvalidRequest"]
    assert event_reasons(env.admin, "outside") == ["AllocationFailed"]
    # Fixing the typo assigns an address, with no more warnings.
    env.admin.patch(
        SERVICES.path(namespace="default", name="garbage"),
        {"metadata": {"annotations": {"lbd.io/loadBalancerIPs": "198.18.100.12"}}},
    )
    assert wait_addresses(env.admin, "garbage") == ["198.18.100.12"]


def test_restart_changes_no_address_and_writes_nothing(env: Env):
    seen_pool(env, "lab", ["198.18.100.0/28"])
    names = [f"s{i}" for i in range(8)]
    for name in names:
        service(env.admin, name)
    before = {n: wait_addresses(env.admin, n) for n in names}
    for n in names:
        wait_pool_annotation(env.admin, n)
    flush(env)
    env.stop_controller(env.ctl)
    # While the controller is down: one Service goes away, one more arrives.
    env.admin.delete(SERVICES.path(namespace="default", name="s0"))
    service(env.admin, "late")
    versions = {
        s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in iter_services(env.admin)
    }
    ctl = env.start_controller(identity="again")
    late = wait_addresses(env.admin, "late")
    assert late == ["198.18.100.0"] or late not in before.values()
    assert late != before["s1"]
    wait_for(lambda: ctl.queue.pending() == 0, 10, "an idle queue")
    after = {s["metadata"]["name"]: s for s in iter_services(env.admin)}
    for name in names[1:]:
        assert addresses(after[name]) == before[name]
        assert after[name]["metadata"]["resourceVersion"] == versions[name], f"{name} rewritten"
    assert ctl.events.flush(10)
    assert event_reasons(env.admin, "s1") == ["IPAllocated"]


def test_leader_hand_over_between_two_replicas(env: Env):
    """Two replicas with leader election: exactly one writes; the other takes over."""
    import threading

    from lbd.k8s.elector import ElectionConfig, LeaderElector
    from tests.k8s.controller_support import CONTROLLER_TOKEN, kube_for

    env.stop_controller(env.ctl)
    seen_pool(env, "lab", ["198.18.100.0/28"])
    stops = []
    replicas = []
    for ident in ("r1", "r2"):
        kube = kube_for(env.server, CONTROLLER_TOKEN)
        holder: list[Any] = []
        elector = LeaderElector(
            kube,
            ElectionConfig("lbd-system", "lbd-controller", ident, 1.5, 1.0, 0.2),
            on_started_leading=holder_call(holder, "start_leading"),
            on_stopped_leading=holder_call(holder, "stop_leading"),
        )
        ctl = env._controller_cls(
            kube,
            env._settings_cls(workers=2, identity=ident),
            may_write=elector.is_leader,
        )
        holder.append(ctl)
        ctl.start()
        env.controllers.append(ctl)
        stop = threading.Event()
        threading.Thread(target=elector.run, args=(stop,), daemon=True).start()
        stops.append(stop)
        replicas.append((ident, elector, ctl))
    leader = wait_for(lambda: [r for r in replicas if r[1].is_leader()], 10, "a leader")
    assert len(leader) == 1
    service(env.admin, "a")
    first = wait_addresses(env.admin, "a")
    # The leader shuts down cleanly (as on SIGTERM): it stops writing and releases the lease.
    idx = replicas.index(leader[0])
    stops[idx].set()
    other = replicas[1 - idx]
    wait_for(other[1].is_leader, 10, "the other replica to take over")
    assert not leader[0][1].is_leader()
    service(env.admin, "b")
    assert wait_addresses(env.admin, "b") != first
    assert wait_addresses(env.admin, "a") == first
    lease = env.admin.get(
        "/apis/coordination.k8s.io/v1/namespaces/lbd-system/leases/lbd-controller"
    )
    assert lease["spec"]["holderIdentity"] == other[0]
    for s in stops:
        s.set()


def test_namespace_labels_select_pools_and_a_label_change_is_noticed(env: Env):
    from tests.k8s.controller_support import namespace

    namespace(env.admin, "shop")
    seen_pool(
        env,
        "team-a",
        ["198.18.100.0/28"],
        serviceAllocation={"namespaceSelectors": [{"matchLabels": {"team": "a"}}]},
    )
    service(env.admin, "web", "shop")
    wait_condition(env.admin, "web", "NoMatchingPool", "shop")
    env.admin.patch("/api/v1/namespaces/shop", {"metadata": {"labels": {"team": "a"}}})
    assert wait_addresses(env.admin, "web", "shop") == ["198.18.100.0"]

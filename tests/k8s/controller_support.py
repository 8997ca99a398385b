"""Helpers for the controller tests: a lab API server with the CRDs and RBAC loaded, clients for
the admin and for the controller's service account, object builders, and polling.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from lbd.k8s.client import (
    IPADDRESSPOOLS,
    L2ADVERTISEMENTS,
    NAMESPACES,
    SERVICES,
    ApiError,
    JsonDict,
    Kube,
    api_transport,
)
from lbd.lab.apiserver import LabApiServer
from lbd.lab.apiserver.errors import ApiError as LabApiError
from lbd.lab.control_plane import Binaries, ControlPlane, RealApiServer, Sweeper

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER_SA = "system:serviceaccount:lbd-system:lbd-controller"
CONTROLLER_TOKEN = "controller-token"

T = TypeVar("T")
ApiServer = LabApiServer | RealApiServer
"""The stand-in or the real control plane (behind its fault proxy): the same calls."""


def start_lab() -> LabApiServer:
    """A lab API server with crds/ and deploy/base/rbac.yaml, namespace lbd-system, and the
    controller's service-account token (so a missing permission fails the test)."""
    server = LabApiServer(crds_dir=ROOT / "crds", bookmark_interval=0.2)
    for ns in ("lbd-system", "default"):
        with contextlib.suppress(ApiError, LabApiError):  # already there
            server.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    server.load_rbac(ROOT / "deploy/base/rbac.yaml")
    server.add_token(CONTROLLER_TOKEN, CONTROLLER_SA)
    server.start()
    return server


def real_control_plane(binaries: Binaries | None = None, **kw: Any) -> ControlPlane:
    """A real control plane (not started) with ``crds/`` and the ``deploy/`` namespace,
    ServiceAccounts, RBAC and admission policies: what the tests and the chaos benchmark run
    lbd against."""
    deploy = ROOT / "deploy/base"
    manifests = [ROOT / "crds"] + [
        deploy / f"{name}.yaml" for name in ("namespace", "serviceaccounts", "rbac", "admission")
    ]
    return ControlPlane(binaries, manifests=manifests, **kw)


def real_tokens(plane: ControlPlane) -> dict[str, str]:
    """Real tokens of lbd's ServiceAccounts, under the names the stand-in tests use."""
    return {CONTROLLER_TOKEN: plane.service_account_token("lbd-system", "lbd-controller")}


@contextlib.contextmanager
def real_lab(
    plane: ControlPlane, sweeper: Sweeper, tokens: dict[str, str]
) -> Iterator[RealApiServer]:
    """A fault proxy in front of a shared control plane; afterwards, a clean cluster."""
    server = RealApiServer(plane, tokens).start()
    try:
        yield server
    finally:
        server.stop()
        sweeper.sweep()


def kube_for(server: ApiServer, token: str | None = None) -> Kube:
    cfg = server.client_configuration(token)
    cfg.retries = False
    return Kube(api_transport(cfg, pool_size=32), timeout=(2.0, 10.0))


def wait_for(
    fn: Callable[[], T | None], timeout: float = 10.0, what: str = "condition", interval=0.02
) -> T:
    """Poll ``fn`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            got = fn()
        except ApiError as exc:
            last = exc
        else:
            last = got
            if got:
                return got
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def namespace(kube: Kube, name: str, labels: dict[str, str] | None = None) -> JsonDict:
    return kube.create(
        NAMESPACES.path(),
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}},
        },
    )


def pool(kube: Kube, name: str, addresses: list[str], **spec: Any) -> JsonDict:
    return kube.create(
        IPADDRESSPOOLS.path(),
        {
            "apiVersion": "lbd.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": name},
            "spec": {"addresses": addresses, **spec},
        },
    )


def advertisement(kube: Kube, name: str, **spec: Any) -> JsonDict:
    """Create an L2Advertisement with ``spec``."""
    return kube.create(
        L2ADVERTISEMENTS.path(),
        {
            "apiVersion": L2ADVERTISEMENTS.api_version,
            "kind": L2ADVERTISEMENTS.kind,
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def service_body(
    name: str,
    namespace: str = "default",
    *,
    annotations: dict[str, str] | None = None,
    ports: list[tuple[str, int]] | None = None,
    **spec: Any,
) -> JsonDict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": name},
            "ports": [
                {"name": f"p{i}", "protocol": proto, "port": port, "targetPort": port}
                for i, (proto, port) in enumerate(ports or [("TCP", 80)])
            ],
            **spec,
        },
    }


def service(kube: Kube, name: str, namespace: str = "default", **kw: Any) -> JsonDict:
    return kube.create(SERVICES.path(namespace=namespace), service_body(name, namespace, **kw))


def get_service(kube: Kube, name: str, namespace: str = "default") -> JsonDict:
    return kube.get(SERVICES.path(namespace=namespace, name=name))


def addresses(svc: JsonDict) -> list[str]:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [i["ip"] for i in ingress if "ip" in i]


def condition(svc: JsonDict, ctype: str = "lbd.io/AddressAssigned") -> JsonDict | None:
    for c in (svc.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def wait_addresses(kube: Kube, name: str, namespace: str = "default", timeout=10.0) -> list[str]:
    return wait_for(
        lambda: addresses(get_service(kube, name, namespace)),
        timeout,
        f"an address on {namespace}/{name}",
    )


def wait_condition(
    kube: Kube, name: str, reason: str, namespace: str = "default", timeout=10.0
) -> JsonDict:
    def check() -> JsonDict | None:
        c = condition(get_service(kube, name, namespace))
        return c if c is not None and c.get("reason") == reason else None

    return wait_for(check, timeout, f"condition reason {reason} on {namespace}/{name}")


def events(kube: Kube, name: str, namespace: str = "default") -> list[JsonDict]:
    items = kube.get(f"/api/v1/namespaces/{namespace}/events").get("items") or []
    return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]


def event_reasons(kube: Kube, name: str, namespace: str = "default") -> list[str]:
    return sorted(
        e["reason"] for e in events(kube, name, namespace) for _ in range(e.get("count", 1))
    )


def iter_services(kube: Kube) -> Iterator[JsonDict]:
    yield from kube.get(SERVICES.path()).get("items") or []


class Env:
    """An API server (``server``: the ``lab`` fixture's, else a new stand-in), an admin client,
    and a running in-process controller."""

    def __init__(self, server: ApiServer | None = None, *, lb_class: str | None = None) -> None:
        from lbd.controller.controller import Controller, ControllerSettings

        self.server = server if server is not None else start_lab()
        self.admin = kube_for(self.server)
        self.lb_class = lb_class
        self._controller_cls = Controller
        self._settings_cls = ControllerSettings
        self.controllers: list[Any] = []
        self.ctl = self.start_controller()

    def start_controller(self, *, lead: bool = True, identity: str = "test") -> Any:
        ctl = self._controller_cls(
            kube_for(self.server, CONTROLLER_TOKEN),
            self._settings_cls(
                lb_class=self.lb_class, workers=2, identity=identity, pool_status_interval=0.2
            ),
        )
        ctl.start()
        assert ctl.wait_for_sync(10)
        if lead:
            ctl.start_leading()
        self.controllers.append(ctl)
        return ctl

    def stop_controller(self, ctl: Any) -> None:
        ctl.stop()
        self.controllers.remove(ctl)

    def close(self) -> None:
        for ctl in list(self.controllers):
            ctl.stop()
        self.server.stop()


def wait_pool_annotation(kube: Kube, name: str, namespace: str = "default", timeout=10.0) -> str:
    """The ``lbd.io/ip-allocated-from-pool`` annotation (written just after the address)."""

    def get() -> str | None:
        ann = get_service(kube, name, namespace)["metadata"].get("annotations") or {}
        return ann.get("lbd.io/ip-allocated-from-pool")

    return wait_for(get, timeout, f"the pool annotation on {namespace}/{name}")


def controller_argv(kubeconfig: object, *flags: str) -> list[str]:
    """The command line of an ``lbd controller`` subprocess using ``kubeconfig``."""
    return [sys.executable, "-m", "lbd", "controller", "--kubeconfig", str(kubeconfig), *flags]


def seen_pool(env: Env, name: str, addresses: list[str], **spec: Any) -> None:
    """Create a pool and wait until every running controller has taken it in.

    The pool and the Service a test creates next arrive on separate watches, in either order,
    and the pool reaches the allocator through its own queue key; a Service decided before
    that is (rightly) refused and then assigned, with one more Event than the test expects.
    So wait until the pool is in every controller's cache and their queues are idle.
    """
    pool(env.admin, name, addresses, **spec)

    def taken_in() -> bool:
        return all(
            ctl.pools.get(name) is not None and ctl.queue.pending() == 0 for ctl in env.controllers
        )

    wait_for(taken_in, 10, f"pool {name} taken in by the controllers")


def flush(env: Env) -> None:
    """Wait until every Event the controllers will record for what the test saw is written.

    A reconcile records its Event only after its write has returned, so a test that has just
    seen the write (by polling the API server) can get ahead of the ``event()`` call; flushing
    the recorder at that moment would miss it. So first wait until no key is queued, delayed
    or in flight (the reconcile that made the write has finished), then flush the recorders.
    """

    def idle() -> bool:
        return all(ctl.queue.pending() == 0 for ctl in env.controllers)

    wait_for(idle, 20, "idle work queues")
    for ctl in env.controllers:
        assert ctl.events.flush(10)

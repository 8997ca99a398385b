"""The chaos run's replay check (:func:`tests.k8s.controller_chaos.replay`, invariant 4) on
hand-made histories: it must report a Service that moved while its request and its pool stayed,
and must not report one whose pool was deleted and re-created while the observer's watch was
away (the relist shows only a pool with a new uid; a CI run flagged such a move as churn)."""

from __future__ import annotations

import copy
from typing import Any

from tests.k8s.controller_chaos import History, replay
from tests.k8s.controller_support import service_body

BETA = ["198.18.101.0/26"]
GAMMA = ["198.18.102.0/27"]


def pool_obj(name: str, addresses: list[str], uid: str, rv: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": uid, "resourceVersion": str(rv)},
        "spec": {"addresses": addresses},
    }


def svc_obj(address: str | None, rv: int) -> dict[str, Any]:
    body = service_body("s275", "team-b")
    body["metadata"].update(uid="svc-uid", resourceVersion=str(rv))
    ingress = [{"ip": address}] if address else []
    body["status"] = {"loadBalancer": {"ingress": ingress}}
    return body


def history(pool_change: tuple[dict[str, Any], dict[str, Any] | None]) -> History:
    """beta and gamma exist; s275 gets 198.18.101.32; ``pool_change`` happens to beta; s275
    moves to gamma with the same request."""
    h = History()
    beta = pool_obj("beta", BETA, "beta-1", 1)
    events: list[tuple[int, str, Any, Any]] = [
        (1, "pool", None, beta),
        (2, "pool", None, pool_obj("gamma", GAMMA, "gamma-1", 2)),
        (3, "svc", None, svc_obj(None, 3)),
        (4, "svc", svc_obj(None, 3), svc_obj("198.18.101.32", 4)),
        (5, "pool", *pool_change),
        (6, "svc", svc_obj("198.18.101.32", 4), svc_obj("198.18.102.24", 6)),
    ]
    h.events.extend(copy.deepcopy(events))
    return h


def test_a_move_while_the_pool_stayed_is_churn() -> None:
    beta = pool_obj("beta", BETA, "beta-1", 1)
    relabelled = pool_obj("beta", BETA, "beta-1", 5)
    problems = replay(history((beta, relabelled)))
    assert len(problems) == 1 and problems[0].startswith(
        "team-b/s275: ('198.18.101.32',) -> ('198.18.102.24',) with an unchanged request"
    ), problems


def test_a_move_after_the_pool_was_replaced_unseen_is_not_churn() -> None:
    beta = pool_obj("beta", BETA, "beta-1", 1)
    recreated = pool_obj("beta", BETA, "beta-2", 5)  # deleted and created again in a gap
    assert replay(history((beta, recreated))) == []


def test_a_move_after_the_pool_was_deleted_is_not_churn() -> None:
    assert replay(history((pool_obj("beta", BETA, "beta-1", 1), None))) == []

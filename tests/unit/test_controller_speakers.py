"""Speaker liveness for NoLiveSpeaker (lbd/controller/speakers.py) and the lab's speaker Pods
(lbd/lab/standins/speakerpods.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lbd.controller.speakers import speaker_state
from lbd.k8s.client import ApiError, JsonDict
from lbd.k8s.pod import observe_pod
from lbd.lab.standins.speakerpods import SpeakerPods

WHERE = "namespace lbd-system, app.kubernetes.io/component=speaker"


@pytest.mark.parametrize(
    ("total", "ready", "down_for", "live"),
    [
        (3, 1, 100.0, True),  # one Ready Pod is enough
        (3, 0, 9.9, True),  # within the grace: a rolling restart does not flap
        (3, 0, 10.0, False),
        (0, 0, 10.0, False),  # the DaemonSet is gone
    ],
)
def test_live_while_a_pod_is_ready_or_within_the_grace(
    total: int, ready: int, down_for: float, live: bool
) -> None:
    state = speaker_state(total, ready, down_for, 10.0, WHERE)
    assert state.live is live
    if not live:
        assert WHERE in state.message and "no node can announce" in state.message


def test_pod_ready_reads_the_condition_and_deletion() -> None:
    def pod(status: str, **meta: Any) -> dict[str, Any]:
        return {
            "metadata": {"name": "p", "namespace": "lbd-system", **meta},
            "status": {"conditions": [{"type": "Ready", "status": status}]},
        }

    assert observe_pod(pod("True")).ready
    assert not observe_pod(pod("False")).ready
    assert not observe_pod(pod("True", deletionTimestamp="2026-01-01T00:00:00Z")).ready
    assert not observe_pod({"metadata": {"name": "p"}}).ready


class FakeKube:
    def __init__(self) -> None:
        self.pods: dict[str, JsonDict] = {}
        self.writes: list[str] = []

    def get(self, path: str, **_: Any) -> JsonDict:
        if path not in self.pods:
            raise ApiError(404, "NotFound", path)
        return copy.deepcopy(self.pods[path])

    def create(self, path: str, body: JsonDict) -> JsonDict:
        self.writes.append(f"create {body['metadata']['name']}")
        full = f"{path}/{body['metadata']['name']}"
        self.pods[full] = copy.deepcopy(body)
        return copy.deepcopy(body)

    def patch(self, path: str, body: JsonDict, **_: Any) -> JsonDict:
        self.writes.append(f"patch {path.rsplit('/', 2)[-2]}")
        key = path.removesuffix("/status")
        self.pods[key]["status"] = copy.deepcopy(body["status"])
        return copy.deepcopy(self.pods[key])


def test_lab_speaker_pods_follow_the_supervisor_and_write_only_changes() -> None:
    kube = FakeKube()
    running = {"n1": True, "n2": True}
    pods = SpeakerPods(kube, ["n1", "n2"], lambda: dict(running))  # type: ignore[arg-type]
    pods.sync()
    assert kube.writes == [
        "create lbd-speaker-n1",
        "patch lbd-speaker-n1",
        "create lbd-speaker-n2",
        "patch lbd-speaker-n2",
    ]
    views = {p["metadata"]["name"]: observe_pod(p) for p in kube.pods.values()}
    assert all(v.ready for v in views.values())
    labels = kube.pods["/api/v1/namespaces/lbd-system/pods/lbd-speaker-n1"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "speaker"
    pods.sync()
    assert len(kube.writes) == 4  # steady: nothing written
    running["n2"] = False
    pods.sync()
    assert kube.writes[4:] == ["patch lbd-speaker-n2"]
    n2 = kube.pods["/api/v1/namespaces/lbd-system/pods/lbd-speaker-n2"]
    assert not observe_pod(n2).ready
    # a restarted program finds the Pods as they should be and writes nothing
    again = SpeakerPods(kube, ["n1", "n2"], lambda: dict(running))  # type: ignore[arg-type]
    again.sync()
    assert len(kube.writes) == 5


def _pod(name: str, ready: bool, rv: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "lbd-system", "resourceVersion": str(rv)},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_the_grace_starts_when_the_last_ready_pod_stops_being_ready() -> None:
    """Pods Ready for an hour with no event, then the only one restarts: NoLiveSpeaker only
    after the grace from that moment, not at once (an hour since anything was seen)."""
    from lbd.controller.speakers import SpeakerLiveness
    from lbd.k8s.informer import EventType
    from lbd.runtime.clock import FakeClock

    clock = FakeClock()
    changes: list[bool] = []
    live = SpeakerLiveness(
        None,  # type: ignore[arg-type]  # the informer is never started here
        namespace="lbd-system",
        selector="app.kubernetes.io/component=speaker",
        grace=10.0,
        on_change=lambda: changes.append(True),
        clock=clock,
    )
    live.informer.has_synced = lambda: True  # type: ignore[method-assign]
    up = _pod("lbd-speaker-n1", True, 1)
    live.pods.on_event(EventType.ADDED, None, up)
    clock.advance(3600.0)
    down = _pod("lbd-speaker-n1", False, 2)
    live.pods.on_event(EventType.MODIFIED, up, down)
    state = live.state()
    assert state is not None and state.live
    clock.advance(10.0)
    state = live.state()
    assert state is not None and not state.live
    assert "none of the 1 speaker Pods" in state.message
    live.stop()

"""Sending merge patches for a leader: retried when the server is busy, never when we lost.

API::

    patcher = Patcher(kube, may_write=elector.is_leader, on_written=fn(obj))
    obj = patcher.send(path, body)     # raises ApiError (409 included) or NotLeaderError
    patcher.send_unless_gone(path, body) -> bool   # the same, a 404 is False (nothing to write)

- ``may_write`` is checked before every request: a replica that lost (or cannot prove) its
  leadership stops writing at once, even in the middle of a retry loop.
- On 429, 5xx or no answer the same request is retried after an exponential, jittered wait
  (tenacity). Anything else goes back to the caller: a 409 means the object changed since the
  decision was made, so the decision itself must be made again.
- ``on_written`` sees every object a write returned (the controller keeps it as its newest view,
  so the watch echo of its own write costs nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, InitVar, dataclass

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from lbd.k8s.client import ApiError, JsonDict, Kube, PatchType


class NotLeaderError(Exception):
    """Raised instead of writing when ``may_write`` says no."""


def transient(exc: BaseException) -> bool:
    """429, 5xx or no answer at all: worth sending the same request again."""
    return isinstance(exc, ApiError) and (exc.status in (0, 429) or exc.status >= 500)


@dataclass(eq=False)
class Patcher:
    """Merge patches with retries, as long as we may write."""

    kube: Kube
    _: KW_ONLY
    may_write: Callable[[], bool] = lambda: True
    on_written: Callable[[JsonDict], None] | None = None
    attempts: int = 8
    wait_initial: InitVar[float] = 0.05
    wait_max: InitVar[float] = 2.0

    def __post_init__(self, wait_initial: float, wait_max: float) -> None:
        self._wait = wait_exponential_jitter(multiplier=wait_initial, max=wait_max, jitter=0.1)
        self.requests = 0

    def send(
        self, path: str, body: JsonDict, *, still: Callable[[], bool] | None = None
    ) -> JsonDict:
        """One merge patch; the same request is retried on 429, 5xx and no answer.

        ``still``: whether the decision this write carries is still ours to write (checked with
        ``may_write`` before every attempt: a retry must not outlive the session that decided).
        """
        for attempt in Retrying(
            retry=retry_if_exception(transient),
            wait=self._wait,
            stop=stop_after_attempt(self.attempts),
            reraise=True,
        ):
            with attempt:
                if not self.may_write() or (still is not None and not still()):
                    raise NotLeaderError(path)
                self.requests += 1
                written = self.kube.patch(path, body, patch=PatchType.MERGE)
        if self.on_written is not None:
            self.on_written(written)
        return written

    def send_unless_gone(
        self, path: str, body: JsonDict, *, still: Callable[[], bool] | None = None
    ) -> bool:
        """:meth:`send`, where a 404 means the object was deleted since it was read: nothing is
        left to write, so it returns False instead of raising; True when it wrote."""
        try:
            self.send(path, body, still=still)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

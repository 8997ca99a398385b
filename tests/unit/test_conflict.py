"""The hand-over vs. conflict rule (:mod:`lbd.core.conflict`)."""

from __future__ import annotations

import pytest

from lbd.core.conflict import ConflictRule, Verdict

RULE = ConflictRule(grace=1.0, settle=0.5)


def test_new_owner_sees_the_previous_owner_right_after_gaining() -> None:
    assert RULE.judge(now=10.5, seen_at=10.5, gained_at=10.0, owned=True) is Verdict.HANDOVER
    # judged late (a busy announcer thread): what counts is when the frame came
    assert RULE.judge(now=12.0, seen_at=10.9, gained_at=10.0, owned=True) is Verdict.HANDOVER


def test_long_time_owner_waits_then_either_yields_or_calls_it_a_conflict() -> None:
    assert RULE.judge(now=50.0, seen_at=50.0, gained_at=10.0, owned=True) is Verdict.WAIT
    assert RULE.due(50.0) == 50.5
    # a peer took the VIP over meanwhile: we were the previous owner
    assert RULE.judge(now=50.5, seen_at=50.0, gained_at=10.0, owned=False) is Verdict.HANDED_OVER
    # still ours: a second host really claims it
    assert RULE.judge(now=50.5, seen_at=50.0, gained_at=10.0, owned=True) is Verdict.CONFLICT


def test_claims_after_the_grace_are_conflicts() -> None:
    assert RULE.judge(now=11.5, seen_at=11.0, gained_at=10.0, owned=True) is Verdict.CONFLICT


def test_unknown_gain_time_never_hides_a_conflict() -> None:
    assert RULE.judge(now=0.5, seen_at=0.0, gained_at=None, owned=True) is Verdict.CONFLICT


def test_zero_grace_and_settle_count_everything_and_bad_values_are_refused() -> None:
    rule = ConflictRule(grace=0.0, settle=0.0)
    assert rule.judge(now=5.0, seen_at=5.0, gained_at=5.0, owned=True) is Verdict.CONFLICT
    for bad in ({"grace": -1.0}, {"settle": -0.1}, {"grace": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ConflictRule(**bad)

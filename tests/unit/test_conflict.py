"""The hand-over vs. conflict rule (:mod:`lbd.core.conflict`)."""

from __future__ import annotations

import pytest

from lbd.core.conflict import ConflictRule, Verdict


def test_another_mac_right_after_gaining_is_the_previous_owner() -> None:
    rule = ConflictRule(grace=1.0)
    assert rule.judge(now=10.5, gained_at=10.0) is Verdict.HANDOVER
    assert rule.judge(now=11.0, gained_at=10.0) is Verdict.CONFLICT
    assert rule.judge(now=500.0, gained_at=10.0) is Verdict.CONFLICT


def test_unknown_gain_time_never_hides_a_conflict() -> None:
    assert ConflictRule().judge(now=0.0, gained_at=None) is Verdict.CONFLICT


def test_zero_grace_counts_everything_and_negative_grace_is_refused() -> None:
    assert ConflictRule(grace=0.0).judge(now=5.0, gained_at=5.0) is Verdict.CONFLICT
    with pytest.raises(ValueError, match="grace"):
        ConflictRule(grace=-1.0)
    with pytest.raises(ValueError, match="grace"):
        ConflictRule(grace=float("nan"))

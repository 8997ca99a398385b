"""The hand-over vs. conflict rule (:mod:`lbd.core.conflict`)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbd.core.conflict import Claim, ConflictJudge, ConflictRule, Verdict

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


# --- the judge: one owner of the verdict, and every claim answered ----------------------------

VIP = "198.18.100.7"
ROGUE = "02:de:ad:be:ef:01"


def claim(at: float, vip: str = VIP, interface: str = "eth0") -> Claim:
    return Claim(vip=vip, interface=interface, mac=ROGUE, at=at)


def judge_owning(gained_at: float, rule: ConflictRule = RULE) -> ConflictJudge:
    judge = ConflictJudge(rule)
    judge.set_owned({VIP: ("eth0",)}, gained_at)
    return judge


def test_previous_owners_tail_is_a_hand_over_answered_at_once() -> None:
    judge = judge_owning(10.0)
    judge.claim(claim(10.2))
    outcomes, wake = judge.decide(10.2)
    assert [(o.verdict, o.reannounce) for o in outcomes] == [(Verdict.HANDOVER, True)]
    assert wake is None


def test_two_claims_0_7_s_apart_are_both_answered_within_the_settle_time() -> None:
    """Issue 16: the second of two forged gratuitous ARPs 0.7 s apart was never answered."""
    judge = judge_owning(0.0)
    judge.claim(claim(100.0))
    assert judge.decide(100.0) == ([], 100.5)
    [first], _ = judge.decide(100.5)
    assert first.verdict is Verdict.CONFLICT and first.reannounce
    judge.claim(claim(100.7))
    assert judge.decide(100.7) == ([], 101.2)
    [second], wake = judge.decide(101.2)
    assert second.verdict is Verdict.CONFLICT and second.first.at == 100.7
    assert wake is None


def test_a_burst_of_claims_is_answered_by_one_reannouncement() -> None:
    judge = judge_owning(0.0)
    for i in range(50):
        judge.claim(claim(100.0 + i * 0.005))
    [outcome], _ = judge.decide(100.5)
    assert outcome.claims == 50 and outcome.verdict is Verdict.CONFLICT


def test_a_vip_lost_meanwhile_was_handed_over_and_is_not_fought_for() -> None:
    judge = judge_owning(0.0)
    judge.claim(claim(100.0))
    judge.set_owned({}, 100.1)
    [outcome], _ = judge.decide(100.1)
    assert outcome.verdict is Verdict.HANDED_OVER and not outcome.reannounce


def test_gain_time_is_per_vip_and_restarts_when_regained() -> None:
    judge = judge_owning(0.0)
    assert judge.gained_at(VIP) == 0.0
    judge.set_owned({VIP: ("eth0",), "198.18.100.8": ("eth0",)}, 5.0)
    assert judge.gained_at(VIP) == 0.0 and judge.gained_at("198.18.100.8") == 5.0
    judge.set_owned({}, 6.0)
    judge.set_owned({VIP: ("eth0",)}, 7.0)
    assert judge.gained_at(VIP) == 7.0


def test_claims_on_another_interface_are_not_ours() -> None:
    judge = judge_owning(0.0)
    judge.claim(claim(100.0, interface="eth1"))
    [outcome], _ = judge.decide(100.0)
    assert outcome.verdict is Verdict.HANDED_OVER


def test_reannouncements_keep_their_gap_in_a_hand_over_flood() -> None:
    rule = ConflictRule(grace=1.0, settle=0.5, reannounce_gap=0.1)
    judge = judge_owning(10.0, rule)
    sent: list[float] = []
    now = 10.0
    while now < 10.9:
        judge.claim(claim(now))
        outcomes, _wake = judge.decide(now)
        sent += [now for o in outcomes if o.reannounce]
        now = round(now + 0.01, 3)
    assert len(sent) >= 8
    assert all(b - a >= 0.1 - 1e-9 for a, b in itertools.pairwise(sent))


@settings(deadline=None, max_examples=300)
@given(
    gaps=st.lists(st.floats(0.0, 1.5), min_size=1, max_size=40),
    gained=st.floats(-5.0, 3.0),
    grace=st.floats(0.0, 2.0),
    settle=st.floats(0.0, 1.0),
    gap=st.floats(0.0, 1.0),
)
def test_every_claim_on_an_owned_vip_is_answered_within_the_settle_time(
    gaps: list[float], gained: float, grace: float, settle: float, gap: float
) -> None:
    """Whatever the timing of the claims (a storm, a trickle, right after gaining or long
    after), each is followed by a re-announcement no later than ``max(settle, gap)`` after it."""
    rule = ConflictRule(grace=grace, settle=settle, reannounce_gap=gap)
    judge = judge_owning(gained, rule)
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    answers: list[float] = []
    wake: float | None = None

    def run(now: float) -> None:
        nonlocal wake
        outcomes, wake = judge.decide(now)
        answers.extend(now for o in outcomes if o.reannounce)
        assert all(o.verdict in (Verdict.HANDOVER, Verdict.CONFLICT) for o in outcomes)

    for t in times:
        while wake is not None and wake <= t:
            run(wake)
        judge.claim(claim(t))
        run(t)
    while wake is not None:
        run(wake)
    bound = max(settle, gap) + 1e-9
    for t in times:
        assert any(t <= a <= t + bound for a in answers), (t, answers)

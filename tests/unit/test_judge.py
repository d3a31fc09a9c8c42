"""Majority votes with hysteresis: lies, flapping, missing vantage points."""

from __future__ import annotations

from paydar.failover.judge import Health, Judge

PROBERS = ("prober.a", "prober.b", "prober.c")
T = "node.1101.tehran"


def judge(down_after: int = 2, up_after: int = 3) -> Judge:
    return Judge(PROBERS, down_after=down_after, up_after=up_after)


def votes(*ready: bool | None) -> dict[str, dict[str, bool]]:
    return {p: {T: r} for p, r in zip(PROBERS, ready, strict=True) if r is not None}


def test_majority_for_down_after_rounds() -> None:
    j = judge()
    j.judge_round(votes(True, True, True))
    assert j.judge_round(votes(False, False, True)) == []
    assert j.judge_round(votes(False, False, True)) == [T]
    assert j.down() == {T}


def test_one_liar_cannot_trigger() -> None:
    j = judge()
    for _ in range(50):
        j.judge_round(votes(False, True, True))
    assert j.down() == frozenset()


def test_one_liar_cannot_block() -> None:
    j = judge()
    j.judge_round(votes(True, True, True))
    j.judge_round(votes(True, False, False))
    j.judge_round(votes(True, False, False))
    assert j.down() == {T}


def test_absent_probers_count_against_a_majority() -> None:
    j = judge()
    j.judge_round(votes(True, True, True))
    for _ in range(5):
        j.judge_round(votes(False, None, None))  # one vantage alone is never a majority
    assert j.down() == frozenset()
    j.judge_round(votes(False, False, None))
    j.judge_round(votes(False, False, None))
    assert j.down() == {T}


def test_flapping_faster_than_hysteresis_never_fails_over() -> None:
    j = judge()
    for n in range(100):
        bad = n % 2 == 0
        j.judge_round(votes(not bad, not bad, not bad))
    assert j.verdicts[T].health is Health.UP


def test_recovery_needs_up_after_good_rounds() -> None:
    j = judge()
    j.judge_round(votes(True, True, True))
    for _ in range(2):
        j.judge_round(votes(False, False, False))
    for n in range(2):
        j.judge_round(votes(True, True, True))
        assert j.down() == {T}, n
    assert j.judge_round(votes(True, True, True)) == [T]
    assert j.down() == frozenset()


def test_a_target_still_starting_gets_a_grace_period() -> None:
    j = judge(down_after=2)
    for _ in range(9):
        j.judge_round(votes(False, False, False))
    assert j.verdicts[T].health is Health.UNKNOWN and j.down() == frozenset()
    assert j.judge_round(votes(False, False, False)) == [T], "a node that never came up is judged down at last"


def test_unknown_prober_is_ignored() -> None:
    j = judge()
    for _ in range(3):
        j.judge_round({"prober.rogue": {T: False}, "prober.a": {T: False}})
    assert j.down() == frozenset()


def test_flapping_seen_by_probers_out_of_phase_is_never_judged_down() -> None:
    # Each prober sees the target fail every other one of its own rounds, but the probers are
    # out of step and each judgement round gets new rounds from only two of them: the latest
    # reports of all three can show a failing majority in consecutive judgement rounds.
    j = judge()
    j.judge_round(votes(True, True, True))
    phase = {"prober.a": 0, "prober.b": 1, "prober.c": 0}
    latest = {p: True for p in PROBERS}
    for n in range(60):
        fresh = [PROBERS[n % 3], PROBERS[(n + 1) % 3]]
        for prober in fresh:
            phase[prober] += 1
            latest[prober] = phase[prober] % 2 == 0
        j.judge_round({p: {T: latest[p]} for p in PROBERS}, fresh=fresh)
    assert j.down() == frozenset()


def test_a_report_weighed_twice_counts_once_per_prober() -> None:
    j = judge()
    j.judge_round(votes(True, True, True))
    j.judge_round(votes(False, False, True))
    assert j.judge_round(votes(False, False, True), fresh=["prober.c"]) == []
    assert j.judge_round(votes(False, False, True), fresh=["prober.a", "prober.b"]) == [T]

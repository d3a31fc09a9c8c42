"""Promotion safety, every verdict, with the numbers in the detail."""

from __future__ import annotations

from paydar.failover.promotion import PromotionCheck, ReplicaView, check_promotion
from paydar.failover.promotion import PromotionVerdict as V

UP = ReplicaView


def check(candidate: str, views: dict[str, ReplicaView], primary: str | None = "tehran",
          sync: int = 1) -> PromotionCheck:
    return check_promotion(candidate, views, primary=primary, sync_replicas=sync)


def test_safe_when_candidate_holds_primary_acked_position() -> None:
    result = check("isfahan", {"tehran": UP(True, 10, 9), "isfahan": UP(True, 9, 8), "mashhad": UP(True, 7, 7)})
    assert result.verdict is V.SAFE and result.required_position == 9


def test_lacks_writes_with_numbers() -> None:
    result = check("mashhad", {"tehran": UP(True, 10, 9), "isfahan": UP(True, 9, 8), "mashhad": UP(True, 7, 7)})
    assert str(result) == "candidate lacks acknowledged writes: it holds position 7, acknowledged writes reach 9"


def test_primary_down_all_standbys_answer_highest_wins() -> None:
    views = {"tehran": UP(False), "isfahan": UP(True, 12, 10), "mashhad": UP(True, 11, 10)}
    assert check("isfahan", views).verdict is V.SAFE
    assert check("mashhad", views).verdict is V.LACKS_WRITES


def test_primary_down_too_few_answers() -> None:
    views = {"tehran": UP(False), "isfahan": UP(True, 12, 10), "mashhad": UP(False)}
    result = check("isfahan", views)
    assert result.verdict is V.TOO_FEW_ANSWERS
    assert result.detail == "1 of 2 standbys answered, 2 needed with sync_replicas 1"


def test_two_sync_replicas_need_one_answer_among_two() -> None:
    views = {"tehran": UP(False), "isfahan": UP(True, 12, 12), "mashhad": UP(False)}
    assert check("isfahan", views, sync=2).verdict is V.SAFE


def test_sync_zero_cannot_be_proven_without_primary() -> None:
    views = {"tehran": UP(False), "isfahan": UP(True, 12, 12), "mashhad": UP(True, 12, 12)}
    assert check("isfahan", views, sync=0).verdict is V.TOO_FEW_ANSWERS


def test_candidate_conditions() -> None:
    views = {"tehran": UP(True, 1, 1), "isfahan": UP(False), "mashhad": UP(True, 1, 1, compromised=True)}
    assert check("tehran", views).verdict is V.ALREADY_PRIMARY
    assert check("isfahan", views).verdict is V.CANDIDATE_UNREACHABLE
    assert check("mashhad", views).verdict is V.CANDIDATE_COMPROMISED
    assert check("shiraz", views).verdict is V.NOT_A_REPLICA


def test_read_only_service_without_primary() -> None:
    views = {"tehran": UP(True, 5, 5), "isfahan": UP(True, 5, 5), "mashhad": UP(True, 4, 4)}
    assert check("isfahan", views, primary=None).verdict is V.SAFE
    assert check("mashhad", views, primary=None).verdict is V.LACKS_WRITES


def test_a_lying_standby_cannot_disqualify_the_honest_ones_while_the_primary_answers() -> None:
    replicas = {"tehran": ReplicaView(True, 10, 10), "isfahan": ReplicaView(True, 10, 10),
                "mashhad": ReplicaView(True, 10**15, 10**15)}
    check = check_promotion("isfahan", replicas, primary="tehran", sync_replicas=1)
    assert check.safe and check.required_position == 10, "the fenced primary's acknowledged position is the rule"

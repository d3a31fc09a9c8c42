"""The controllers' judgement: a target is down only when a majority of vantage points agree.

Pure and clock-free. Each judgement round takes the fresh report of every prober that
delivered one (prober -> target -> ready). A target is bad in a round when more than half
of *all* probers (not just those that answered) report it not ready, good when more than
half report it ready, and otherwise the round says nothing about it. It turns down after
``down_after`` consecutive bad rounds and up again after ``up_after`` consecutive good ones,
so one lying prober can neither trigger nor block a failover and a flapping target causes
no failover storm. A target starts ``unknown`` and is judged up by its first good majority:
a process still starting must not look like a failure, so an unknown target is judged down
only after ``startup_grace`` times as many bad rounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Health", "Judge", "TargetVerdict"]


class Health(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


STARTUP_GRACE = 5


@dataclass
class TargetVerdict:
    health: Health = Health.UNKNOWN
    bad_streak: int = 0
    good_streak: int = 0
    bad_votes: int = 0
    good_votes: int = 0


class Judge:
    """Hysteresis over majority votes, per target."""

    def __init__(self, probers: Iterable[str], *, down_after: int, up_after: int) -> None:
        self.probers = tuple(probers)
        self.quorum = len(self.probers) // 2 + 1
        self.down_after = down_after
        self.up_after = up_after
        self.verdicts: dict[str, TargetVerdict] = {}
        self.rounds = 0

    def judge_round(self, reports: Mapping[str, Mapping[str, bool]]) -> list[str]:
        """Fold one round of reports in; return the targets whose health changed."""
        self.rounds += 1
        bad: dict[str, int] = {}
        good: dict[str, int] = {}
        for prober, seen in reports.items():
            if prober not in self.probers:
                continue
            for target, ready in seen.items():
                tally = good if ready else bad
                tally[target] = tally.get(target, 0) + 1
        changed = []
        for target in bad.keys() | good.keys():
            verdict = self.verdicts.setdefault(target, TargetVerdict())
            verdict.bad_votes, verdict.good_votes = bad.get(target, 0), good.get(target, 0)
            if verdict.bad_votes >= self.quorum:
                verdict.bad_streak += 1
                verdict.good_streak = 0
            elif verdict.good_votes >= self.quorum:
                verdict.good_streak += 1
                verdict.bad_streak = 0
            health = verdict.health
            if health is Health.UNKNOWN and verdict.good_streak >= 1:
                verdict.health = Health.UP
            elif health is Health.UNKNOWN and verdict.bad_streak >= self.down_after * STARTUP_GRACE:
                verdict.health = Health.DOWN
            elif health is Health.UP and verdict.bad_streak >= self.down_after:
                verdict.health = Health.DOWN
            elif health is Health.DOWN and verdict.good_streak >= self.up_after:
                verdict.health = Health.UP
            if verdict.health is not health:
                changed.append(target)
        return changed

    def down(self) -> frozenset[str]:
        return frozenset(t for t, v in self.verdicts.items() if v.health is Health.DOWN)

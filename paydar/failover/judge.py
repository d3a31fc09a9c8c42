"""The controllers' judgement: a target is down only when a majority of vantage points agree.

Pure and clock-free. Each judgement round takes the latest report of every prober
(prober -> target -> ready) and which of them are new since the last judgement.

Hysteresis going down is per vantage point: a prober votes a target down only once its own
last ``down_after`` rounds all saw it fail (counted over its *new* rounds, so a report
weighed in two judgement rounds counts once). A target is judged down when more than half
of *all* probers (not just those that answered) vote so. Probers' rounds are not in step:
counting consecutive majorities instead let a target failing every other round collect
"bad" majorities from probers at different phases and fail over. Going up, a target needs a
majority seeing it ready in ``up_after`` consecutive judgement rounds. So one lying prober
can neither trigger nor block a failover and a flapping target causes no failover storm.
A target starts ``unknown`` and is judged up by its first good majority: a process still
starting must not look like a failure, so an unknown target needs ``STARTUP_GRACE`` times as
many failing rounds from each prober.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
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
    good_streak: int = 0
    bad_votes: int = 0
    good_votes: int = 0


class Judge:
    """Per-prober hysteresis, then a majority of all probers, per target."""

    def __init__(self, probers: Iterable[str], *, down_after: int, up_after: int) -> None:
        self.probers = tuple(probers)
        self.quorum = len(self.probers) // 2 + 1
        self.down_after = down_after
        self.up_after = up_after
        self.verdicts: dict[str, TargetVerdict] = {}
        self.failing: dict[tuple[str, str], int] = {}
        """(prober, target) -> how many of that prober's consecutive new rounds saw it fail."""
        self.rounds = 0

    def judge_round(self, reports: Mapping[str, Mapping[str, bool]], fresh: Collection[str] | None = None) -> list[str]:
        """Fold one round of reports in; return the targets whose health changed.

        ``fresh`` names the probers whose report is new since the last round (default: all).
        """
        self.rounds += 1
        counted = [p for p in reports if p in self.probers]
        for prober in counted:
            if fresh is None or prober in fresh:
                for target, ready in reports[prober].items():
                    self.failing[(prober, target)] = 0 if ready else self.failing.get((prober, target), 0) + 1
        targets = {t for prober in counted for t in reports[prober]}
        changed = []
        for target in targets:
            verdict = self.verdicts.setdefault(target, TargetVerdict())
            health = verdict.health
            needed = self.down_after * (STARTUP_GRACE if health is Health.UNKNOWN else 1)
            verdict.bad_votes = sum(1 for p in counted if self.failing.get((p, target), 0) >= needed)
            verdict.good_votes = sum(1 for p in counted if reports[p].get(target) is True)
            if verdict.bad_votes >= self.quorum:
                verdict.health, verdict.good_streak = Health.DOWN, 0
            elif verdict.good_votes >= self.quorum:
                verdict.good_streak += 1
                if health is Health.UNKNOWN or (health is Health.DOWN and verdict.good_streak >= self.up_after):
                    verdict.health = Health.UP
            if verdict.health is not health:
                changed.append(target)
        return changed

    def down(self) -> frozenset[str]:
        return frozenset(t for t, v in self.verdicts.items() if v.health is Health.DOWN)

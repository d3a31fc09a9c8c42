"""Promotion safety: may this standby become primary without losing an acknowledged write?

Pure logic, tested exhaustively without processes. An acknowledged write is durable on the
primary and on ``sync_replicas`` standbys. With the primary's state known (it is fenced, so
its acknowledged position is final), a candidate must hold that position. Without it, at
least ``standbys - sync_replicas + 1`` standbys must answer, so every acknowledged write is
on one of them, and the candidate must hold the highest position among them. When that
cannot be proven the answer is no: the service stays read-only rather than risk loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["PromotionCheck", "PromotionVerdict", "ReplicaView", "check_promotion", "standbys_prove"]


class PromotionVerdict(StrEnum):
    SAFE = "candidate holds every acknowledged write"
    ALREADY_PRIMARY = "candidate is already the primary"
    NOT_A_REPLICA = "candidate hosts no replica of the service"
    CANDIDATE_UNREACHABLE = "candidate is unreachable so its log position cannot be proven"
    CANDIDATE_COMPROMISED = "candidate failed integrity verification"
    TOO_FEW_ANSWERS = "too few standbys answered to prove where acknowledged writes are"
    LACKS_WRITES = "candidate lacks acknowledged writes"


@dataclass(frozen=True)
class ReplicaView:
    """What one replica reported (``reachable=False`` when it did not answer)."""

    reachable: bool
    log_position: int = 0
    acked_position: int = 0
    compromised: bool = False


@dataclass(frozen=True)
class PromotionCheck:
    verdict: PromotionVerdict
    required_position: int | None
    detail: str

    @property
    def safe(self) -> bool:
        return self.verdict is PromotionVerdict.SAFE

    def __str__(self) -> str:
        return f"{self.verdict.value}: {self.detail}" if self.detail else self.verdict.value


def standbys_prove(replicas: Mapping[str, ReplicaView], primary: str | None) -> dict[str, ReplicaView]:
    """The views when the proof must come from the standbys alone: ``primary`` counts as unreachable.

    A PostgreSQL primary is stopped when it is fenced, and while it runs what it reports as
    acknowledged (its k-th standby's flush) trails its commits; the standbys' own flushed
    positions, enough of them to meet every acknowledged commit, are the proof, and the old
    primary rejoins with pg_rewind rather than being a candidate."""
    if primary is None or primary not in replicas:
        return dict(replicas)
    return {**replicas, primary: ReplicaView(reachable=False)}


def check_promotion(candidate: str, replicas: Mapping[str, ReplicaView], *, primary: str | None,
                    sync_replicas: int) -> PromotionCheck:
    """Decide whether ``candidate`` may be promoted; the detail carries the numbers."""
    if candidate == primary:
        return PromotionCheck(PromotionVerdict.ALREADY_PRIMARY, None, "")
    view = replicas.get(candidate)
    if view is None:
        return PromotionCheck(PromotionVerdict.NOT_A_REPLICA, None, f"replicas are in {', '.join(sorted(replicas))}")
    if not view.reachable:
        return PromotionCheck(PromotionVerdict.CANDIDATE_UNREACHABLE, None, "")
    if view.compromised:
        return PromotionCheck(PromotionVerdict.CANDIDATE_COMPROMISED, None, "restore it from the vault first")
    answered = {r: v for r, v in replicas.items() if v.reachable}
    acked = max((v.acked_position for v in answered.values()), default=0)
    old = replicas.get(primary) if primary else None
    if old is not None and old.reachable:
        # The fenced primary is the one that acknowledged: its position is the requirement, and
        # no standby's claim can raise it (a lying standby must not disqualify the honest ones).
        required = old.acked_position
    else:
        standbys = [r for r in replicas if r != primary]
        needed = len(standbys) - sync_replicas + 1
        got = sum(1 for r in standbys if replicas[r].reachable)
        if sync_replicas == 0 or got < needed:
            detail = (f"{got} of {len(standbys)} standbys answered, {needed} needed with sync_replicas "
                      f"{sync_replicas}" if sync_replicas else "with sync_replicas 0 an acknowledged write "
                      "may exist only on the unreachable primary")
            return PromotionCheck(PromotionVerdict.TOO_FEW_ANSWERS, None, detail)
        required = max([acked] + [replicas[r].log_position for r in standbys if replicas[r].reachable])
    if view.log_position < required:
        return PromotionCheck(PromotionVerdict.LACKS_WRITES, required,
                              f"it holds position {view.log_position}, acknowledged writes reach {required}")
    return PromotionCheck(PromotionVerdict.SAFE, required,
                          f"it holds position {view.log_position} >= {required}")

"""A controller's ``GET /state``: its table, quorum, judgement and the operators' intents.
Produced by the controller, read by ``paydar status``, the benchmarks and the tests."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from paydar.failover.intents import Intent
from paydar.model.wire import Counter, WireModel

__all__ = ["ControllerState", "ProberRound", "ProposalOutcome"]


class ProberRound(WireModel):
    """The newest round the controller holds from one prober."""

    round: Counter
    age_seconds: float
    failing: list[str]


class ProposalOutcome(WireModel):
    """What became of this controller's last proposal (``certified``, ``no-quorum``, ...)."""

    version: Counter
    outcome: str = Field(max_length=32)
    detail: str = Field(max_length=2000)
    at: float


class ControllerState(WireModel):
    """One controller's view, as ``paydar status`` shows it."""

    component: str = Field(max_length=200)
    region: str = Field(max_length=64)
    role: Literal["controller"] = "controller"
    table_version: Counter
    signers: list[str] = Field(max_length=64)
    threshold: Counter
    peers_reachable: Counter
    quorum: bool
    judgement_rounds: Counter
    down: list[str]
    probers: dict[str, ProberRound]
    intents: list[Intent]
    last_proposal: ProposalOutcome | None = None

"""Wire models of the probers: what one vantage point saw in one round, signed.

Controllers accept a round only with a valid signature from the prober key the trust root
lists for that prober, so a stolen network position cannot inject observations.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from infra.signing import Signature

__all__ = [
    "CanaryObservation",
    "IntegrityObservation",
    "ObservationRound",
    "SignedObservations",
    "TargetKind",
    "TargetObservation",
]


class TargetKind(StrEnum):
    NODE = "node"
    GATEWAY = "gateway"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetObservation(_Wire):
    """Liveness and readiness of one target (one request: any answer is alive, 200 is ready).

    For nodes the readiness answer also carries role, epoch, log and acknowledged positions,
    chain head and held table version.
    """

    target: str
    alive: bool
    ready: bool
    latency_ms: float = Field(ge=0)
    error: str | None = None
    role: str | None = None
    epoch: int | None = None
    position: int | None = None
    acked: int | None = None
    head: str | None = None
    table_version: int | None = None
    compromised: bool = False
    lag: dict[str, int] = Field(default_factory=dict)


class CanaryObservation(_Wire):
    """A citizen's view: a canary document written then read back through one gateway."""

    gateway: str
    service: str
    ok: bool
    latency_ms: float = Field(ge=0)
    error: str | None = None


class IntegrityObservation(_Wire):
    """Chain hashes of one service's replicas at the same log position.

    ``diverged`` names the regions whose hash differs from the majority's.
    """

    service: str
    position: int = Field(ge=0)
    hashes: dict[str, str]
    diverged: tuple[str, ...] = ()


class ObservationRound(_Wire):
    """Everything one prober saw in one round."""

    prober: str
    region: str
    round: int = Field(ge=1)
    started_at: float
    finished_at: float
    targets: tuple[TargetObservation, ...]
    canaries: tuple[CanaryObservation, ...] = ()
    integrity: tuple[IntegrityObservation, ...] = ()


class SignedObservations(_Wire):
    observations: ObservationRound
    signature: Signature

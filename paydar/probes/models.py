"""Wire models of the probers: what one vantage point saw in one round, signed.

Controllers accept a round only with a valid signature from the prober key the trust root
lists for that prober, so a stolen network position cannot inject observations.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from paydar.model.errors import SignatureError
from paydar.model.identity import TrustRoot
from paydar.model.signing import Signature, Signer, verify_bytes
from paydar.model.wire import MAX_COUNTER, WireModel

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
    APP = "app"
    """An agency app's instance (``workload: http``): its health path, then its canary."""


MAX_TARGETS = 200_000
"""Bounds every list in a round: far beyond the national catalog, far below what exhausts memory."""


class _Wire(WireModel):
    pass


class TargetObservation(_Wire):
    """Liveness and readiness of one target (one request: any answer is alive, 200 is ready).

    For nodes the readiness answer also carries role, epoch, log and acknowledged positions,
    chain head and held table version.
    """

    target: str = Field(max_length=200)
    alive: bool
    ready: bool
    latency_ms: float = Field(ge=0)
    error: str | None = Field(default=None, max_length=500)
    role: str | None = Field(default=None, max_length=32)
    epoch: int | None = Field(default=None, ge=0, le=MAX_COUNTER)
    position: int | None = Field(default=None, ge=-1, le=MAX_COUNTER)
    acked: int | None = Field(default=None, ge=0, le=MAX_COUNTER)
    head: str | None = Field(default=None, max_length=64)
    table_version: int | None = Field(default=None, ge=0, le=MAX_COUNTER)
    compromised: bool = False
    lag: dict[str, int] = Field(default_factory=dict, max_length=64)


class CanaryObservation(_Wire):
    """A citizen's view: a canary document written then read back through one gateway."""

    gateway: str = Field(max_length=200)
    service: str = Field(max_length=64)
    ok: bool
    latency_ms: float = Field(ge=0)
    error: str | None = Field(default=None, max_length=500)


class IntegrityObservation(_Wire):
    """Chain hashes of one service's replicas at the same log position.

    ``diverged`` names the regions whose hash differs from the majority's.
    """

    service: str = Field(max_length=64)
    position: int = Field(ge=0, le=MAX_COUNTER)
    hashes: dict[str, str] = Field(max_length=64)
    diverged: tuple[str, ...] = Field(default=(), max_length=64)


class ObservationRound(_Wire):
    """Everything one prober saw in one round, compact enough for the national catalog.

    Ready targets are listed by id only; every target that is not ready comes with its full
    observation (why). ``tables`` maps each routing-table version seen to the targets holding
    it, which is how controllers find components that missed a table.
    """

    prober: str = Field(max_length=200)
    region: str = Field(max_length=64)
    round: int = Field(ge=1, le=MAX_COUNTER)
    started_at: float
    finished_at: float
    ready: tuple[str, ...] = Field(max_length=MAX_TARGETS)
    failing: tuple[TargetObservation, ...] = Field(default=(), max_length=MAX_TARGETS)
    tables: dict[int, tuple[str, ...]] = Field(default_factory=dict, max_length=1000)
    canaries: tuple[CanaryObservation, ...] = Field(default=(), max_length=MAX_TARGETS)
    integrity: tuple[IntegrityObservation, ...] = Field(default=(), max_length=MAX_TARGETS)

    @classmethod
    def of(cls, observations: list[TargetObservation], **fields: object) -> ObservationRound:
        """Fold full observations into the compact round."""
        tables: dict[int, list[str]] = {}
        for o in observations:
            if o.table_version is not None:
                tables.setdefault(o.table_version, []).append(o.target)
        return cls.model_validate({"ready": tuple(o.target for o in observations if o.ready),
                                   "failing": tuple(o for o in observations if not o.ready),
                                   "tables": {v: tuple(t) for v, t in tables.items()}, **fields})


class SignedObservations(_Wire):
    """A round as it travels: its JSON text, and the prober's signature over exactly that text.

    Signing the bytes as sent (rather than a canonical re-encoding) lets a controller verify a
    round of the national catalog without re-serialising it; defaults are left out of the text.
    """

    observations: str = Field(max_length=64 * 1024 * 1024)
    signature: Signature

    @classmethod
    def seal(cls, body: ObservationRound, signer: Signer) -> SignedObservations:
        text = body.model_dump_json(exclude_defaults=True)
        return cls(observations=text, signature=signer.sign_bytes(text.encode()))

    def open(self, prober: str, trust: TrustRoot) -> ObservationRound:
        """Verify against ``prober``'s trusted key, then parse; raise ``SignatureError`` or
        ``ValidationError`` on anything else, including a round that names another prober."""
        kid, key = trust.key_of(prober)
        if self.signature.key_id != kid:
            raise SignatureError(f"round signed by key {self.signature.key_id}, not {prober}'s key {kid}")
        verify_bytes(self.observations.encode(), self.signature, key)
        body = ObservationRound.model_validate_json(self.observations)
        if body.prober != prober:
            raise SignatureError(f"round from {prober}'s address names prober {body.prober!r}")
        return body


class ProberState(_Wire):
    """A prober's ``GET /state``: its latest round in brief. Read by ``paydar status`` and the tests."""

    component: str = Field(max_length=200)
    region: str = Field(max_length=64)
    role: Literal["prober"] = "prober"
    round: int = Field(ge=0, le=MAX_COUNTER)
    targets: int = Field(ge=0, le=MAX_COUNTER)
    failing: dict[str, str | None] = Field(default_factory=dict)
    canaries: tuple[CanaryObservation, ...] = ()
    integrity: tuple[IntegrityObservation, ...] = ()

"""Wire models of the probers: what one vantage point saw in one round, signed.

Controllers accept a round only with a valid signature from the prober key the trust root
lists for that prober, so a stolen network position cannot inject observations.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from infra.errors import SignatureError
from infra.identity import TrustRoot
from infra.signing import Signature, Signer, verify_bytes

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
    """Everything one prober saw in one round, compact enough for the national catalog.

    Ready targets are listed by id only; every target that is not ready comes with its full
    observation (why). ``tables`` maps each routing-table version seen to the targets holding
    it, which is how controllers find components that missed a table.
    """

    prober: str
    region: str
    round: int = Field(ge=1)
    started_at: float
    finished_at: float
    ready: tuple[str, ...]
    failing: tuple[TargetObservation, ...] = ()
    tables: dict[int, tuple[str, ...]] = Field(default_factory=dict)
    canaries: tuple[CanaryObservation, ...] = ()
    integrity: tuple[IntegrityObservation, ...] = ()

    @classmethod
    def of(cls, observations: list[TargetObservation], **fields: object) -> ObservationRound:
        """Fold full observations into the compact round."""
        tables: dict[int, list[str]] = {}
        for o in observations:
            if o.table_version is not None:
                tables.setdefault(o.table_version, []).append(o.target)
        return cls(ready=tuple(o.target for o in observations if o.ready),
                   failing=tuple(o for o in observations if not o.ready),
                   tables={v: tuple(t) for v, t in tables.items()}, **fields)  # type: ignore[arg-type]


class SignedObservations(_Wire):
    """A round as it travels: its JSON text, and the prober's signature over exactly that text.

    Signing the bytes as sent (rather than a canonical re-encoding) lets a controller verify a
    round of the national catalog without re-serialising it; defaults are left out of the text.
    """

    observations: str
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

"""Routing tables: who is primary for each service, in which epoch, signed k-of-n.

A node or gateway obeys a table only when at least ``threshold`` distinct controller keys
have signed that exact table, its version is newer than the one it holds (rollback
protection, as in The Update Framework), it has not expired, it names only known services,
it never routes a service to zero regions, and it gives no service another route in an
epoch the held table already routes. :class:`TableGuard` is the one place those rules live;
it is pure (the clock is injected) and raises :class:`TableRejected` with a
:class:`TableRejection` reason and the numbers in the message.

Each table names its predecessor's digest (``previous``). Two certified tables that give one
service two routes in one epoch, or two certified tables of one version with the same
predecessor, are *equivocation*: proof that some controller signed twice. The guard refuses
the second (fail static) and hands back both as :class:`Equivocation` evidence.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import Field, ValidationError

from paydar.model.errors import SignatureError, TableRejected, TableRejection
from paydar.model.identity import Role, TrustRoot
from paydar.model.signing import Signature, Signer, canonical_json, verify_threshold
from paydar.model.topology import NationalTopology
from paydar.model.wire import MAX_COUNTER, WireModel

MAX_SIGNATURES = 64
"""More signatures than any threshold needs: a longer list is malformed before one is verified."""

__all__ = [
    "MAX_SIGNATURES",
    "Equivocation",
    "RouteMode",
    "RoutingTable",
    "ServiceRoute",
    "SignedTable",
    "TableGuard",
    "TableRejection",
    "initial_table",
    "sign_table",
    "table_digest",
]


class RouteMode(StrEnum):
    READ_WRITE = "read-write"
    READ_ONLY = "read-only"


class ServiceRoute(WireModel):
    """Where one service lives in one table.

    A fenced route is read-only with no primary; ``fenced`` names the primary it deposed, whose
    acknowledged writes a promotion must prove it holds.
    """

    primary: str | None = Field(max_length=64)
    standbys: tuple[str, ...] = Field(max_length=64)
    epoch: int = Field(ge=1, le=MAX_COUNTER)
    mode: RouteMode = RouteMode.READ_WRITE
    fenced: str | None = Field(default=None, max_length=64)

    @property
    def regions(self) -> tuple[str, ...]:
        return ((self.primary,) if self.primary else ()) + self.standbys

    @property
    def writable(self) -> bool:
        return self.mode is RouteMode.READ_WRITE and self.primary is not None


class RoutingTable(WireModel):
    """The unsigned content of a routing table; ``previous`` is its predecessor's digest."""

    version: int = Field(ge=1, le=MAX_COUNTER)
    issued_at: float
    expires_at: float
    previous: str = Field(default="", pattern=r"^(?:[0-9a-f]{64})?$")
    reason: str = Field(default="", max_length=500)
    services: dict[str, ServiceRoute] = Field(max_length=100_000)

    def digest(self) -> str:
        """What a successor names as ``previous`` (:func:`table_digest`)."""
        return table_digest(self)

    def route(self, service_id: str) -> ServiceRoute:
        try:
            return self.services[service_id]
        except KeyError:
            raise KeyError(f"service {service_id!r} is not in routing table v{self.version}") from None


class SignedTable(WireModel):
    """A routing table with its controller signatures, as it travels and is stored."""

    table: RoutingTable
    signatures: tuple[Signature, ...] = Field(default=(), max_length=MAX_SIGNATURES)

    def payload(self) -> dict[str, object]:
        return self.table.model_dump(mode="json")


def table_digest(table: RoutingTable) -> str:
    """SHA-256 (hex) of what a table decides: its version, predecessor and routes.

    Timestamps and the reason are left out on purpose: two certified copies of the same routes
    (honest proposals racing, or a rogue controller handing each peer its own copy) are then
    one predecessor, and cannot split the controllers into lineages that refuse each other.
    """
    decided = {"version": table.version, "previous": table.previous,
               "services": {sid: route.model_dump(mode="json") for sid, route in table.services.items()}}
    return hashlib.sha256(canonical_json(decided)).hexdigest()


@dataclass(frozen=True)
class Equivocation:
    """Evidence that controllers signed two incompatible tables: both, and who signed both."""

    held: SignedTable
    offered: SignedTable
    detail: str
    double_signers: frozenset[str]

    def record(self) -> dict[str, object]:
        """The evidence as JSON, to keep on disk and hand to the operator."""
        return {"detail": self.detail, "double_signers": sorted(self.double_signers),
                "held": self.held.model_dump(mode="json"), "offered": self.offered.model_dump(mode="json")}


def initial_table(topology: NationalTopology, now: float) -> RoutingTable:
    """Version 1: every service's preferred region is primary, in epoch 1."""
    return RoutingTable(
        version=1, issued_at=now, expires_at=now + topology.control.table_ttl,
        reason="initial placement from the topology",
        services={s.id: ServiceRoute(primary=s.home, standbys=s.regions[1:], epoch=1) for s in topology.services})


def sign_table(table: RoutingTable, signers: Iterable[Signer]) -> SignedTable:
    """Sign one table with each signer (distinct controller keys)."""
    data = canonical_json(table.model_dump(mode="json"))
    return SignedTable(table=table, signatures=tuple(s.sign_bytes(data) for s in signers))


class TableGuard:
    """Holds the current table and decides whether a candidate may replace it."""

    def __init__(
        self,
        *,
        trust: TrustRoot,
        threshold: int,
        known_services: Iterable[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = trust.keys(Role.CONTROLLER)
        self.threshold = threshold
        self.known_services = frozenset(known_services)
        self._clock = clock
        self.current: SignedTable | None = None
        self.signers: frozenset[str] = frozenset()
        self.evidence: Equivocation | None = None
        """The last equivocation seen (both tables); components persist it and alert."""

    @staticmethod
    def parse(raw: bytes | str) -> SignedTable:
        """Parse a table from JSON; :class:`TableRejected` (malformed) on bad input."""
        try:
            return SignedTable.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise TableRejected(TableRejection.MALFORMED,
                                f"malformed routing table: {where}: {first['msg']}") from None

    def check(self, candidate: SignedTable) -> frozenset[str]:
        """Raise :class:`TableRejected` unless ``candidate`` may replace the held table.

        Returns the key ids of the controllers whose signatures verified.
        """
        table = candidate.table
        held = self.current.table if self.current else None
        # Refusals that need no signature check come first: an unauthenticated sender must not
        # buy a round of Ed25519 verifications over a large table with a stale or foreign one.
        if held is not None and (table.version < held.version or
                                 (table.version == held.version and table.services == held.services)):
            raise TableRejected(TableRejection.NOT_NEWER,
                                f"table v{table.version} is not newer than held v{held.version}; rollback refused")
        unknown = sorted(set(table.services) - self.known_services)
        if unknown:
            raise TableRejected(TableRejection.UNKNOWN_SERVICE,
                                f"table v{table.version} names unknown services: {', '.join(unknown[:10])}")
        try:
            signers = verify_threshold(candidate.payload(), candidate.signatures, self._keys,
                                       self.threshold, Role.CONTROLLER.value)
        except SignatureError as exc:
            raise TableRejected(TableRejection.UNDER_SIGNED, f"table v{table.version} refused: {exc}") from None
        if held is not None and table.version <= held.version:
            # Same routes signed twice (two honest proposals racing) move nothing; only siblings
            # that route differently prove a double signature.
            if table.version == held.version and table.previous == held.previous and table.services != held.services:
                self._equivocation(candidate, signers, f"two certified tables v{table.version} succeed one "
                                                       "predecessor")
            raise TableRejected(TableRejection.NOT_NEWER,
                                f"table v{table.version} is not newer than held v{held.version}; rollback refused")
        if held is not None:
            for service_id, route in table.services.items():
                old = held.services.get(service_id)
                if old is not None and route.epoch == old.epoch and route != old:
                    self._equivocation(candidate, signers, f"table v{table.version} gives service {service_id} "
                                                           f"another route in epoch {route.epoch} than held "
                                                           f"v{held.version}")
        now = self._clock()
        if table.expires_at <= now:
            raise TableRejected(TableRejection.EXPIRED,
                                f"table v{table.version} expired {now - table.expires_at:.0f}s ago")
        for service_id, route in table.services.items():
            if not route.regions:
                raise TableRejected(TableRejection.ZERO_REGIONS,
                                    f"table v{table.version} routes service {service_id} to zero regions")
            if held is not None and service_id in held.services and route.epoch < held.services[service_id].epoch:
                raise TableRejected(TableRejection.EPOCH_REGRESSION,
                                    f"table v{table.version} lowers the epoch of service {service_id} "
                                    f"from {held.services[service_id].epoch} to {route.epoch}")
        return signers

    def _equivocation(self, candidate: SignedTable, signers: frozenset[str], detail: str) -> None:
        assert self.current is not None
        held_signers = self.signers
        self.evidence = Equivocation(held=self.current, offered=candidate, detail=detail,
                                     double_signers=held_signers & signers)
        raise TableRejected(TableRejection.EQUIVOCATION,
                            f"equivocation: {detail}; keeping v{self.current.table.version} (fail static); "
                            f"signed by both: {', '.join(sorted(held_signers & signers)) or 'none'}")

    def restore(self, candidate: SignedTable) -> frozenset[str]:
        """Adopt a table read back from this component's own disk at start.

        Signatures and services are checked as always, but expiry is not: the last table a
        component obeyed stays in force until a newer one arrives (fail static).
        """
        try:
            signers = verify_threshold(candidate.payload(), candidate.signatures, self._keys,
                                       self.threshold, Role.CONTROLLER.value)
        except SignatureError as exc:
            raise TableRejected(TableRejection.UNDER_SIGNED, f"stored table refused: {exc}") from None
        if self.current is None or candidate.table.version > self.current.table.version:
            self.current, self.signers = candidate, signers
        return signers

    def retrust(self, trust: TrustRoot) -> frozenset[str]:
        """Verify with a new trust root from now on (a key was rotated), and recount the held
        table's valid signers. The held table stays in force even when they fall below the
        threshold (fail static); the controllers then re-sign it (see ``under_signed``)."""
        self._keys = trust.keys(Role.CONTROLLER)
        if self.current is None:
            return frozenset()
        try:
            self.signers = verify_threshold(self.current.payload(), self.current.signatures, self._keys, 1,
                                            Role.CONTROLLER.value)
        except SignatureError:
            self.signers = frozenset()
        return self.signers

    @property
    def under_signed(self) -> bool:
        """The held table no longer carries ``threshold`` signatures valid under the trust root."""
        return self.current is not None and len(self.signers) < self.threshold

    def accept(self, candidate: SignedTable) -> frozenset[str]:
        """Check and adopt ``candidate``; the held table is unchanged when it is refused."""
        signers = self.check(candidate)
        self.current = candidate
        self.signers = signers
        return signers

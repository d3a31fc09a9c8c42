"""The workload contract: what every service's per-region instance exposes and obeys,
whatever it stores, so that probers, controllers, the vault, operators and chaos never depend
on the workload behind it.

**It exposes**, over HTTP on its own port:

- ``GET /livez`` (the process answers) and ``GET /readyz`` (it holds a verified routing table
  and can serve its role);
- ``GET /state``: an :class:`InstanceState`, its role, epoch, mode, table version, positions
  (written, acknowledged, and what each standby matches), integrity (``compromised`` with the
  reason) and its last confirmed backup. To every reader it is the instance's own, unproven
  word: a reader that cannot parse it treats the instance as not answering, and nothing is
  promoted on it without the proof the controllers ask of the replicas;
- ``GET /v1/routing-table``: the signed table it holds.

**It obeys** only routing tables that carry ``control.threshold`` valid controller signatures
and are newer than its own (``POST /v1/routing-table``, :meth:`Workload.offer_table`), takes its
role and epoch from them, and is fenced by epochs: it never accepts writes or replication from
a lower epoch, and a primary of an older epoch cannot acknowledge.

**It hands the vault** snapshot bytes and a verifier (:data:`paydar.vault.restore.Verifier`)
that restore calls before anything is served; the vault itself stays blind to the workload.

:class:`Workload` is the in-process side an implementation provides behind those endpoints;
``paydar.node.runtime.NodeRuntime`` (the document registry) is the first.

An agency's own app (``workload: http``) holds no Paydar key, so it meets a smaller contract:
it exposes its health path and answers the service's canary (``paydar.probes.engine`` runs
both), obeys nothing (the gateways obey the tables for it, ``paydar.gateway.proxy``) and hands
the vault nothing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from pydantic import Field

from paydar.model.routing import RouteMode, SignedTable
from paydar.model.wire import MAX_COUNTER, Counter, WireModel
from paydar.vault.manifest import BackupManifest

__all__ = ["MAX_REASON_CHARS", "PATHS", "InstanceRole", "InstanceState", "StandbyProgress", "Workload"]

PATHS = {"live": "/livez", "ready": "/readyz", "state": "/state", "table": "/v1/routing-table"}
"""The endpoints every instance serves, by what they are for."""
MAX_REASON_CHARS = 1000
"""A compromise reason is cut to this length in ``/state``."""


class InstanceRole(StrEnum):
    """An instance's role; values are never renumbered (they are a Prometheus Enum metric)."""

    PRIMARY = "primary"
    STANDBY = "standby"
    FENCED = "fenced"
    DETACHED = "detached"


class StandbyProgress(WireModel):
    """How far one standby matches this primary's log."""

    matched: Counter
    reachable: bool


class InstanceState(WireModel):
    """An instance's ``GET /state``: produced by the instance, read by probers, controllers,
    ``paydar`` restore and failover, and the drill; its own, unproven word."""

    component: str = Field(max_length=200)
    service: str = Field(max_length=64)
    region: str = Field(max_length=64)
    role: InstanceRole
    epoch: Counter
    mode: RouteMode
    primary: str | None = Field(default=None, max_length=64)
    table_version: Counter
    log_position: int = Field(ge=-1, le=MAX_COUNTER)
    """-1 when the store cannot be read at all."""
    chain_head: str = Field(max_length=64)
    acked_position: Counter
    compromised: str | None = Field(default=None, max_length=MAX_REASON_CHARS)
    ack_replicas: Counter
    backup: BackupManifest | None = None
    """The last backup this instance took and the vault confirmed."""
    standbys: dict[str, StandbyProgress] = Field(default_factory=dict, max_length=64)


class Workload(Protocol):
    """The in-process side of the contract, behind the endpoints above."""

    @property
    def table(self) -> SignedTable:
        """The verified routing table in force."""
        ...

    async def offer_table(self, signed: SignedTable, *, source: str) -> frozenset[str]:
        """Adopt ``signed`` if it carries threshold signatures and is newer; the signers' key ids."""
        ...

    async def state(self) -> InstanceState:
        """What ``GET /state`` answers."""
        ...

    def mark_compromised(self, reason: str) -> None:
        """Stop serving as anything but a fenced instance: its own data failed verification."""
        ...

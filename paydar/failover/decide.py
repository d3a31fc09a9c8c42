"""What a controller does next, from one snapshot of what it knows: the pure core of a tick.

A tick reads a :class:`Snapshot` (the held table, the targets judged down, the operators'
intents, the read-only services' replica views, the state of the held table's signatures),
:func:`decide` turns it into a :class:`Decision` whose :class:`Verdict` says what to do and
whose ``reason`` says why, and only then does the controller act (propose, ask its peers,
publish). ``paydar bench controller`` calls the same function.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from enum import StrEnum

from paydar.failover.planner import Change, Overrides, plan
from paydar.failover.promotion import ReplicaView
from paydar.model.routing import RoutingTable, ServiceRoute
from paydar.model.topology import NationalTopology

__all__ = ["Decision", "Snapshot", "Verdict", "decide", "proposal_of"]


class Verdict(StrEnum):
    """What the controller does after a tick."""

    STEADY = "the held table already routes what this controller's view calls for"
    PROPOSE = "this controller's view calls for new routes"
    RESIGN = "the routes stand, but the held table no longer carries a quorum of valid signatures"


@dataclass(frozen=True)
class Snapshot:
    """Everything one tick decides from, read before any decision is taken."""

    held: RoutingTable
    down: Set[str]
    overrides: Overrides
    views: Mapping[str, Mapping[str, ReplicaView]] = field(default_factory=dict)
    valid_signers: int = 0
    """Signatures of the held table that verify under the current trust root."""
    under_signed: bool = False
    own_key_trusted: bool = True
    """False between a rotation of this controller's own key and its restart: it must not re-sign."""


@dataclass(frozen=True)
class Decision:
    """The verdict, the routes of the next table (the held ones when steady) and why."""

    verdict: Verdict
    routes: dict[str, ServiceRoute]
    changes: tuple[Change, ...]
    reason: str


def decide(snapshot: Snapshot, topology: NationalTopology) -> Decision:
    """The next routes and what to do about them.

    New routes are proposed whenever the plan changes something (judged-down primaries,
    operator intents). With nothing to change, a held table whose signatures no longer make a
    quorum (a controller key was rotated) is re-signed as a new version, unless this
    controller's own key is the one not yet trusted.
    """
    cap = topology.control.failover_cap(len(topology.services))
    routes, changes = plan(snapshot.held, topology, down=snapshot.down, overrides=snapshot.overrides,
                           views=snapshot.views, cap=cap)
    if changes:
        return Decision(Verdict.PROPOSE, routes, tuple(changes), "; ".join(map(str, changes)))
    if snapshot.under_signed and snapshot.own_key_trusted:
        resign = Change("table", "re-sign", f"only {snapshot.valid_signers} of its signatures verify under the "
                                            "current trust root")
        return Decision(Verdict.RESIGN, routes, (resign,), str(resign))
    return Decision(Verdict.STEADY, routes, (), Verdict.STEADY.value)


def proposal_of(held: RoutingTable, decision: Decision, *, proposer: str, now: float, ttl: float) -> RoutingTable:
    """The successor of ``held`` that ``decision`` calls for, as ``proposer`` signs it."""
    return RoutingTable(version=held.version + 1, issued_at=now, expires_at=now + ttl, previous=held.digest(),
                        reason=f"{proposer}: {decision.reason}"[:420], services=decision.routes)

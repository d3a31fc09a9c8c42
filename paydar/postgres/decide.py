"""What a PostgreSQL agent does with the signed table in force, and what it reports: pure.

The agent beside each server obeys only the certified routing table; these are its decisions.
:func:`next_action` compares the route with what the server says of itself and what its data
directory holds, and returns an :class:`Action` with its reason:

- the table names this region primary and writable, and the server is a standby: **promote** it;
- the table names another primary, or fences the service, and the server is a primary:
  **fence** it at once (stop the server), because a deposed primary must acknowledge nothing,
  not only after a timeout;
- a standby streams from the table's primary, or from nobody while the service is fenced:
  otherwise **follow** (so nothing a deposed primary sends is received in the new epoch);
- the server is down and the table still wants it: **start** it (a primary only while the
  table names it, a standby otherwise, initialised empty only in the first epoch);
- a server it fenced, or a primary's data the table no longer names primary, comes back only
  as a standby rewound onto the new primary's timeline: **rejoin**;
- data that failed the integrity scan (:mod:`paydar.postgres.integrity`) is stopped and stays
  down until an operator rebuilds it: **fence**, then nothing;
- anything else: nothing.

:func:`instance_state` renders the workload contract's ``/state`` from the server's positions:
the flushed LSN is the log position a promotion proof compares (a quorum commit is acknowledged
once ``k`` standbys have flushed it), and a primary's acknowledged position is the LSN its
``k``-th most advanced synchronous standby has flushed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from paydar.model.routing import ServiceRoute
from paydar.model.wire import MAX_COUNTER
from paydar.postgres.replication import COPY_NAMES, Positions, Walsender, copy_name
from paydar.postgres.roles import replicator
from paydar.workload.contract import InstanceRole, InstanceState, StandbyProgress

FIRST_EPOCH = 1
"""The initial table's epoch: the only one in which an empty data directory is initialised as primary."""

__all__ = ["FIRST_EPOCH", "Action", "Decision", "Disk", "acknowledged_lsn", "held", "impostors", "instance_state",
           "next_action"]


class Action(StrEnum):
    NOTHING = "nothing"
    START = "start"
    PROMOTE = "promote"
    FENCE = "fence"
    FOLLOW = "follow"
    REJOIN = "rejoin"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


@dataclass(frozen=True)
class Disk:
    """What the server's data directory holds while the server is down."""

    initialised: bool = True
    former_primary: bool = False
    """It holds a primary's data (no ``standby.signal``): it may hold commits no standby has."""


def _leader(route: ServiceRoute, region: str) -> str | None:
    """Whom ``region``'s standby streams from: the table's primary, or nobody while it is fenced."""
    return route.primary if route.writable and route.primary != region else None


def next_action(route: ServiceRoute, region: str, positions: Positions | None, *, fenced: bool = False,
                running: bool | None = None, disk: Disk = Disk(), upstream: str | None = None,
                was_primary: bool = False, compromised: str | None = None) -> Decision:
    """What the agent in ``region`` does now. ``positions`` is None when its server does not
    answer; ``running`` says whether its process is alive (default: it is when it answers),
    ``fenced`` that the agent stopped it as a deposed primary, ``disk`` what its data directory
    holds, ``upstream`` the region its standby streams from, ``was_primary`` whether the
    server last answered as a primary, and ``compromised`` why its data failed the integrity
    scan (None: it has not)."""
    ours = route.writable and route.primary == region
    running = positions is not None if running is None else running
    if compromised is not None:
        # Data that failed its checks serves nothing, and is never rewound back into service
        # (pg_rewind copies only what changed since the fork, not the damage): it is rebuilt.
        if running:
            return Decision(Action.FENCE, f"its data failed the integrity scan ({compromised[:200]}): stopped, it "
                                          "serves nothing until it is rebuilt")
        return Decision(Action.NOTHING, "compromised: it stays stopped until it is rebuilt (paydar rebuild)")
    if running and positions is None:
        # Alive but not answering (its connection slots held by a flood, say): never a reason to
        # start a second one. A primary the table deposed is stopped without asking it; a standby
        # is left to answer again (stopping it would only cost the quorum an answer).
        if not ours and was_primary:
            return Decision(Action.FENCE, f"the server does not answer and epoch {route.epoch} does not make it "
                                          "primary: stopped without asking it")
        return Decision(Action.NOTHING, "the server runs but does not answer; it is not started again")
    if positions is None:
        return _down(route, region, fenced=fenced, disk=disk)
    if ours and positions.in_recovery:
        return Decision(Action.PROMOTE, f"the table names {region} primary in epoch {route.epoch}")
    if not ours and not positions.in_recovery:
        why = "fences the service" if not route.writable else f"names {route.primary} primary"
        return Decision(Action.FENCE, f"a primary the table deposes must acknowledge nothing: epoch {route.epoch} "
                                      f"{why}")
    leader = _leader(route, region)
    if positions.in_recovery and upstream != leader:
        return Decision(Action.FOLLOW, f"epoch {route.epoch} has it stream from {leader or 'nobody'}")
    return Decision(Action.NOTHING, f"the server is already what epoch {route.epoch} asks")


def _down(route: ServiceRoute, region: str, *, fenced: bool, disk: Disk) -> Decision:
    """What a stopped server needs: started, cloned, rejoined, or left down."""
    ours = route.writable and route.primary == region
    leader = _leader(route, region)
    if fenced or (disk.former_primary and not ours):
        # Its data may hold commits the new primary never had: it comes back only as a standby
        # rewound onto the new primary's timeline, never as it was.
        if leader is not None and not ours:
            return Decision(Action.REJOIN, f"a former primary rejoins as {leader}'s standby in epoch {route.epoch}, "
                                           "rewound with pg_rewind")
        return Decision(Action.NOTHING, "fenced: the server stays stopped until it rejoins as a standby")
    if not disk.initialised:
        if ours and route.epoch > FIRST_EPOCH:
            return Decision(Action.NOTHING, f"epoch {route.epoch} names {region} primary but it holds no data: an "
                                            "empty primary is never started; restore it or move the primary")
        if not ours and leader is None:
            return Decision(Action.NOTHING, "no data yet, and nothing to clone from while the service is fenced")
    role = "primary" if ours else "standby"
    return Decision(Action.START, f"the server is down and table epoch {route.epoch} wants it as {role}")


def held(positions: Positions, high_water: tuple[int, int]) -> tuple[Positions, tuple[int, int]]:
    """What a standby holds, never less than it was seen to hold on the same timeline
    (``high_water`` is (timeline, flushed)): a standby restarted reports only what it replayed until
    it streams again, and an under-reported position could let a standby lacking commits be proven
    enough. On another timeline the mark starts again from what it reports: WAL it held past a
    fork is not on the timeline it follows now. Returns the positions to report and the new mark
    (a primary reports its own, and has none)."""
    if not positions.in_recovery:
        return positions, (0, 0)
    timeline, mark = high_water
    mark = max(mark, positions.flushed) if timeline == positions.timeline else positions.flushed
    return replace(positions, flushed=mark, received=max(positions.received, mark)), (positions.timeline, mark)


COPIES_PER_REGION = 2
"""A clone holds two replication connections (the base backup and its WAL stream)."""


def impostors(walsenders: Sequence[Walsender], regions: Sequence[str]) -> list[Walsender]:
    """The replication connections a primary ends (pure): each region's role may stream once
    under its own region's name (the name the ``ANY k`` quorum counts), and copy under its copy
    names; anything else, another region's name, or a repeat, is an impostor holding a stolen
    password, who must neither count twice in the quorum nor fill the walsenders."""
    streaming: set[str] = set()
    copies: dict[str, int] = {}
    ended = []
    for sender in sorted(walsenders, key=lambda w: w.pid):
        region = next((r for r in regions if sender.role == replicator(r)), None)
        if region is not None and sender.name == region and region not in streaming:
            streaming.add(region)
            continue
        if region is not None and sender.name in {copy_name(region, kind) for kind in COPY_NAMES} \
                and copies.get(region, 0) < COPIES_PER_REGION:
            copies[region] = copies.get(region, 0) + 1
            continue
        ended.append(sender)
    return ended


def acknowledged_lsn(flushed_by_standbys: Sequence[int], k: int) -> int:
    """The LSN up to which a primary with ``ANY k`` standbys has acknowledged commits: the
    ``k``-th highest flush position among them (0 when fewer than ``k`` report one)."""
    ordered = sorted(flushed_by_standbys, reverse=True)
    return ordered[k - 1] if k >= 1 and len(ordered) >= k else 0


def instance_state(*, component: str, service: str, region: str, route: ServiceRoute, epoch: int,
                   table_version: int, positions: Positions | None, ack_replicas: int, fenced: bool,
                   compromised: str | None = None) -> InstanceState:
    """The agent's ``GET /state`` in the workload contract's terms. ``epoch`` is the one the agent
    has enacted (its server is what that table asks), not merely adopted: a controller counts a
    standby's position for a promotion only once it streams from nobody in the fenced epoch."""
    if fenced or positions is None:
        role = InstanceRole.FENCED if fenced else InstanceRole.DETACHED
    else:
        role = InstanceRole.STANDBY if positions.in_recovery else InstanceRole.PRIMARY
    flushed = min(positions.flushed, MAX_COUNTER) if positions else -1
    senders = positions.walsenders if positions and not positions.in_recovery else ()
    acked = acknowledged_lsn([w.flushed for w in senders], ack_replicas) if ack_replicas else flushed
    standbys = {w.name: StandbyProgress(matched=min(w.flushed, MAX_COUNTER), reachable=True)
                for w in senders if w.name in route.regions and w.name != region}
    return InstanceState(component=component, service=service, region=region, role=role, epoch=epoch,
                         mode=route.mode, primary=route.primary, table_version=table_version,
                         log_position=flushed, chain_head=f"timeline {positions.timeline}" if positions else "",
                         acked_position=min(max(acked, 0), MAX_COUNTER), ack_replicas=ack_replicas,
                         compromised=compromised, standbys=standbys)

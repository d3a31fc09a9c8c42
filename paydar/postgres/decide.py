"""What a PostgreSQL agent does with the signed table in force, and what it reports: pure.

The agent beside each server obeys only the certified routing table (it is not built yet; these
are its decisions). :func:`next_action` compares the route with what the server says of itself
and returns an :class:`Action` with its reason:

- the table names this region primary and writable, and the server is a standby: **promote** it;
- the table names another primary, or fences the service, and the server is a primary:
  **fence** it at once (stop the server), because a deposed primary must acknowledge nothing,
  not only after a timeout;
- the server is down and the table still wants it: **start** it (a primary only while the
  table names it, a standby otherwise); a server it fenced stays down until it rejoins;
- anything else: nothing.

:func:`instance_state` renders the workload contract's ``/state`` from the server's positions:
the flushed LSN is the log position a promotion proof compares (a quorum commit is acknowledged
once ``k`` standbys have flushed it), and a primary's acknowledged position is the LSN its
``k``-th most advanced synchronous standby has flushed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from paydar.model.routing import ServiceRoute
from paydar.model.wire import MAX_COUNTER
from paydar.postgres.replication import Positions
from paydar.workload.contract import InstanceRole, InstanceState

__all__ = ["Action", "Decision", "acknowledged_lsn", "instance_state", "next_action"]


class Action(StrEnum):
    NOTHING = "nothing"
    START = "start"
    PROMOTE = "promote"
    FENCE = "fence"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def next_action(route: ServiceRoute, region: str, positions: Positions | None, *, fenced: bool = False,
                running: bool | None = None) -> Decision:
    """What the agent in ``region`` does now. ``positions`` is None when its server does not
    answer; ``running`` says whether its process is alive (default: it is when it answers), and
    ``fenced`` that the agent stopped it as a deposed primary."""
    ours = route.writable and route.primary == region
    running = positions is not None if running is None else running
    if running and positions is None:
        # Alive but not answering (its connection slots held by a flood, say): never a reason to
        # start a second one, and no reason to keep a server the table deposed.
        if not ours:
            return Decision(Action.FENCE, f"the server does not answer and epoch {route.epoch} does not make it "
                                          "primary: stopped without asking it")
        return Decision(Action.NOTHING, "the server runs but does not answer; it is not started again")
    if fenced:
        # Its data may hold commits the new primary never had: it comes back only as a standby
        # rejoined with pg_rewind, never as it was.
        return Decision(Action.NOTHING, "fenced: the server stays stopped until it rejoins as a standby")
    if positions is None:
        role = "primary" if ours else "standby"
        return Decision(Action.START, f"the server is down and table epoch {route.epoch} wants it as {role}")
    if ours and positions.in_recovery:
        return Decision(Action.PROMOTE, f"the table names {region} primary in epoch {route.epoch}")
    if not ours and not positions.in_recovery:
        why = "fences the service" if not route.writable else f"names {route.primary} primary"
        return Decision(Action.FENCE, f"a primary the table deposes must acknowledge nothing: epoch {route.epoch} "
                                      f"{why}")
    return Decision(Action.NOTHING, f"the server is already what epoch {route.epoch} asks")


def acknowledged_lsn(flushed_by_standbys: Sequence[int], k: int) -> int:
    """The LSN up to which a primary with ``ANY k`` standbys has acknowledged commits: the
    ``k``-th highest flush position among them (0 when fewer than ``k`` report one)."""
    ordered = sorted(flushed_by_standbys, reverse=True)
    return ordered[k - 1] if k >= 1 and len(ordered) >= k else 0


def instance_state(*, component: str, service: str, region: str, route: ServiceRoute, table_version: int,
                   positions: Positions | None, acked: int, ack_replicas: int, fenced: bool) -> InstanceState:
    """The agent's ``GET /state`` in the workload contract's terms."""
    if fenced or positions is None:
        role = InstanceRole.FENCED if fenced else InstanceRole.DETACHED
    else:
        role = InstanceRole.STANDBY if positions.in_recovery else InstanceRole.PRIMARY
    flushed = min(positions.flushed, MAX_COUNTER) if positions else -1
    return InstanceState(component=component, service=service, region=region, role=role, epoch=route.epoch,
                         mode=route.mode, primary=route.primary, table_version=table_version,
                         log_position=flushed, chain_head=f"timeline {positions.timeline}" if positions else "",
                         acked_position=min(acked, MAX_COUNTER), ack_replicas=ack_replicas)

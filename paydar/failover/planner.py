"""The next routing table, computed deterministically from a controller's view.

Pure: the same table, judgement, operator overrides and replica positions give the same
routes on every honest controller, which is what lets a peer co-sign a proposal only when it
agrees. Each service moves in two certified steps, so no acknowledged write is ever lost:

1. **fence**: its primary is judged down (or drained, fenced or moved by an operator): the
   service becomes read-only in epoch + 1 with every region kept as standby. Standbys in the
   new epoch refuse the old primary's replication, so it can acknowledge nothing more.
2. **promote**: once the replicas that adopted the fenced epoch prove a candidate holds every
   acknowledged write (:func:`paydar.failover.promotion.check_promotion`), it becomes primary in
   epoch + 1 again. When that cannot be proven the service stays read-only. For PostgreSQL the
   proof comes from the standbys' flushed LSNs alone (a stopped primary cannot report what was
   acknowledged), and the fenced primary is never a candidate.

An http service (an agency's own app, whose state Paydar does not hold) moves in one step:
its route lists the instances that may serve, those not judged down, drained or fenced, in
the topology's order, with the primary (the active instance when active-passive) kept while
it is usable; **reroute** bumps the epoch. With no usable instance the route stands (fail
static: never zero regions, and a majority of probers that sees nothing healthy may be the
one partitioned).

Safety rules: a service is never routed to zero regions (fenced regions stay standbys); a
service is fenced only when another region could take over; at most ``cap`` services are
fenced or rerouted in one table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field

from paydar.failover.promotion import ReplicaView, check_promotion, standbys_prove
from paydar.model.ids import node_id
from paydar.model.routing import RouteMode, RoutingTable, ServiceRoute
from paydar.model.topology import NationalTopology, WorkloadKind

__all__ = ["Change", "Overrides", "ReplicaState", "fenced_views", "instance_route", "plan"]


@dataclass(frozen=True)
class Overrides:
    """Operator intents, applied through the same signed path as automatic decisions."""

    drained: frozenset[str] = frozenset()
    fenced: frozenset[tuple[str, str]] = frozenset()
    moves: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplicaState:
    """What a replica said about itself when asked directly (None: it did not answer)."""

    epoch: int
    log_position: int
    acked_position: int
    compromised: bool


@dataclass(frozen=True)
class Change:
    service: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.service}: {self.detail}"


def fenced_views(states: Mapping[str, ReplicaState | None], epoch: int) -> dict[str, ReplicaView]:
    """Replica views for a promotion check: only replicas in the fenced epoch count as answers.

    A replica still in an older epoch might be taking writes from the deposed primary, so its
    position proves nothing.
    """
    return {region: ReplicaView(reachable=True, log_position=s.log_position, acked_position=s.acked_position,
                                compromised=s.compromised)
            if s is not None and s.epoch == epoch else ReplicaView(reachable=False)
            for region, s in states.items()}


def instance_route(route: ServiceRoute, regions: tuple[str, ...], usable: Callable[[str | None], bool],
                   move: str | None) -> ServiceRoute | None:
    """An http service's next route, or None when it stands: the usable instances in topology
    order, the primary kept while usable (or moved where an operator asked)."""
    serving = [r for r in regions if usable(r)]
    if not serving:
        return None
    primary = move if move in serving else route.primary if route.primary in serving else serving[0]
    assert primary is not None
    wanted = ServiceRoute(primary=primary, standbys=tuple(r for r in serving if r != primary), epoch=route.epoch)
    if wanted == route:
        return None
    return wanted.model_copy(update={"epoch": route.epoch + 1})


def plan(table: RoutingTable, topology: NationalTopology, *, down: Set[str], overrides: Overrides,
         views: Mapping[str, Mapping[str, ReplicaView]], cap: int) -> tuple[dict[str, ServiceRoute], list[Change]]:
    """The routes of the next table and the changes from ``table`` (empty: nothing to do).

    ``down`` holds node ids judged down; ``views`` holds, for read-only services, the
    replicas' positions as :func:`fenced_views` reports them.
    """
    routes = dict(table.services)
    changes: list[Change] = []
    fences = 0
    for spec in topology.services:
        sid = spec.id
        route = table.services.get(sid)
        if route is None:
            continue

        def usable(region: str | None, sid: str = sid) -> bool:
            return (region is not None and node_id(sid, region) not in down
                    and region not in overrides.drained and (sid, region) not in overrides.fenced)

        move = overrides.moves.get(sid)
        if spec.workload is WorkloadKind.HTTP:
            rerouted = instance_route(route, spec.regions, usable, move)
            if rerouted is not None and fences < cap:
                fences += 1
                routes[sid] = rerouted
                left = sorted(set(route.regions) - set(rerouted.regions))
                back = sorted(set(rerouted.regions) - set(route.regions))
                changes.append(Change(sid, "reroute", f"instances {', '.join(rerouted.regions)}, active "
                                      f"{rerouted.primary} in epoch {rerouted.epoch}"
                                      + (f"; out: {', '.join(left)}" if left else "")
                                      + (f"; back: {', '.join(back)}" if back else "")))
            continue
        if route.writable:
            primary = route.primary
            leaving = not usable(primary) or (move is not None and move != primary and usable(move))
            elsewhere = any(usable(r) for r in spec.regions if r != primary)
            if leaving and elsewhere and fences < cap:
                fences += 1
                routes[sid] = ServiceRoute(primary=None, standbys=spec.regions, epoch=route.epoch + 1,
                                           mode=RouteMode.READ_ONLY, fenced=primary)
                why = f"operator moves it to {move}" if usable(primary) else f"{primary} is down or drained"
                changes.append(Change(sid, "fence", f"{why}; read-only in epoch {route.epoch + 1}"))
            continue
        service_views = views.get(sid)
        if service_views is None:
            continue
        if move is not None and service_views.get(move, ReplicaView(False)).reachable:
            candidates = [move] + ([route.fenced] if route.fenced not in (None, move) else [])
        else:
            candidates = list(spec.regions)
        if spec.workload is WorkloadKind.POSTGRES:
            service_views = standbys_prove(service_views, route.fenced)
        # Candidates are ranked by the replicas' own answers (and operator intents): after fencing
        # those answers are the same for every controller, so honest controllers pick the same one.
        # A candidate this controller still judges down is passed over: promoted, it would be
        # fenced again at the next round, and a second fault meanwhile leaves no primary at all.
        for candidate in (c for c in candidates if usable(c)):
            check = check_promotion(candidate, service_views, primary=route.fenced,
                                    sync_replicas=spec.ack_replicas)
            if check.safe:
                routes[sid] = ServiceRoute(primary=candidate, standbys=tuple(r for r in spec.regions if r != candidate),
                                           epoch=route.epoch + 1)
                changes.append(Change(sid, "promote", f"{candidate} primary in epoch {route.epoch + 1} ({check})"))
                break
    return routes, changes

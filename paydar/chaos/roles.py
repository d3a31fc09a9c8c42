"""Which part of *this* topology an experiment attacks, chosen by role, never by name.

The catalog runs against any national topology, so an experiment names its targets by what
they are: the service with the most replicas, the region holding the most primaries, the
region whose gateway the others can do without. Each experiment asks for them through a
Chaos Toolkit dynamic configuration entry (a probe calling :func:`choose`), and refers to
them as ``${target_service}``; ``chaos run --var target_service=ID`` overrides the choice.
Ties go to the topology's own order, so a choice is the same on every run.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

from paydar.chaos.target import ActivityFailed, Configuration, Secrets, realization
from paydar.model.routing import RoutingTable
from paydar.model.topology import NationalTopology
from paydar.ops.failover import current_table

__all__ = ["Role", "attackable_apps", "choose", "pick"]


class Role(StrEnum):
    """What an experiment may ask :func:`choose` for."""

    MOST_REPLICATED_SERVICE = "most-replicated-service"
    """The registry service hosted in the most regions: the one whose failover has the most to prove."""
    REGION_WITH_MOST_PRIMARIES = "region-with-most-primaries"
    """The region whose loss moves the most primaries."""
    QUIETEST_REGION = "quietest-region"
    """The region holding the fewest primaries: its gateway's loss leaves the others serving."""
    PRIMARY_REGION_OF_MOST_REPLICATED = "primary-region-of-most-replicated-service"
    """Where the most replicated service's primary is now."""
    MOST_REPLICATED_HTTP_SERVICE = "most-replicated-http-service"
    """The agency app (``workload: http``, instances ``paydar up`` runs) with the most instances."""
    MOST_REPLICATED_POSTGRES_SERVICE = "most-replicated-postgres-service"
    """The agency database (``workload: postgres``) with the most servers."""


def attackable_apps(topology: NationalTopology) -> list[str]:
    """The http services whose every instance ``paydar up`` supervises, in topology order: the
    app experiments' targets (an instance given by URL is not Paydar's to crash)."""
    return [sid for sid, http in topology.http_services.items()
            if all(instance.command is not None for instance in http.instances.values())]


def pick(role: Role, topology: NationalTopology, table: RoutingTable) -> str:
    """The service id or region name ``role`` names in this topology, under ``table``."""
    if len(topology.region_names) < 2:
        raise ActivityFailed("a drill needs at least two regions: with one, any fault is a national outage")
    order = {name: n for n, name in enumerate(topology.region_names)}
    primaries = Counter(route.primary for route in table.services.values() if route.primary)
    # The registry experiments attack Paydar's own nodes: an agency app has none of their data.
    registry = topology.registry_services
    if not registry and role in (Role.MOST_REPLICATED_SERVICE, Role.PRIMARY_REGION_OF_MOST_REPLICATED):
        raise ActivityFailed("this topology has no registry service for the node experiments to attack")
    most_replicated = max(enumerate(registry), key=lambda e: (len(e[1].regions), -e[0]))[1].id if registry else ""
    if role is Role.MOST_REPLICATED_SERVICE:
        return most_replicated
    if role is Role.MOST_REPLICATED_HTTP_SERVICE:
        apps = attackable_apps(topology)
        if not apps:
            raise ActivityFailed("this topology has no http service whose instances paydar up runs; the app "
                                 "experiments are only planned for one that has")
        return max(apps, key=lambda sid: (len(topology.service(sid).regions), -apps.index(sid)))
    if role is Role.MOST_REPLICATED_POSTGRES_SERVICE:
        databases = topology.postgres_services
        if not databases:
            raise ActivityFailed("this topology has no postgres service; the database experiments are only planned "
                                 "for one that has")
        return max(enumerate(databases), key=lambda e: (len(e[1].regions), -e[0]))[1].id
    if role is Role.REGION_WITH_MOST_PRIMARIES:
        return max(topology.region_names, key=lambda r: (primaries[r], -order[r]))
    if role is Role.QUIETEST_REGION:
        return min(topology.region_names, key=lambda r: (primaries[r], order[r]))
    primary = table.route(most_replicated).primary
    if primary is None:
        raise ActivityFailed(f"service {most_replicated} has no primary now (read-only); wait for a promotion")
    return primary


def choose(role: str, configuration: Configuration = None, secrets: Secrets = None) -> str:
    """Chaos Toolkit dynamic configuration: the target ``role`` names in the running system."""
    try:
        wanted = Role(role)
    except ValueError:
        raise ActivityFailed(f"unknown role {role!r}; use one of: {', '.join(r.value for r in Role)}") from None
    system = realization(configuration)
    return pick(wanted, system.topology, current_table(system).table)

"""What losing one region, or one replica, does to each service, from its settings alone (N-1).

A primary acknowledges a write once ``ack_replicas`` standbys hold it (``sync_replicas``, and
with the primary a majority of the service's replicas: see
:attr:`~paydar.model.topology.Service.ack_replicas`). Losing a region takes one replica away;
if the primary and ``ack_replicas`` standbys no longer fit in what is left, that service stops
acknowledging writes until the region returns: no failover can fix arithmetic. Reads survive:
validation refuses a service hosted in one region only, so a replica is always left to read.

The same arithmetic explains a drill: :func:`replicas_lost` says which replica a fault takes
from which service, and :func:`cause` says in words why that stops its writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from paydar.model.ids import ComponentId, Kind
from paydar.model.topology import Limit, NationalTopology, Service

__all__ = ["Finding", "cause", "n_minus_one", "replicas_lost"]


@dataclass(frozen=True)
class Finding:
    """One service's N-1 limit, with the numbers and the fix; ``accepted`` when ``accepts:`` states it."""

    service: str
    limit: Limit
    message: str
    fix: str
    accepted: bool = False

    def as_dict(self) -> dict[str, str | bool]:
        """The finding as JSON-ready fields."""
        return {key: value if isinstance(value, bool) else str(value) for key, value in asdict(self).items()}


def _regions_needed(service: Service) -> int:
    """The fewest regions with which this ``sync_replicas`` still acknowledges after losing one."""
    n = max(3, service.sync_replicas + 2)
    while max(service.sync_replicas, n // 2) > n - 2:
        n += 1
    return n


def n_minus_one(topology: NationalTopology) -> list[Finding]:
    """Every service that cannot acknowledge writes after losing any one region."""
    found: list[Finding] = []
    for service in topology.services:
        if service.writes_survive_region_loss:
            continue
        replicas, needed = len(service.regions), service.ack_replicas
        fix = f"host it in {_regions_needed(service)} regions"
        if service.sync_replicas > 1 and replicas >= 3:
            fix += f", or lower sync_replicas to {max(1, replicas - 2)}"
        fix += f", or state it openly with accepts: [{Limit.READ_ONLY_AFTER_REGION_LOSS.value}]"
        found.append(Finding(
            service.id, Limit.READ_ONLY_AFTER_REGION_LOSS,
            f"service {service.id} acknowledges a write once {needed} standby(s) hold it (sync_replicas "
            f"{service.sync_replicas}, {replicas} regions); after losing any one region only "
            f"{max(replicas - 2, 0)} standby(s) remain beside the primary: its writes stop until that region returns",
            fix, accepted=Limit.READ_ONLY_AFTER_REGION_LOSS in service.accepts))
    return found


def replicas_lost(topology: NationalTopology, component: str,
                  primaries: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """Per service, the region whose replica losing ``component`` takes from it.

    A region (``region.<name>``) takes every replica it hosts; a node its own; a link
    (``link.<source>.<target>``, which carries a primary's replication into ``target``) cuts
    ``target``'s replica off from every service whose primary is in ``source`` (per
    ``primaries``, service -> region, when the fault was injected; without them, from every
    service hosted in both). Any other component holds no replica.
    """
    kind, _, rest = component.partition(".")
    if kind == "region":
        return {s.id: rest for s in topology.services_in(rest)}
    try:
        parsed = ComponentId.parse(component)
    except ValueError:
        return {}
    if parsed.kind is Kind.NODE and parsed.service and parsed.region:
        return {parsed.service: parsed.region}
    if parsed.kind is Kind.LINK and parsed.region and parsed.target:
        return {s.id: parsed.target for s in topology.services
                if parsed.region in s.regions and parsed.target in s.regions
                and (primaries is None or primaries.get(s.id) == parsed.region)}
    return {}


def cause(service: Service, region: str) -> str:
    """Why losing ``region``'s replica stops ``service``'s writes, in one sentence ("" when it does not)."""
    if service.writes_survive_region_loss:
        return ""
    left = max(len(service.regions) - 2, 0)
    return (f"{service.id} needs {service.ack_replicas} synchronous standby(s); after losing {region} only {left} "
            f"remain(s): writes stop until {region} returns")

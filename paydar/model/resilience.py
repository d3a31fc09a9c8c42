"""What losing any one region does to each service, from its settings alone (N-1 analysis).

A primary acknowledges a write once ``ack_replicas`` standbys hold it (``sync_replicas``, and
with the primary a majority of the service's replicas: see
:attr:`~paydar.model.topology.Service.ack_replicas`). Losing a region takes one replica away;
if the primary and ``ack_replicas`` standbys no longer fit in what is left, that service stops
acknowledging writes until the region returns: no failover can fix arithmetic. A service keeps
serving reads while one replica is left.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

from paydar.model.topology import NationalTopology, Service

__all__ = ["Finding", "Limit", "n_minus_one"]


class Limit(StrEnum):
    """What a service cannot do after losing one region."""

    WRITES_STOP = "writes-stop-after-region-loss"
    READS_STOP = "reads-stop-after-region-loss"


@dataclass(frozen=True)
class Finding:
    """One service's N-1 limit, with the numbers and the fix."""

    service: str
    limit: Limit
    message: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        """The finding as JSON-ready fields."""
        return {key: str(value) for key, value in asdict(self).items()}


def _regions_needed(service: Service) -> int:
    """The fewest regions with which this ``sync_replicas`` still acknowledges after losing one."""
    n = max(3, service.sync_replicas + 2)
    while max(service.sync_replicas, n // 2) > n - 2:
        n += 1
    return n


def n_minus_one(topology: NationalTopology) -> list[Finding]:
    """Every service that cannot acknowledge writes, or serve reads, after losing any one region."""
    found: list[Finding] = []
    for service in topology.services:
        replicas = len(service.regions)
        needed = service.ack_replicas
        left = replicas - 2  # standbys beside a primary, one region lost
        if replicas < 2:
            found.append(Finding(service.id, Limit.READS_STOP,
                                 f"service {service.id} has its only replica in {service.regions[0]}: losing that "
                                 "region takes it down entirely",
                                 "host it in at least three regions"))
            continue
        if needed > left and service.sync_replicas > 0:
            fix = f"host it in {_regions_needed(service)} regions"
            if service.sync_replicas > 1 and replicas >= 3:
                fix += f", or lower sync_replicas to {max(1, replicas - 2)}"
            found.append(Finding(
                service.id, Limit.WRITES_STOP,
                f"service {service.id} acknowledges a write once {needed} standbys hold it (sync_replicas "
                f"{service.sync_replicas}, {replicas} regions); after losing any one region only "
                f"{max(left, 0)} standby(s) remain beside the primary: its writes stop until that region returns",
                fix))
    return found

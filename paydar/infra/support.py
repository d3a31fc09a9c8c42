"""What the realizers can run, checked before anything is created.

The local realization runs the registry and http workloads; ``workload: postgres`` validates but
does not run yet. The production program renders the registry workload only. Each refuses
what it cannot realize, naming the services, instead of half realizing a topology.
"""

from __future__ import annotations

from paydar.model.errors import BadInput
from paydar.model.topology import NationalTopology, WorkloadKind

__all__ = ["require_renderable", "require_runnable_locally"]


def _shown(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def require_runnable_locally(topology: NationalTopology) -> None:
    """Raise :class:`BadInput` naming every service whose workload ``paydar up`` cannot run yet."""
    waiting = [s.id for s in topology.services if s.workload is WorkloadKind.POSTGRES]
    if waiting:
        raise BadInput(f"service(s) {_shown(waiting)} use workload: postgres, which this version validates but "
                       "cannot run yet (its servers run, its agent does not); keep them in a separate file for now")


def require_renderable(topology: NationalTopology) -> None:
    """Raise :class:`BadInput` naming every service whose workload the production program cannot render."""
    unsupported = [s.id for s in topology.services if s.workload is not WorkloadKind.REGISTRY]
    if unsupported:
        kinds = sorted({s.workload.value for s in topology.services if s.id in unsupported})
        raise BadInput(f"service(s) {_shown(unsupported)} use workload: {' and '.join(kinds)}, which the production "
                       "program does not render yet (http runs locally, with paydar up and paydar drill); plan a "
                       "topology without them for now")

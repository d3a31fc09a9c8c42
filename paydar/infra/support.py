"""What the realizers can run, checked before anything is created.

The local realization runs every workload. The production program renders the registry workload only. Each refuses
what it cannot realize, naming the services, instead of half realizing a topology.
"""

from __future__ import annotations

from paydar.model.errors import BadInput
from paydar.model.topology import NationalTopology, WorkloadKind

__all__ = ["require_renderable", "require_runnable_locally"]


def _shown(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def require_runnable_locally(topology: NationalTopology, *, root: bool) -> None:
    """Raise :class:`BadInput` when ``paydar up`` cannot run ``topology`` here: agency processes
    (app instances by command, PostgreSQL servers) run jailed, each as its own uid, which needs root."""
    jailed = [s.id for s in topology.postgres_services]
    jailed += [sid for sid, http in topology.http_services.items()
               if any(i.command is not None for i in http.instances.values())]
    if jailed and not root:
        raise BadInput(f"service(s) {_shown(jailed)} run agency processes (app instances or PostgreSQL servers), "
                       "which paydar up runs jailed, each as its own uid with Paydar's keys out of reach; that needs "
                       "root: run it as root, or give app instances by url")


def require_renderable(topology: NationalTopology) -> None:
    """Raise :class:`BadInput` naming every service whose workload the production program cannot render."""
    unsupported = [s.id for s in topology.services if s.workload is not WorkloadKind.REGISTRY]
    if unsupported:
        kinds = sorted({s.workload.value for s in topology.services if s.id in unsupported})
        raise BadInput(f"service(s) {_shown(unsupported)} use workload: {' and '.join(kinds)}, which the production "
                       "program does not render yet (http runs locally, with paydar up and paydar drill); plan a "
                       "topology without them for now")

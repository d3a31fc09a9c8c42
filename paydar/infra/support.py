"""What the realizers can run, checked before anything is created.

The local realization runs every workload. The production program renders the registry
workload only: a ``workload: http`` service validates and runs locally, but its Deployments
are not rendered yet, so ``paydar plan`` and the program refuse it, naming it, instead of
deploying a topology they would only half realize.
"""

from __future__ import annotations

from paydar.model.errors import BadInput
from paydar.model.topology import NationalTopology, WorkloadKind

__all__ = ["require_renderable"]


def require_renderable(topology: NationalTopology) -> None:
    """Raise :class:`BadInput` naming every service whose workload the production program cannot render."""
    unsupported = [s.id for s in topology.services if s.workload is not WorkloadKind.REGISTRY]
    if unsupported:
        shown = ", ".join(unsupported[:5]) + (f" and {len(unsupported) - 5} more" if len(unsupported) > 5 else "")
        raise BadInput(f"service(s) {shown} use workload: http, which runs locally (paydar up, paydar drill) but "
                       "which the production program does not render yet; plan a topology without them for now")

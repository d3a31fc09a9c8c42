"""What the realizers can run, checked before anything is created.

This version runs the registry workload. A ``workload: http`` service validates (so a catalog
can be written and reviewed now) but has no gateway path, instance probes or supervision yet:
``paydar up`` and ``paydar plan`` refuse it, naming it, instead of running a topology they
would only half realize.
"""

from __future__ import annotations

from paydar.model.errors import BadInput
from paydar.model.topology import NationalTopology, WorkloadKind

__all__ = ["require_runnable"]


def require_runnable(topology: NationalTopology) -> None:
    """Raise :class:`BadInput` naming every service whose workload this version cannot run."""
    unsupported = [s.id for s in topology.services if s.workload is not WorkloadKind.REGISTRY]
    if unsupported:
        shown = ", ".join(unsupported[:5]) + (f" and {len(unsupported) - 5} more" if len(unsupported) > 5 else "")
        raise BadInput(f"service(s) {shown} use workload: http, which this version of Paydar validates but cannot "
                       "run yet (no gateway path, instance probes or supervision for it); keep them in a separate "
                       "file for now, or use workload: registry")

"""Paydar's Chaos Toolkit extension: attacks (``paydar.chaos.actions``, full compromise in
``paydar.chaos.compromise``) and citizen probes (``paydar.chaos.probes``).

Experiments in ``chaos/experiments/`` use them by module path; ``chaos discover paydar``
style tooling lists them through :func:`discover`. The invariant checkers and the
concurrent writers the tests use live here too.
"""

from __future__ import annotations

from typing import Any

__all__ = ["discover"]
__version__ = "0.1.0"


def discover(discover_system: bool = True) -> dict[str, Any]:
    """Chaos Toolkit discovery: every action and probe this extension exports."""
    from chaoslib.discovery import (
        discover_actions,
        discover_probes,
        initialize_discovery_result,
    )

    discovery = initialize_discovery_result("paydar", __version__, "paydar")
    discovery["activities"].extend(discover_actions("paydar.chaos.actions"))
    discovery["activities"].extend(discover_actions("paydar.chaos.compromise"))
    discovery["activities"].extend(discover_probes("paydar.chaos.probes"))
    return dict(discovery)

"""Paydar's Chaos Toolkit extension: attacks (``chaos.actions``, full compromise in
``chaos.compromise``) and citizen probes (``chaos.probes``).

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
    from chaoslib.discovery import discover_actions, discover_probes, initialize_discovery_result

    discovery = initialize_discovery_result("paydar", __version__, "paydar")
    discovery["activities"].extend(discover_actions("chaos.actions"))
    discovery["activities"].extend(discover_actions("chaos.compromise"))
    discovery["activities"].extend(discover_probes("chaos.probes"))
    return discovery

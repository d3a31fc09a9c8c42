"""Paydar: keep government digital services running while they are under cyberattack.

The one import root: every part is a sub-package (``paydar.node``, ``paydar.infra.local``, ...).
"""

from typing import Any

__all__ = ["discover"]


def discover(discover_system: bool = True) -> dict[str, Any]:
    """Chaos Toolkit's entry to this extension: ``chaos discover paydar --no-install``.

    chaoslib imports the distribution's one top-level module and calls its ``discover``; the
    activities themselves live in :mod:`paydar.chaos`, imported only when asked.
    """
    from paydar.chaos import discover as discover_activities

    return discover_activities(discover_system)

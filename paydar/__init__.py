"""Paydar: keep government digital services running while they are under cyberattack.

Each top-level folder of the checkout is a sub-package of this one (``paydar.node`` is
``node/``; see ``package-dir`` in pyproject.toml). Imported from inside a checkout (the
checkout on ``sys.path``, as under pytest), this folder alone would hide those sub-packages,
so the package also spans the installed tree, the standard library's way.
"""

from pkgutil import extend_path
from typing import Any

__path__ = extend_path(__path__, __name__)
__all__ = ["discover"]


def discover(discover_system: bool = True) -> dict[str, Any]:
    """Chaos Toolkit's entry to this extension: ``chaos discover paydar --no-install``.

    chaoslib imports the distribution's one top-level module and calls its ``discover``; the
    activities themselves live in :mod:`paydar.chaos`, imported only when asked.
    """
    from paydar.chaos import discover as discover_activities

    return discover_activities(discover_system)

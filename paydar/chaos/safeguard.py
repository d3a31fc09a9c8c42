"""The drill's safeguard: abort a cell whose fault keeps citizens unserved for too long.

A drill runs against a national topology that may carry real load; a fault that takes more
than planned must not be held to the end of the slowest RTO. While a cell waits for citizens
to be served again, every measurement of availability through the unaffected regions goes to
:meth:`Safeguard.observe`; once it has stayed below ``floor`` for longer than ``seconds`` the
cell is aborted (its rollbacks still run) and reported as such. However high the floor holds, no
cell waits longer than ``max_wait`` for citizens to be served again: a tier-3 service declaring
``rto: 4h`` does not hold a drill for four hours. The drill sets them from ``--floor``,
``--floor-for`` and ``--max-wait``; a plain ``chaos run`` reads them from the experiment's
configuration (``paydar_floor``, ``paydar_floor_seconds``, ``paydar_max_wait``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_FLOOR", "DEFAULT_SECONDS", "Safeguard"]

DEFAULT_FLOOR = 0.5
DEFAULT_SECONDS = 20.0
DEFAULT_MAX_WAIT = 600.0


@dataclass
class Safeguard:
    """Availability must not stay below ``floor`` for longer than ``seconds``."""

    floor: float = DEFAULT_FLOOR
    seconds: float = DEFAULT_SECONDS
    max_wait: float = DEFAULT_MAX_WAIT
    """The longest a cell waits for citizens to be served again, whatever the RTOs."""
    below_since: float | None = None

    @classmethod
    def of(cls, configuration: Mapping[str, Any] | None) -> Safeguard:
        """The safeguard an experiment's configuration asks for (the defaults otherwise)."""
        given = configuration or {}
        return cls(float(given.get("paydar_floor", DEFAULT_FLOOR)),
                   float(given.get("paydar_floor_seconds", DEFAULT_SECONDS)),
                   float(given.get("paydar_max_wait", DEFAULT_MAX_WAIT)))

    def observe(self, share: float, now: float) -> str:
        """Record one measurement; the reason to abort ("" while the floor holds)."""
        if share >= self.floor:
            self.below_since = None
            return ""
        self.below_since = now if self.below_since is None else self.below_since
        below = now - self.below_since
        if below <= self.seconds:
            return ""
        return (f"availability through the unaffected regions stayed below the floor of {self.floor:.0%} for "
                f"{below:.1f}s (allowed {self.seconds:g}s; last {share:.0%}): the cell was aborted and rolled back")

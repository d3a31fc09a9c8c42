"""Upstreams that just timed out: tried last for a while, then with a short timeout.

An upstream that timed out (a hung process, a blackholed link) would make every request wait
the whole timeout before the next path is tried. It is *suspect* for ``SUSPECT_SECONDS``:
tried only after every other path. For ``PROBATION_SECONDS`` afterwards it gets a short
timeout, so a path that is still dead costs one second, and one answer clears it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["PROBATION_SECONDS", "PROBATION_TIMEOUT_SECONDS", "SUSPECT_SECONDS", "Suspects"]

SUSPECT_SECONDS = 10.0
PROBATION_SECONDS = 60.0
PROBATION_TIMEOUT_SECONDS = 1.0
MAX_TRACKED = 10_000
"""Upstream addresses come from the config, so this is never reached; it bounds the map anyway."""


class Suspects:
    """When each upstream (by base URL) last timed out."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._timed_out: dict[str, float] = {}

    def suspect(self, base: str) -> bool:
        """Timed out within ``SUSPECT_SECONDS``: try it after every other path."""
        return self._clock() - self._timed_out.get(base, -1e9) < SUSPECT_SECONDS

    def on_probation(self, base: str) -> bool:
        """Timed out within ``PROBATION_SECONDS``: give it only a short timeout."""
        return self._clock() - self._timed_out.get(base, -1e9) < PROBATION_SECONDS

    def timed_out(self, base: str) -> None:
        if len(self._timed_out) >= MAX_TRACKED:
            self._timed_out.clear()
        self._timed_out[base] = self._clock()

    def answered(self, base: str) -> None:
        self._timed_out.pop(base, None)

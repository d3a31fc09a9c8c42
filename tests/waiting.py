"""Wait on a condition, never on a fixed sleep: every wait has a deadline and says what it saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The awaited condition did not hold before the deadline."""


def wait_until(
    predicate: Callable[[], T | Literal[False] | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Exceptions raised by the predicate count as "not yet" and the last one is reported,
    so a timeout error names what was awaited and what was last seen.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - reported in the timeout message
            last = exc
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)

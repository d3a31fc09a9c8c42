"""What every message between components is made of: strict models and bounded counters.

A compromised sender can put anything in a message. Two kinds of value got past plain
pydantic models and turned bad input into a 500: non-finite numbers (``NaN`` and
``Infinity`` parse, then cannot be signed or stored) and integers beyond 64 bits (SQLite
overflows). Every wire model derives from :class:`WireModel`, which refuses the first, and
every version, epoch and log position is a :data:`Counter`, which refuses the second.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = ["MAX_COUNTER", "Counter", "FiniteJson", "PositiveCounter", "WireModel", "as_counter", "parse_json",
           "require_finite"]

# Exact in every JSON parser (IEEE doubles) and far below SQLite's 2**63: a counter that
# needs more than this was inflated by an attacker, never reached by honest use.
MAX_COUNTER = 2**53 - 1

Counter = Annotated[int, Field(ge=0, le=MAX_COUNTER)]
PositiveCounter = Annotated[int, Field(ge=1, le=MAX_COUNTER)]


class WireModel(BaseModel):
    """Base of every signed or exchanged message: no unknown fields, no NaN or Infinity."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def require_finite(value: Any) -> Any:
    """Return ``value`` unless it holds NaN or an infinity anywhere (raise ``ValueError``).

    ``allow_inf_nan`` covers typed float fields only; free-form JSON (a document's data) is
    walked here, because canonical JSON cannot encode such numbers and storing them as null
    would silently change what the citizen sent. Integers beyond 256 bits are refused too:
    Python will not turn one of thousands of digits back into text.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (NaN and Infinity are not JSON)")
        if isinstance(item, int) and item.bit_length() > 256:
            raise ValueError("integers must fit in 256 bits")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return value


FiniteJson = Annotated[dict[str, Any], AfterValidator(require_finite)]


def as_counter(value: object, *, minimum: int = 0) -> int:
    """An untrusted JSON value as a counter: a whole number from ``minimum`` to :data:`MAX_COUNTER`.

    ``int()`` is not enough on a peer's answer: it raises OverflowError on ``Infinity`` (which
    ``json`` parses), truncates 1.9, and accepts ``true``. Raises ``ValueError`` naming the value.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_COUNTER:
        raise ValueError(f"expected a whole number from {minimum} to {MAX_COUNTER}, got {str(value)[:40]!r}")
    return value


def parse_json(raw: bytes | str) -> Any:
    """``json.loads`` for untrusted bytes: every failure, deep nesting included, is a ``ValueError``."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None

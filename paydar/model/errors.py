"""Exceptions of the model of the system and its identities.

The tree::

    PaydarError                      anything Paydar raises on purpose
    ├── BadInput                     what was asked for does not exist or is malformed
    ├── TopologyError                national.yaml is unreadable or invalid (carries every issue)
    ├── IdentityError                a key or the trust root is missing, unreadable or unsafe
    ├── SignatureError               a signature does not verify
    │   └── ThresholdNotMet          fewer than k valid signatures from distinct keys of a role
    └── TableRejected                a routing table is refused (reason is a TableRejection)

Every message says what went wrong and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PaydarError(Exception):
    """Base of every error Paydar raises on purpose."""


class BadInput(PaydarError):
    """What was asked for does not exist or is malformed: an unknown service, region, stack or
    runbook, a missing input. The command line exits 2 for it, as for bad usage."""


@dataclass(frozen=True)
class Issue:
    """One problem in a declarative input: where (the field, and its line and column in the file
    when known), what, and how to fix it."""

    location: str
    message: str
    hint: str = ""
    line: int | None = None
    column: int | None = None
    kind: str = ""
    """What kind of problem (pydantic's error type for a field), so a reader can add what the file says."""

    @property
    def where(self) -> str:
        """The field, with its line and column when known."""
        return f"{self.location} (line {self.line}, column {self.column})" if self.line else self.location

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class TopologyError(PaydarError):
    """The topology file cannot be used; ``issues`` lists every problem found."""

    def __init__(self, source: str, issues: list[Issue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} problem(s):\n{lines}")


class IdentityError(PaydarError):
    """A key or the trust root is missing, unreadable or has unsafe permissions."""


class SignatureError(PaydarError):
    """A signature is malformed or does not verify."""


class ThresholdNotMet(SignatureError):
    """Fewer than ``required`` valid signatures from distinct trusted keys."""

    def __init__(self, role: str, valid: int, required: int, detail: str = "") -> None:
        self.role = role
        self.valid = valid
        self.required = required
        extra = f"; {detail}" if detail else ""
        super().__init__(
            f"{valid} of {required} required valid {role} signatures{extra}"
        )


class TableRejection(StrEnum):
    """Why a table was refused; stable names that logs, metrics and tests use."""

    MALFORMED = "malformed"
    UNDER_SIGNED = "under-signed"
    NOT_NEWER = "not-newer"
    EXPIRED = "expired"
    UNKNOWN_SERVICE = "unknown-service"
    ZERO_REGIONS = "zero-regions"
    EPOCH_REGRESSION = "epoch-regression"
    EQUIVOCATION = "equivocation"


class TableRejected(PaydarError):
    """A routing table was refused; ``reason`` names the rule, the message has the numbers."""

    def __init__(self, reason: TableRejection, message: str) -> None:
        self.reason = reason
        super().__init__(message)

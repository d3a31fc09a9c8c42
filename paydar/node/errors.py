"""Exceptions of the regional node.

The tree::

    PaydarError (paydar.model.errors)
    └── NodeError
        ├── IntegrityViolation   stored or replicated data does not verify (tampering, ransomware)
        ├── LogMismatch          a replication batch does not continue this node's log
        ├── BatchRefused         a replication batch is malformed or contradicts this log (the sender's fault)
        └── WriteRefused         this node may not accept the write now (status + reason)
"""

from __future__ import annotations

from paydar.model.errors import PaydarError


class NodeError(PaydarError):
    """Base of the node's errors."""


class IntegrityViolation(NodeError):
    """Data at ``position`` does not verify; the node must not serve it."""

    def __init__(self, position: int, reason: str) -> None:
        self.position = position
        self.reason = reason
        super().__init__(f"integrity violation at log position {position}: {reason}")


class LogMismatch(NodeError):
    """The batch's previous entry is not in this log; ``head`` is where this log ends."""

    def __init__(self, head: int) -> None:
        self.head = head
        super().__init__(f"batch does not continue this log (head {head})")


class BatchRefused(NodeError):
    """A primary's batch is refused; ``status`` is the HTTP status to answer with.

    It is the sender's fault, never evidence against this node's own data: a hostile primary
    must not be able to make its standbys believe they are compromised.
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class WriteRefused(NodeError):
    """The write cannot be accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, **extra: object) -> None:
        self.status = status
        self.extra = extra
        super().__init__(message)

"""Invariant checkers over a history of citizen operations (Jepsen-style, offline).

A writer records every write it attempted and whether it was acknowledged; after the fault
and recovery every acknowledged write must be readable with exactly the acknowledged content
(zero acknowledged writes lost, zero corrupted documents served). Each document id is written
once per history, so "the acknowledged content" is unambiguous.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["AckLedger", "Violation", "ViolationKind", "check_acknowledged"]


class ViolationKind(StrEnum):
    LOST = "acknowledged write lost"
    CORRUPTED = "document served with content other than acknowledged"


@dataclass(frozen=True)
class Violation:
    kind: ViolationKind
    service: str
    doc_id: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.service}/{self.doc_id} ({self.detail})"


@dataclass
class AckLedger:
    """Every attempted write, keyed by (service, doc_id), with its acknowledgement."""

    writes: dict[tuple[str, str], tuple[dict[str, Any], bool]] = field(default_factory=dict)

    def record(self, service: str, doc_id: str, document: dict[str, Any], acknowledged: bool) -> None:
        key = (service, doc_id)
        if key in self.writes and self.writes[key][1] and acknowledged:
            raise ValueError(f"document {service}/{doc_id} acknowledged twice; use a fresh id per write")
        if key not in self.writes or acknowledged:
            self.writes[key] = (document, acknowledged)

    def acknowledged(self) -> Iterable[tuple[str, str, dict[str, Any]]]:
        return ((s, d, doc) for (s, d), (doc, ok) in self.writes.items() if ok)

    @property
    def acknowledged_count(self) -> int:
        return sum(1 for _ in self.acknowledged())


def check_acknowledged(ledger: AckLedger,
                       reads: Mapping[tuple[str, str], dict[str, Any] | None]) -> list[Violation]:
    """Compare every acknowledged write with what was read back (None: not found)."""
    violations = []
    for service, doc_id, document in ledger.acknowledged():
        served = reads.get((service, doc_id))
        if served is None:
            violations.append(Violation(ViolationKind.LOST, service, doc_id, "not found"))
            continue
        got = {k: served.get(k) for k in document}
        if got != document:
            violations.append(Violation(ViolationKind.CORRUPTED, service, doc_id, f"served {got!r}"))
    return violations

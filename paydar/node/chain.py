"""The hash-chained log entry: each entry carries the hash of the one before it.

Tampering with any stored entry changes its hash and breaks the link to its successor, so
ransomware-style corruption is detected, and the head hash lets replicas be compared
cheaply at equal positions. The hash covers the service id, so entries cannot be spliced
between services.
"""

from __future__ import annotations

import hashlib

from pydantic import Field

from paydar.model.signing import canonical_json
from paydar.model.wire import MAX_COUNTER, WireModel

__all__ = ["GENESIS_HASH", "Entry", "entry_hash"]

GENESIS_HASH = "0" * 64


def entry_hash(service: str, position: int, epoch: int, doc_id: str, body: str | bytes,
               prev_hash: str, written_ms: int) -> str:
    """SHA-256 over the canonical form of every field of an entry, the body by its own SHA-256.

    Hashing the body's UTF-8 bytes directly, rather than JSON-escaping it into the header,
    keeps whole-chain verification (at start, every integrity check, every restore) close
    to SHA-256 speed: escaping a large body cost three times as much as hashing it.
    """
    body_digest = hashlib.sha256(body.encode("utf-8") if isinstance(body, str) else body).hexdigest()
    material = canonical_json([service, position, epoch, doc_id, body_digest, prev_hash, written_ms])
    return hashlib.sha256(material).hexdigest()


class Entry(WireModel):
    """One write: a whole document version at a log position, in the epoch that wrote it."""

    position: int = Field(ge=1, le=MAX_COUNTER)
    epoch: int = Field(ge=1, le=MAX_COUNTER)
    doc_id: str = Field(max_length=128)
    body: str
    prev_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    written_ms: int = Field(ge=0, le=MAX_COUNTER)

    def expected_hash(self, service: str) -> str:
        return entry_hash(service, self.position, self.epoch, self.doc_id, self.body,
                          self.prev_hash, self.written_ms)

    def intact(self, service: str) -> bool:
        """True when the stored hash matches the entry's content."""
        return self.expected_hash(service) == self.hash

"""Wire models of the node's HTTP API: documents, replication batches and replies."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from paydar.model.routing import SignedTable
from paydar.model.signing import Signature
from paydar.model.wire import Counter, FiniteJson, PositiveCounter, WireModel
from paydar.node.chain import Entry

__all__ = [
    "DOC_ID_PATTERN",
    "DocumentIn",
    "DocumentKind",
    "ReplicationBatch",
    "ReplicationReply",
    "ReplyStatus",
    "SignedBatch",
    "SignedReply",
]

DOC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MAX_BATCH_ENTRIES = 256


class DocumentKind(StrEnum):
    """What a citizen keeps in the digital document wallet."""

    NATIONAL_ID_CARD = "national-id-card"
    BIRTH_CERTIFICATE = "birth-certificate"
    DRIVING_LICENCE = "driving-licence"
    DIPLOMA = "diploma"
    HEALTH_RECORD = "health-record"
    BUSINESS_LICENCE = "business-licence"
    CANARY = "canary"


class DocumentIn(WireModel):
    """Body of ``PUT /v1/documents/{doc_id}``."""

    citizen_id: str = Field(pattern=r"^[0-9]{10}$", description="10-digit national code")
    kind: DocumentKind
    data: FiniteJson = Field(default_factory=dict)


class ReplicationBatch(WireModel):
    """What a primary ships to one standby: entries after ``prev_position``, in its epoch."""

    service: str = Field(max_length=64)
    sender: str = Field(max_length=200)
    epoch: PositiveCounter
    table_version: Counter
    acked_position: Counter
    head_position: Counter
    prev_position: Counter
    prev_hash: str = Field(max_length=64)
    entries: list[Entry] = Field(default_factory=list, max_length=MAX_BATCH_ENTRIES)
    table: SignedTable | None = None


class SignedBatch(WireModel):
    batch: ReplicationBatch
    signature: Signature


class ReplyStatus(StrEnum):
    OK = "ok"
    MISMATCH = "mismatch"
    STALE_EPOCH = "stale-epoch"
    NOT_PRIMARY = "not-primary"
    NEED_TABLE = "need-table"


class ReplicationReply(WireModel):
    """A standby's answer; ``table`` carries its newer table so a deposed primary learns it.

    ``standby`` and ``batch_signature`` (the primary's signature of the batch answered) bind the
    reply to one batch from one standby; ``matched_hash`` is the standby's chain hash at
    ``matched``, so the primary can check the standby holds exactly what it sent.
    """

    status: ReplyStatus
    standby: str = Field(max_length=200)
    batch_signature: str = Field(max_length=200)
    matched: Counter = 0
    matched_hash: str = Field(default="", max_length=64)
    position: Counter
    head_hash: str = Field(max_length=64)
    epoch: Counter
    table_version: Counter
    table: SignedTable | None = None
    detail: str = Field(default="", max_length=500)


class SignedReply(WireModel):
    """A standby's reply as it travels, signed with the standby's key: a link or a port
    squatter cannot make a primary count an acknowledgement that no standby gave."""

    reply: ReplicationReply
    signature: Signature

"""Wire models of the node's HTTP API: documents, replication batches and replies."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infra.routing import SignedTable
from infra.signing import Signature
from node.chain import Entry

__all__ = [
    "DOC_ID_PATTERN",
    "DocumentIn",
    "DocumentKind",
    "NodeRole",
    "ReplicationBatch",
    "ReplicationReply",
    "ReplyStatus",
    "SignedBatch",
]

DOC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MAX_BATCH_ENTRIES = 256


class NodeRole(StrEnum):
    """A node's role; values are never renumbered (they are a Prometheus Enum metric)."""

    PRIMARY = "primary"
    STANDBY = "standby"
    FENCED = "fenced"
    DETACHED = "detached"


class DocumentKind(StrEnum):
    """What a citizen keeps in the digital document wallet."""

    NATIONAL_ID_CARD = "national-id-card"
    BIRTH_CERTIFICATE = "birth-certificate"
    DRIVING_LICENCE = "driving-licence"
    DIPLOMA = "diploma"
    HEALTH_RECORD = "health-record"
    BUSINESS_LICENCE = "business-licence"
    CANARY = "canary"


class DocumentIn(BaseModel):
    """Body of ``PUT /v1/documents/{doc_id}``."""

    model_config = ConfigDict(extra="forbid")

    citizen_id: str = Field(pattern=r"^[0-9]{10}$", description="10-digit national code")
    kind: DocumentKind
    data: dict[str, Any] = Field(default_factory=dict)


class ReplicationBatch(BaseModel):
    """What a primary ships to one standby: entries after ``prev_position``, in its epoch."""

    model_config = ConfigDict(extra="forbid")

    service: str
    sender: str
    epoch: int = Field(ge=1)
    table_version: int
    acked_position: int = Field(ge=0)
    head_position: int = Field(ge=0)
    prev_position: int = Field(ge=0)
    prev_hash: str
    entries: list[Entry] = Field(default_factory=list, max_length=MAX_BATCH_ENTRIES)
    table: SignedTable | None = None


class SignedBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch: ReplicationBatch
    signature: Signature


class ReplyStatus(StrEnum):
    OK = "ok"
    MISMATCH = "mismatch"
    STALE_EPOCH = "stale-epoch"
    NOT_PRIMARY = "not-primary"
    NEED_TABLE = "need-table"


class ReplicationReply(BaseModel):
    """A standby's answer; ``table`` carries its newer table so a deposed primary learns it."""

    model_config = ConfigDict(extra="forbid")

    status: ReplyStatus
    matched: int = 0
    position: int
    head_hash: str
    epoch: int
    table_version: int
    table: SignedTable | None = None
    detail: str = ""

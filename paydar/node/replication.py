"""Both halves of log shipping: the primary's :class:`Replicator` (one per standby) and the
standby's :func:`answer_batch`, over the small :class:`ReplicaNode` protocol a node satisfies.

Each replicator owns one peer: it sends signed batches in order over the peer's link,
tracks how far the peer matches this log, backs off past a divergent tail (the
unacknowledged writes of an older epoch), and sends heartbeats when idle so that a deposed
primary learns of a newer epoch from the standby's reply.

A reply counts only when it proves itself: signed with the standby's own key, bound to the
batch it answers (the primary's signature of that batch), and for an acknowledgement naming a
position this primary sent with the chain hash this primary holds there. A link that rewrites
replies, or a process squatting the standby's port, gets no write acknowledged.

The standby verifies the batch's sender and signature, lets :func:`admit` decide whether it
may apply it (a pure rule with its reason), applies it, and signs its reply over what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from paydar.model.errors import IdentityError, SignatureError, TableRejected
from paydar.model.ids import ComponentId, node_id
from paydar.model.routing import SignedTable
from paydar.model.signing import Signature, verify
from paydar.node.errors import IntegrityViolation, LogMismatch
from paydar.node.models import ReplicationBatch, ReplicationReply, ReplyStatus, SignedBatch, SignedReply
from paydar.server.answers import read_up_to

__all__ = ["Admission", "ReplicaNode", "Replicator", "admit", "answer_batch"]

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 0.5
MAX_BATCH_BYTES = 1_000_000
MAX_REPLY_BYTES = 9 * 1024 * 1024  # a reply may carry the standby's table


class ReplicaNode(Protocol):
    """What replication needs of a node, primary or standby (:class:`~paydar.node.runtime.NodeRuntime`)."""

    @property
    def service(self) -> str: ...
    @property
    def component(self) -> str: ...
    @property
    def replication_timeout(self) -> float: ...
    @property
    def compromised(self) -> str | None: ...
    @property
    def epoch(self) -> int: ...
    @property
    def table_version(self) -> int: ...
    @property
    def table(self) -> SignedTable: ...
    @property
    def primary_region(self) -> str | None: ...
    @property
    def is_primary(self) -> bool: ...

    def key_of(self, component: str) -> tuple[str, Ed25519PublicKey]:
        """The trusted key id and key of ``component``; ``IdentityError`` if it holds none."""
    def sign(self, payload: Any) -> Signature:
        """This node's signature over ``payload``."""
    def may_replicate(self) -> bool:
        """True while this node is an uncompromised primary."""
    async def head_position(self) -> int:
        """The last position of this node's log."""
    async def build_batch(self, start: int, *, include_table: bool, max_bytes: int) -> ReplicationBatch:
        """The entries from ``start`` (bounded), with the chain link before them."""
    async def offer_table(self, signed: SignedTable, *, source: str) -> frozenset[str]:
        """Adopt a newer certified table; ``TableRejected`` otherwise."""
    async def apply_entries(self, batch: ReplicationBatch) -> int:
        """Store the batch's entries; the position now matched; ``LogMismatch`` if the link differs."""
    async def held_at(self, position: int) -> tuple[int, str, str]:
        """(head position, head hash, chain hash at ``position`` or "") of this node's log."""


def _hash_sent(batch: ReplicationBatch, position: int) -> str:
    """The chain hash at ``position`` as this primary sent it in ``batch`` (no database read)."""
    if position == batch.prev_position:
        return batch.prev_hash
    return batch.entries[position - batch.prev_position - 1].hash


class Replicator:
    """Ships this primary's log to the standby in ``region`` at ``url``."""

    def __init__(self, *, node: ReplicaNode, region: str, url: str, session: aiohttp.ClientSession,
                 on_progress: Callable[[], Awaitable[None]]) -> None:
        self.node = node
        self.region = region
        self.url = url.rstrip("/") + "/v1/replicate"
        self.session = session
        self.matched = 0
        self.reachable = False
        self._next: int | None = None
        self._backoff = 1
        self._peer_table_version = 0
        self._wake = asyncio.Event()
        self._on_progress = on_progress
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"replicator-{self.region}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), HEARTBEAT_SECONDS)
            self._wake.clear()
            try:
                await self._ship()
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                if self.reachable:
                    log.warning("standby unreachable peer=%s error=%s", self.region, exc or type(exc).__name__)
                self.reachable = False
            except Exception:  # a bug must not kill replication silently
                log.exception("replication round failed peer=%s", self.region)

    async def _ship(self) -> None:
        """Send batches until the peer matches our head (or a round fails)."""
        for _ in range(1000):  # bounded: a batch per iteration
            if not self.node.may_replicate():
                return
            head = await self.node.head_position()
            start = self._next if self._next is not None else head + 1
            batch = await self.node.build_batch(
                start, include_table=self._peer_table_version < self.node.table_version,
                max_bytes=MAX_BATCH_BYTES)
            reply = await self._send(batch)
            self.reachable = True
            if not await self._handle(batch, reply, head):
                return
            if self.matched >= head and not batch.entries:
                return

    async def _send(self, batch: ReplicationBatch) -> ReplicationReply:
        signed = SignedBatch(batch=batch, signature=self.node.sign(batch.model_dump(mode="json")))
        timeout = aiohttp.ClientTimeout(total=self.node.replication_timeout)
        async with self.session.post(self.url, data=signed.model_dump_json(), timeout=timeout,
                                     headers={"Content-Type": "application/json"}) as response:
            body = await read_up_to(response, MAX_REPLY_BYTES)
            if response.status != 200:
                raise ValueError(f"standby answered {response.status}: {body[:200]!r}")
        return await self._open(SignedReply.model_validate_json(body), batch, signed.signature.sig)

    async def _open(self, signed: SignedReply, batch: ReplicationBatch, batch_signature: str) -> ReplicationReply:
        """The reply, once it proves itself; ``ValueError`` (the standby counts as unreachable) otherwise."""
        reply = signed.reply
        standby = node_id(self.node.service, self.region)
        try:
            kid, key = self.node.key_of(standby)
            if signed.signature.key_id != kid or reply.standby != standby:
                raise SignatureError(f"reply is not signed by {standby}")
            verify(reply.model_dump(mode="json"), signed.signature, key)
        except (SignatureError, IdentityError) as exc:
            raise ValueError(f"untrusted reply: {exc}") from None
        if reply.batch_signature != batch_signature:
            raise ValueError("untrusted reply: it answers another batch")
        if reply.status is ReplyStatus.OK:
            sent = batch.entries[-1].position if batch.entries else batch.prev_position
            if not batch.prev_position <= reply.matched <= sent:
                raise ValueError(f"untrusted reply: matched {reply.matched} outside what was sent")
            if reply.matched_hash != _hash_sent(batch, reply.matched):
                raise ValueError(f"untrusted reply: chain hash at {reply.matched} differs from what was sent")
        return reply

    async def _handle(self, batch: ReplicationBatch, reply: ReplicationReply, head: int) -> bool:
        """Update our view of the peer; True to keep shipping in this round."""
        self._peer_table_version = reply.table_version
        if reply.status is ReplyStatus.OK:
            self.matched = reply.matched
            self._next = reply.matched + 1
            self._backoff = 1
            await self._on_progress()
            return self.matched < head
        if reply.status is ReplyStatus.MISMATCH:
            # Step back past the divergent tail, doubling the step each time.
            base = min(reply.position, head, (self._next or head + 1) - 1)
            self._next = max(1, base - self._backoff + 1)
            self._backoff *= 2
            return True
        if reply.status is ReplyStatus.NEED_TABLE:
            self._peer_table_version = 0
            return True
        # stale-epoch or not-primary: the peer knows a newer table; learn it and stop.
        log.warning("standby refused replication peer=%s status=%s detail=%s",
                    self.region, reply.status, reply.detail)
        if reply.table is not None:
            await self.node.offer_table(reply.table, source=f"standby {self.region}")
        return False


# -- the standby's half ---------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """Whether a verified batch may be applied here: ``status`` OK, or the refusal and its reason."""

    status: ReplyStatus
    reason: str = ""


def admit(batch: ReplicationBatch, *, epoch: int, table_version: int, primary_region: str | None,
          is_primary: bool) -> Admission:
    """The standby's rule for a batch whose signature verified, as a decision with its reason.

    A batch from an older epoch is refused (the reply carries the newer table, so the deposed
    primary steps down); one from a newer epoch asks for the table; one from a node the held
    table does not name as primary, or sent to a primary, is refused.
    """
    sender_region = ComponentId.parse(batch.sender).region
    if batch.epoch < epoch:
        return Admission(ReplyStatus.STALE_EPOCH, f"epoch {batch.epoch} < {epoch}")
    if batch.epoch > epoch:
        return Admission(ReplyStatus.NEED_TABLE, f"epoch {batch.epoch} unknown here")
    if primary_region != sender_region or is_primary:
        return Admission(ReplyStatus.NOT_PRIMARY, f"{sender_region} is not primary in v{table_version}")
    return Admission(ReplyStatus.OK)


async def answer_batch(node: ReplicaNode, signed: SignedBatch) -> SignedReply:
    """Verify and apply a primary's batch and answer with a reply signed by this node.

    Raises ``SignatureError`` when the batch is not signed by a trusted node of this service,
    ``IntegrityViolation`` when this node is compromised (it accepts no replication).
    """
    batch = signed.batch
    if batch.service != node.service or not batch.sender.startswith(f"node.{node.service}."):
        raise SignatureError(f"batch for {batch.service} from {batch.sender} is not for this node's service")
    try:
        kid, public_key = node.key_of(batch.sender)
    except IdentityError:
        raise SignatureError(f"batch from {batch.sender!r}, which holds no trusted node key") from None
    if signed.signature.key_id != kid:
        raise SignatureError(f"batch from {batch.sender} is signed by another key ({signed.signature.key_id})")
    verify(batch.model_dump(mode="json"), signed.signature, public_key)
    if batch.table is not None:
        with contextlib.suppress(TableRejected):
            await node.offer_table(batch.table, source=batch.sender)
    admission = admit(batch, epoch=node.epoch, table_version=node.table_version,
                      primary_region=node.primary_region, is_primary=node.is_primary)
    matched = 0
    status, detail = admission.status, admission.reason
    if status is ReplyStatus.OK:
        if node.compromised:
            raise IntegrityViolation(0, f"node is compromised ({node.compromised}) and accepts no replication")
        try:
            matched = await node.apply_entries(batch)
        except LogMismatch:
            status, detail = ReplyStatus.MISMATCH, "previous entry differs"
    position, head_hash, matched_hash = await node.held_at(matched)
    newer = status in (ReplyStatus.STALE_EPOCH, ReplyStatus.NOT_PRIMARY)
    reply = ReplicationReply(status=status, standby=node.component, batch_signature=signed.signature.sig,
                             matched=matched, matched_hash=matched_hash, position=position, head_hash=head_hash,
                             epoch=node.epoch, table_version=node.table_version,
                             table=node.table if newer else None, detail=detail)
    return SignedReply(reply=reply, signature=node.sign(reply.model_dump(mode="json")))

"""Primary → standby log shipping, one :class:`Replicator` per standby.

Each replicator owns one peer: it sends signed batches in order over the peer's link,
tracks how far the peer matches this log, backs off past a divergent tail (the
unacknowledged writes of an older epoch), and sends heartbeats when idle so that a deposed
primary learns of a newer epoch from the standby's reply.

A reply counts only when it proves itself: signed with the standby's own key, bound to the
batch it answers (the primary's signature of that batch), and for an acknowledgement naming a
position this primary sent with the chain hash this primary holds there. A link that rewrites
replies, or a process squatting the standby's port, gets no write acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp

from paydar.model.errors import IdentityError, SignatureError
from paydar.model.signing import verify
from paydar.node.models import (
    ReplicationBatch,
    ReplicationReply,
    ReplyStatus,
    SignedBatch,
    SignedReply,
)

if TYPE_CHECKING:
    from paydar.node.runtime import NodeRuntime

__all__ = ["Replicator"]

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 0.5
MAX_BATCH_BYTES = 1_000_000
MAX_REPLY_BYTES = 9 * 1024 * 1024  # a reply may carry the standby's table


def _hash_sent(batch: ReplicationBatch, position: int) -> str:
    """The chain hash at ``position`` as this primary sent it in ``batch`` (no database read)."""
    if position == batch.prev_position:
        return batch.prev_hash
    return batch.entries[position - batch.prev_position - 1].hash


class Replicator:
    """Ships this primary's log to the standby in ``region`` at ``url``."""

    def __init__(self, *, runtime: NodeRuntime, region: str, url: str, session: aiohttp.ClientSession,
                 on_progress: Callable[[], Awaitable[None]]) -> None:
        self.runtime = runtime
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
            if not self.runtime.may_replicate():
                return
            head = await self.runtime.head_position()
            start = self._next if self._next is not None else head + 1
            batch = await self.runtime.build_batch(
                start, include_table=self._peer_table_version < self.runtime.table_version,
                max_bytes=MAX_BATCH_BYTES)
            reply = await self._send(batch)
            self.reachable = True
            if not await self._handle(batch, reply, head):
                return
            if self.matched >= head and not batch.entries:
                return

    async def _send(self, batch: ReplicationBatch) -> ReplicationReply:
        signed = SignedBatch(batch=batch, signature=self.runtime.sign(batch.model_dump(mode="json")))
        timeout = aiohttp.ClientTimeout(total=self.runtime.replication_timeout)
        async with self.session.post(self.url, data=signed.model_dump_json(), timeout=timeout,
                                     headers={"Content-Type": "application/json"}) as response:
            body = await response.content.read(MAX_REPLY_BYTES)
            if response.status != 200:
                raise ValueError(f"standby answered {response.status}: {body[:200]!r}")
        return await self._open(SignedReply.model_validate_json(body), batch, signed.signature.sig)

    async def _open(self, signed: SignedReply, batch: ReplicationBatch, batch_signature: str) -> ReplicationReply:
        """The reply, once it proves itself; ``ValueError`` (the standby counts as unreachable) otherwise."""
        reply = signed.reply
        standby = f"node.{self.runtime.service}.{self.region}"
        try:
            kid, key = self.runtime.f.trust.key_of(standby)
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
            await self.runtime.offer_table(reply.table, source=f"standby {self.region}")
        return False

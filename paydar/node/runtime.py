"""The regional node's behaviour: role from the signed table, fenced writes, replication.

Everything here runs on one asyncio loop; SQLite work runs on one dedicated thread.
The rules:
- The role comes only from a routing table signed by ``threshold`` controllers.
- The primary acknowledges a write only once it is durable here and on ``ack_replicas``
  standbys in its epoch (at least ``sync_replicas``, and with the primary a majority).
- A standby refuses replication from an epoch lower than its own, and answers with its
  newer table so the deposed primary steps down at once.
- A node whose data fails verification is compromised: it serves nothing it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from paydar.model.routing import ServiceRoute, SignedTable
from paydar.model.signing import Signature, canonical_json
from paydar.node.backup import BackupAgent, BackupSite
from paydar.node.chain import Entry
from paydar.node.config import NodeConfig
from paydar.node.errors import IntegrityViolation, WriteRefused
from paydar.node.metrics import NodeMetrics
from paydar.node.models import MAX_BATCH_ENTRIES, DocumentIn, ReplicationBatch, SignedBatch, SignedReply
from paydar.node.replication import Replicator, answer_batch
from paydar.node.store import DocumentStore, VerifyResult, verify_file
from paydar.server.component import Foundation
from paydar.workload.contract import MAX_REASON_CHARS, InstanceRole, InstanceState, StandbyProgress

__all__ = ["NodeRuntime"]


def _overloaded(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite failed for want of room or time (disk full, database busy), not bad data."""
    text = str(exc).lower()
    return "full" in text or "locked" in text or "busy" in text


def _out_of_descriptors(path: Path) -> bool:
    """Whether opening ``path`` fails only because this process has no descriptor left."""
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as exc:
        return exc.errno in (errno.EMFILE, errno.ENFILE)
    return False

log = logging.getLogger(__name__)
T = TypeVar("T")


class NodeRuntime:
    """State and behaviour of one node; the HTTP layer (``paydar.node.app``) only translates."""

    def __init__(self, *, config: NodeConfig, foundation: Foundation, metrics: NodeMetrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.f = foundation
        self.metrics = metrics
        self.service = config.service
        self.region = config.region
        self.ack_replicas = foundation.topology.service(config.service).ack_replicas
        self.replication_timeout = foundation.topology.limits.replication_timeout
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self.store: DocumentStore | None = None
        self.role = InstanceRole.DETACHED
        self.compromised: str | None = None
        self.acked_position = 0
        self.known_acked = 0
        self._acked = asyncio.Condition()
        self._append = asyncio.Lock()
        self.replicators: dict[str, Replicator] = {}
        self.session: aiohttp.ClientSession | None = None
        self.db_path = config.data_dir / "registry.sqlite3"
        vault = (config.vault_endpoint, config.vault_identity) \
            if config.vault_endpoint and config.vault_identity else None
        self.backups = BackupAgent(
            BackupSite(service=self.service, region=self.region, db_path=self.db_path,
                       staging=config.data_dir / "snapshot.tmp", interval=foundation.topology.storage.backup_interval,
                       signer=foundation.signer, vault=vault),
            metrics=metrics, epoch=lambda: self.epoch, compromised=lambda: self.compromised,
            on_corrupt=self.mark_compromised)
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = await self.db(DocumentStore, self.db_path, self.service)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        result = await self.verify()
        log.info("chain verified at start ok=%s entries=%d", result.ok, result.checked)
        await self._reconfigure()
        self._tasks = [asyncio.create_task(self._watch_integrity()), asyncio.create_task(self.backups.schedule())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for replicator in self.replicators.values():
            await replicator.stop()
        if self.session:
            await self.session.close()
        if self.store:
            await self.db(self.store.close)
        self._executor.shutdown(wait=True)

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _store(self) -> DocumentStore:
        assert self.store is not None, "node not started"
        return self.store

    # -- routing table and role ----------------------------------------------------------

    @property
    def table(self) -> SignedTable:
        assert self.f.guard.current is not None
        return self.f.guard.current

    @property
    def table_version(self) -> int:
        return self.table.table.version

    @property
    def route(self) -> ServiceRoute:
        return self.table.table.route(self.service)

    @property
    def epoch(self) -> int:
        return self.route.epoch

    def _role_from_table(self) -> InstanceRole:
        route = self.route
        if route.primary == self.region and route.writable:
            return InstanceRole.PRIMARY
        if self.region in route.regions:
            return InstanceRole.STANDBY
        return InstanceRole.DETACHED

    async def offer_table(self, signed: SignedTable, *, source: str) -> frozenset[str]:
        """Adopt a newer table signed by enough controllers; raise ``TableRejected`` otherwise."""
        signers = self.f.adopt(signed, source=source, on_refused=lambda reason: self.metrics.tables_refused.labels(
            service=self.service, region=self.region, reason=reason).inc())
        await self._reconfigure()
        return signers

    async def _reconfigure(self) -> None:
        """Align role and replicators with the held table."""
        previous, self.role = self.role, self._role_from_table()
        self.metrics.role.state(self.role.value)
        self.metrics.epoch.set(self.epoch)
        wanted = set(self.route.standbys) if self.role is InstanceRole.PRIMARY else set()
        for region in set(self.replicators) - wanted:
            await self.replicators.pop(region).stop()
        for region in wanted - set(self.replicators):
            replicator = Replicator(node=self, region=region, url=self.config.peers[region],
                                    session=self._session(), on_progress=self._recompute_acked)
            self.replicators[region] = replicator
            replicator.start()
        if self.role is InstanceRole.PRIMARY and previous is not InstanceRole.PRIMARY:
            # Everything this node holds must survive from now on: count it as acknowledged.
            self.acked_position = (await self.head_position())
        if previous is not self.role:
            log.info("role changed from=%s to=%s epoch=%d", previous, self.role, self.epoch)
        async with self._acked:
            self._acked.notify_all()

    def _session(self) -> aiohttp.ClientSession:
        assert self.session is not None
        return self.session

    def may_replicate(self) -> bool:
        return self.role is InstanceRole.PRIMARY and self.compromised is None

    @property
    def component(self) -> str:
        return self.config.component

    @property
    def primary_region(self) -> str | None:
        return self.route.primary

    @property
    def is_primary(self) -> bool:
        return self.role is InstanceRole.PRIMARY

    def key_of(self, component: str) -> tuple[str, Ed25519PublicKey]:
        return self.f.trust.key_of(component)

    # -- primary: writes -----------------------------------------------------------------

    async def head_position(self) -> int:
        return (await self.db(self._store().head))[0]

    def sign(self, payload: Any) -> Signature:
        return self.f.signer.sign(payload)

    async def build_batch(self, start: int, *, include_table: bool, max_bytes: int) -> ReplicationBatch:
        store = self._store()

        def collect() -> tuple[list[Entry], int, str, int]:
            head = store.head()[0]
            prev_position = max(0, start - 1)
            prev_hash = store.hash_at(prev_position)
            if prev_hash is None:  # asked beyond our head: probe from our head
                prev_position, prev_hash = store.head()
            entries = store.entries_from(prev_position + 1, max_entries=MAX_BATCH_ENTRIES, max_bytes=max_bytes)
            return entries, prev_position, prev_hash, head

        entries, prev_position, prev_hash, head = await self.db(collect)
        return ReplicationBatch(
            service=self.service, sender=self.config.component, epoch=self.epoch,
            table_version=self.table_version, acked_position=self.acked_position, head_position=head,
            prev_position=prev_position, prev_hash=prev_hash, entries=entries,
            table=self.table if include_table else None)

    async def write(self, doc_id: str, document: DocumentIn) -> Entry:
        """Append and replicate one write; return it once acknowledged."""
        self._check_writable()
        epoch = self.epoch
        body = canonical_json(document.model_dump(mode="json")).decode("utf-8")
        async with self._append:
            self._check_writable()
            try:
                entry = await self.db(lambda: self._store().append(
                    epoch=epoch, doc_id=doc_id, body=body, written_ms=int(self._clock() * 1000)))
            except sqlite3.OperationalError as exc:
                if _overloaded(exc):  # a full or busy disk is overload, never evidence against the data
                    raise WriteRefused(503, f"this node cannot store the write now ({exc}); retry shortly",
                                       retry_after=1) from None
                self.mark_compromised(f"database unusable: {exc}")
                raise WriteRefused(503, "this node's storage is unusable; the write was not accepted") from None
            except sqlite3.DatabaseError as exc:
                self.mark_compromised(f"database unusable: {exc}")
                raise WriteRefused(503, "this node's storage is unusable; the write was not accepted") from None
        self.metrics.log_position.set(entry.position)
        for replicator in self.replicators.values():
            replicator.wake()
        await self._wait_acked(entry.position, epoch)
        return entry

    def _check_writable(self) -> None:
        if self.compromised:
            raise WriteRefused(503, f"node is compromised ({self.compromised}); writes go elsewhere")
        route = self.route
        if not route.writable:
            raise WriteRefused(503, f"service {self.service} is read-only in table v{self.table_version}: "
                                    "no safe primary; retry after failover", retry_after=2)
        if self.role is not InstanceRole.PRIMARY:
            raise WriteRefused(409, f"node {self.region} is {self.role} for service {self.service} in epoch "
                                    f"{self.epoch}; the primary is {route.primary}",
                               primary=route.primary, table=self.table.model_dump(mode="json"))

    async def _wait_acked(self, position: int, epoch: int) -> None:
        deadline = self.replication_timeout

        def settled() -> bool:
            return self.acked_position >= position or self.epoch != epoch or self.role is not InstanceRole.PRIMARY

        async with self._acked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait_for(settled), deadline)
        if self.epoch != epoch or self.role is not InstanceRole.PRIMARY:
            raise WriteRefused(503, f"write at position {position} NOT acknowledged: this node left epoch "
                                    f"{epoch} while waiting; retry through a gateway")
        if self.acked_position < position:
            raise WriteRefused(503, f"write at position {position} NOT acknowledged: fewer than "
                                    f"{self.ack_replicas} standby(s) confirmed it within {deadline:.1f}s; "
                                    "retry it (PUT is idempotent)", retry_after=1)

    async def _recompute_acked(self) -> None:
        head = await self.head_position()
        matches = sorted((r.matched for r in self.replicators.values()), reverse=True)
        for region, replicator in self.replicators.items():
            self.metrics.replication_lag.labels(service=self.service, region=self.region,
                                                peer=region).set(max(0, head - replicator.matched))
        if self.ack_replicas == 0:
            candidate = head
        elif len(matches) >= self.ack_replicas:
            candidate = matches[self.ack_replicas - 1]
        else:
            candidate = 0
        if candidate > self.acked_position:
            self.acked_position = min(candidate, head)
            self.metrics.acked_position.set(self.acked_position)
            async with self._acked:
                self._acked.notify_all()

    # -- standby: replication ------------------------------------------------------------

    async def receive_batch(self, signed: SignedBatch) -> SignedReply:
        """A primary's batch, verified and applied, answered with a reply this node signs."""
        return await answer_batch(self, signed)

    async def apply_entries(self, batch: ReplicationBatch) -> int:
        """Store a verified, admitted batch; the position now matched (``LogMismatch`` if it does not link)."""
        matched = await self.db(lambda: self._store().apply(
            batch.entries, prev_position=batch.prev_position, prev_hash=batch.prev_hash,
            sender_epoch=batch.epoch, sender_head=batch.head_position, protected=self.known_acked))
        self.known_acked = max(self.known_acked, min(batch.acked_position, matched))
        self.metrics.acked_position.set(self.known_acked)
        return matched

    async def held_at(self, position: int) -> tuple[int, str, str]:
        """(head position, head hash, chain hash at ``position`` or "")."""
        (head, head_hash), at = await self.db(lambda: (self._store().head(), self._store().hash_at(position) or ""))
        self.metrics.log_position.set(head)
        return head, head_hash, at

    # -- reads and integrity -------------------------------------------------------------

    async def read(self, doc_id: str) -> Entry | None:
        return await self._guarded(lambda: self._store().document(doc_id))

    async def list_documents(self, citizen_id: str, after: str, limit: int) -> list[Entry]:
        return await self._guarded(lambda: self._store().documents_of(citizen_id, after=after, limit=limit))

    async def _guarded(self, fn: Callable[[], T]) -> T:
        if self.compromised:
            raise IntegrityViolation(0, self.compromised)
        try:
            return await self.db(fn)
        except IntegrityViolation as exc:
            self.mark_compromised(str(exc))
            raise
        except sqlite3.DatabaseError as exc:
            self.mark_compromised(f"database unusable: {exc}")
            raise IntegrityViolation(0, f"database unusable: {exc}") from None

    async def chain_hash(self, position: int) -> str | None:
        """The chain hash at ``position`` (genesis at 0); None beyond the head."""
        return await self.db(self._store().hash_at, position)

    async def verify(self) -> VerifyResult:
        """Verify the whole chain now; a failure marks the node compromised."""
        try:
            result = await self.db(self._store().verify_chain)
        except sqlite3.DatabaseError as exc:
            result = VerifyResult(False, 0, "", None, f"database unusable: {exc}")
        if not result.ok:
            self.mark_compromised(f"chain verification failed at position {result.first_bad_position}: "
                                   f"{result.reason}")
        else:
            self.metrics.integrity_ok.set(1)
        return result

    async def _watch_integrity(self) -> None:
        """Re-read and verify the whole store from disk every ``storage.integrity_interval``.

        Runs on a thread of its own with a fresh connection (:func:`verify_file`), so a file
        rewritten under the node is judged as it is on disk, and serving never waits for it.
        """
        interval = self.f.topology.storage.integrity_interval
        while self.compromised is None:
            await asyncio.sleep(interval)
            started = time.monotonic()
            result = await asyncio.to_thread(verify_file, self.db_path, self.service)
            if not result.ok and _out_of_descriptors(self.db_path):
                # Overload (a connection flood took every descriptor), not evidence against the
                # data: skip this check; the connection caps shed the flood.
                log.warning("integrity check skipped: out of file descriptors")
                continue
            if not result.ok:
                self.mark_compromised(f"integrity check failed at position {result.first_bad_position}: "
                                      f"{result.reason}")
            log.debug("integrity check ok=%s entries=%d seconds=%.3f", result.ok, result.checked,
                      time.monotonic() - started)

    def mark_compromised(self, reason: str) -> None:
        if self.compromised is None:
            log.error("node compromised: %s; it will serve no data until restored", reason)
        self.compromised = reason
        self.metrics.integrity_ok.set(0)

    async def state(self) -> InstanceState:
        """What ``GET /state`` answers: role, epoch, log, acknowledgements, health, last backup."""
        try:
            position, head_hash = await self.db(self._store().head)
        except sqlite3.DatabaseError:
            position, head_hash = -1, ""
        route = self.route
        return InstanceState(
            component=self.config.component, service=self.service, region=self.region, role=self.role,
            epoch=self.epoch, mode=route.mode, primary=route.primary, table_version=self.table_version,
            log_position=position, chain_head=head_hash, acked_position=max(self.acked_position, self.known_acked),
            compromised=self.compromised[:MAX_REASON_CHARS] if self.compromised else None,
            ack_replicas=self.ack_replicas, backup=self.backups.last.manifest if self.backups.last else None,
            standbys={region: StandbyProgress(matched=r.matched, reachable=r.reachable)
                      for region, r in self.replicators.items()})

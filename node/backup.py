"""The node's backups: a verified snapshot in the vault on a schedule and on demand.

The node holds only its region's vault identity, which can write and read that region's
prefix of its service's bucket and nothing else; the snapshot and its upload run off the
event loop and off the database thread, so serving continues throughout.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from infra.errors import PaydarError
from vault.manifest import SignedManifest
from vault.s3 import VaultError, bucket_name, load_identity, vault_client
from vault.snapshot import SnapshotFailed, take_snapshot, upload_backup

if TYPE_CHECKING:
    from node.runtime import NodeRuntime

__all__ = ["BackupAgent", "BackupUnavailable"]

log = logging.getLogger(__name__)


class BackupUnavailable(PaydarError):
    """This node can't take a backup now; the message says why and what to do."""


class BackupAgent:
    """Takes one backup at a time; the schedule and `POST /v1/backup` share it."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime
        self.interval = runtime.f.topology.storage.backup_interval
        self.last: SignedManifest | None = None
        self._lock = asyncio.Lock()
        self._client = None
        config = runtime.config
        if config.vault_endpoint and config.vault_identity:
            self._client = vault_client(config.vault_endpoint, load_identity(config.vault_identity), timeout=30)
        metrics = runtime.metrics
        metrics.backup_age.set_function(
            lambda: time.time() - self.last.manifest.created_ms / 1000 if self.last else -1.0)

    @property
    def enabled(self) -> bool:
        return self._client is not None

    async def schedule(self) -> None:
        """Back up every ``storage.backup_interval``, the first one at a random point of the first interval."""
        if not self.enabled:
            log.warning("no vault configured: this node takes no backups")
            return
        delay = random.uniform(0.1, 1.0) * self.interval  # noqa: S311 - spreading load, not security
        while True:
            await asyncio.sleep(delay)
            delay = self.interval
            try:
                await self.backup()
            except (BackupUnavailable, VaultError) as exc:
                log.warning("scheduled backup skipped: %s", exc)

    async def backup(self) -> SignedManifest:
        """Snapshot, verify and upload now; the signed manifest once the vault holds both objects."""
        runtime = self.runtime
        if self._client is None:
            raise BackupUnavailable("this node has no vault identity in its config; `paydar up` gives each "
                                    "region one")
        async with self._lock:
            if runtime.compromised:
                raise BackupUnavailable(f"node is compromised ({runtime.compromised}); restore it instead "
                                        "of backing up data that does not verify")
            started = time.monotonic()
            data_dir: Path = runtime.config.data_dir
            staging = data_dir / "snapshot.tmp"
            try:
                snapshot = await asyncio.to_thread(take_snapshot, runtime.db_path, staging, runtime.service)
                signed = await asyncio.to_thread(
                    upload_backup, self._client, snapshot, bucket=bucket_name(runtime.service),
                    service=runtime.service, region=runtime.region, epoch=runtime.epoch, signer=runtime.f.signer,
                    created_ms=int(time.time() * 1000))
            except SnapshotFailed as exc:
                self._count("refused")
                runtime.mark_compromised(str(exc))
                raise
            except (ClientError, BotoCoreError) as exc:
                self._count("vault-error")
                raise VaultError(f"backup not stored: the vault answered {exc}") from None
            finally:
                staging.unlink(missing_ok=True)
        self.last = signed
        metrics, manifest = runtime.metrics, signed.manifest
        metrics.backup_last_success.set(manifest.created_ms / 1000)
        metrics.backup_size.set(manifest.size)
        metrics.backup_position.set(manifest.position)
        metrics.backup_seconds.observe(time.monotonic() - started)
        self._count("ok")
        return signed

    def _count(self, outcome: str) -> None:
        runtime = self.runtime
        runtime.metrics.backups.labels(service=runtime.service, region=runtime.region, outcome=outcome).inc()

"""The node's backups: a verified snapshot in the vault on a schedule and on demand.

The node holds only its region's vault identity, which can write and read that region's
prefix of its service's bucket and nothing else. The snapshot runs off the event loop and
off the database thread, so serving continues throughout; each upload runs in a
short-lived ``python -m paydar.vault.upload`` (see there why), bounded in time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paydar.model.buckets import bucket_name
from paydar.model.errors import PaydarError
from paydar.model.signing import Signer
from paydar.node.metrics import NodeMetrics
from paydar.node.snapshot import SnapshotCorrupt, take_snapshot
from paydar.vault.manifest import SignedManifest
from paydar.vault.s3 import VaultError
from paydar.vault.snapshot import upload_backup
from paydar.vault.upload import put_through_process

__all__ = ["BackupAgent", "BackupSite", "BackupUnavailable"]

log = logging.getLogger(__name__)


class BackupUnavailable(PaydarError):
    """This node can't take a backup now; the message says why and what to do."""


@dataclass(frozen=True)
class BackupSite:
    """What one node's backups are made of: whose they are, where the store is, where they go."""

    service: str
    region: str
    db_path: Path
    staging: Path
    """Where the snapshot is written before upload (removed afterwards)."""
    interval: float
    signer: Signer
    vault: tuple[str, Path] | None
    """The vault's S3 endpoint and this region's identity file; None takes no backups."""


class BackupAgent:
    """Takes one backup at a time; the schedule and `POST /v1/backup` share it.

    Built from values and callables, not from the node: ``epoch`` and ``compromised`` read the
    node's state when a backup starts, and ``on_corrupt`` is told when the store itself does
    not verify (the node then marks itself compromised).
    """

    def __init__(self, site: BackupSite, *, metrics: NodeMetrics, epoch: Callable[[], int],
                 compromised: Callable[[], str | None], on_corrupt: Callable[[str], None]) -> None:
        self.site = site
        self.interval = site.interval
        self.last: SignedManifest | None = None
        self._lock = asyncio.Lock()
        self._vault = site.vault
        self._metrics = metrics
        self._epoch, self._compromised, self._on_corrupt = epoch, compromised, on_corrupt
        metrics.backup_age.set_function(
            lambda: time.time() - self.last.manifest.created_ms / 1000 if self.last else -1.0)

    @property
    def enabled(self) -> bool:
        return self._vault is not None

    async def schedule(self) -> None:
        """Back up every ``storage.backup_interval``, the first one at a random point of the first interval."""
        if not self.enabled:
            log.warning("no vault configured: this node takes no backups")
            return
        delay = random.uniform(0.1, 1.0) * self.interval
        while True:
            await asyncio.sleep(delay)
            delay = self.interval
            try:
                await self.backup()
            except (BackupUnavailable, VaultError) as exc:
                log.warning("scheduled backup skipped: %s", exc)

    async def backup(self) -> SignedManifest:
        """Snapshot, verify and upload now; the signed manifest once the vault holds both objects."""
        site = self.site
        if not self.enabled:
            raise BackupUnavailable("this node has no vault identity in its config; `paydar up` gives each "
                                    "region one")
        async with self._lock:
            if compromised := self._compromised():
                raise BackupUnavailable(f"node is compromised ({compromised}); restore it instead "
                                        "of backing up data that does not verify")
            started = time.monotonic()
            staging = site.staging
            try:
                snapshot = await asyncio.to_thread(take_snapshot, site.db_path, staging, site.service)
                assert self._vault is not None
                put = put_through_process(*self._vault, bucket_name(site.service))
                signed = await asyncio.to_thread(
                    upload_backup, put, snapshot, bucket=bucket_name(site.service),
                    service=site.service, region=site.region, epoch=self._epoch(), signer=site.signer,
                    created_ms=int(time.time() * 1000))
            except SnapshotCorrupt as exc:
                self._count("refused")
                self._on_corrupt(str(exc))
                raise
            except VaultError as exc:
                self._count("vault-error")
                raise VaultError(f"backup not stored: {exc}") from None
            finally:
                staging.unlink(missing_ok=True)
        self.last = signed
        metrics, manifest = self._metrics, signed.manifest
        metrics.backup_last_success.set(manifest.created_ms / 1000)
        metrics.backup_size.set(manifest.size)
        metrics.backup_position.set(manifest.position)
        metrics.backup_seconds.observe(time.monotonic() - started)
        self._count("ok")
        return signed

    def _count(self, outcome: str) -> None:
        self._metrics.backups.labels(service=self.site.service, region=self.site.region, outcome=outcome).inc()

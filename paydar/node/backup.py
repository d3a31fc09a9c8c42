"""The node's backups: a verified snapshot in the vault on a schedule and on demand.

The node holds only its region's vault identity, which can write and read that region's
prefix of its service's bucket and nothing else. The snapshot runs off the event loop and
off the database thread, so serving continues throughout; each upload runs in a
short-lived ``python -m paydar.vault.upload`` (see there why), bounded by ``UPLOAD_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import subprocess
import sys
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

__all__ = ["BackupAgent", "BackupSite", "BackupUnavailable"]

log = logging.getLogger(__name__)
UPLOAD_TIMEOUT = 600.0


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

    def _put(self, key: str, path: Path, content_type: str) -> str:
        """Upload through ``python -m paydar.vault.upload``; the version id, or :class:`VaultError`."""
        assert self._vault is not None
        endpoint, identity = self._vault
        bucket = bucket_name(self.site.service)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "paydar.vault.upload", "--endpoint", endpoint, "--identity", str(identity),
                 "--bucket", bucket, "--key", key, "--file", str(path), "--content-type", content_type],
                capture_output=True, text=True, timeout=UPLOAD_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise VaultError(f"upload of {bucket}/{key} did not finish within {UPLOAD_TIMEOUT:.0f}s") from None
        if done.returncode != 0:
            raise VaultError(done.stderr.strip()[-500:] or f"paydar.vault.upload exited {done.returncode}")
        return str(json.loads(done.stdout)["version_id"])

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
                signed = await asyncio.to_thread(
                    upload_backup, self._put, snapshot, bucket=bucket_name(site.service),
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

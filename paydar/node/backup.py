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
from pathlib import Path
from typing import TYPE_CHECKING

from paydar.model.buckets import bucket_name
from paydar.model.errors import PaydarError
from paydar.node.snapshot import SnapshotCorrupt, take_snapshot
from paydar.vault.manifest import SignedManifest
from paydar.vault.s3 import VaultError
from paydar.vault.snapshot import upload_backup

if TYPE_CHECKING:
    from paydar.node.runtime import NodeRuntime

__all__ = ["BackupAgent", "BackupUnavailable"]

log = logging.getLogger(__name__)
UPLOAD_TIMEOUT = 600.0


class BackupUnavailable(PaydarError):
    """This node can't take a backup now; the message says why and what to do."""


class BackupAgent:
    """Takes one backup at a time; the schedule and `POST /v1/backup` share it."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime
        self.interval = runtime.f.topology.storage.backup_interval
        self.last: SignedManifest | None = None
        self._lock = asyncio.Lock()
        config = runtime.config
        self._vault = (config.vault_endpoint, config.vault_identity) \
            if config.vault_endpoint and config.vault_identity else None
        metrics = runtime.metrics
        metrics.backup_age.set_function(
            lambda: time.time() - self.last.manifest.created_ms / 1000 if self.last else -1.0)

    @property
    def enabled(self) -> bool:
        return self._vault is not None

    def _put(self, key: str, path: Path, content_type: str) -> str:
        """Upload through ``python -m paydar.vault.upload``; the version id, or :class:`VaultError`."""
        assert self._vault is not None
        endpoint, identity = self._vault
        bucket = bucket_name(self.runtime.service)
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
        runtime = self.runtime
        if not self.enabled:
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
                    upload_backup, self._put, snapshot, bucket=bucket_name(runtime.service),
                    service=runtime.service, region=runtime.region, epoch=runtime.epoch, signer=runtime.f.signer,
                    created_ms=int(time.time() * 1000))
            except SnapshotCorrupt as exc:
                self._count("refused")
                runtime.mark_compromised(str(exc))
                raise
            except VaultError as exc:
                self._count("vault-error")
                raise VaultError(f"backup not stored: {exc}") from None
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

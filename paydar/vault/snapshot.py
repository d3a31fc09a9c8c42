"""Putting a verified snapshot in the vault with its signed manifest.

The vault is blind to workloads: a :class:`Snapshot` is a file and what its workload proved
about it (entries, chain head), plus its size and SHA-256. How a workload copies and proves
its own data (the node's SQLite store: :mod:`paydar.node.snapshot`) is the workload's business.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from paydar.model.ids import node_id
from paydar.model.signing import Signer
from paydar.vault.manifest import (
    PG_WAL_FORMAT,
    SNAPSHOT_FORMAT,
    BackupManifest,
    SignedManifest,
    manifest_key,
    snapshot_key,
    wal_key,
    wal_manifest_key,
)
from paydar.vault.s3 import S3Client, VaultError

__all__ = ["CHUNK", "Put", "Snapshot", "SnapshotFailed", "s3_put", "sha256_file", "upload_backup", "upload_wal"]

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


class SnapshotFailed(VaultError):
    """No backup was made; the message says why (nothing was uploaded)."""


@dataclass(frozen=True)
class Snapshot:
    """A verified copy of a workload's data, ready to upload: ``position`` entries ending in ``chain_head``."""

    path: Path
    position: int
    chain_head: str
    size: int
    sha256: str
    content_type: str = "application/octet-stream"
    format: str = SNAPSHOT_FORMAT
    generation: str | None = None


def sha256_file(path: Path, progress: Callable[[int], None] = lambda _: None) -> str:
    """The file's SHA-256 (hex), read in chunks; ``progress`` gets each chunk's size."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            progress(len(chunk))
    return digest.hexdigest()


Put = Callable[[str, Path, str], str]
"""Store the file at a key with a content type; return the version id the vault gave it."""


def s3_put(client: S3Client, bucket: str) -> Put:
    """A :data:`Put` into ``bucket`` through a boto3 client."""

    def put(key: str, path: Path, content_type: str) -> str:
        with path.open("rb") as body:
            stored = client.put_object(Bucket=bucket, Key=key, Body=body, ContentLength=path.stat().st_size,
                                       ContentType=content_type)
        version_id = stored.get("VersionId")
        if not version_id:
            raise SnapshotFailed(f"the vault stored {bucket}/{key} without a version id: versioning is off on "
                                 f"{bucket}; provision the bucket again (`paydar up` does)")
        return str(version_id)

    return put


def upload_backup(put: Put, snapshot: Snapshot, *, bucket: str, service: str, region: str, epoch: int,
                  signer: Signer, created_ms: int) -> SignedManifest:
    """Upload the snapshot, then its manifest pinning the stored version; return the signed manifest.

    The snapshot goes first: a manifest never names an object that is not there. A failure
    part-way leaves at most an orphan snapshot, which restores ignore (no manifest names it).
    """
    key = snapshot_key(region, created_ms, snapshot.position, snapshot.format)
    signed = _put_pinned(put, snapshot, key, bucket=bucket, service=service, region=region, epoch=epoch,
                         signer=signer, created_ms=created_ms,
                         manifest_at=manifest_key(region, created_ms, snapshot.position))
    log.info("backup uploaded service=%s region=%s position=%d size=%d key=%s version=%s",
             service, region, snapshot.position, snapshot.size, key, signed.manifest.version_id)
    return signed


def upload_wal(put: Put, wal: Snapshot, name: str, *, bucket: str, service: str, region: str, epoch: int,
               signer: Signer, created_ms: int) -> SignedManifest:
    """Upload one archived WAL file ``name`` of ``wal.generation`` (``wal.position``: the LSN it
    starts at), then its manifest pinning the stored version, as :func:`upload_backup` does."""
    assert wal.generation is not None
    return _put_pinned(put, replace(wal, format=PG_WAL_FORMAT), wal_key(region, wal.generation, name),
                       bucket=bucket, service=service, region=region, epoch=epoch, signer=signer,
                       created_ms=created_ms, manifest_at=wal_manifest_key(region, wal.generation, name))


def _put_pinned(put: Put, snapshot: Snapshot, key: str, *, bucket: str, service: str, region: str, epoch: int,
                signer: Signer, created_ms: int, manifest_at: str) -> SignedManifest:
    version_id = put(key, snapshot.path, snapshot.content_type)
    manifest = BackupManifest(
        service=service, region=region, node=node_id(service, region), epoch=epoch, position=snapshot.position,
        chain_head=snapshot.chain_head, size=snapshot.size, sha256=snapshot.sha256, created_ms=created_ms,
        bucket=bucket, key=key, version_id=version_id, format=snapshot.format, generation=snapshot.generation)
    signed = SignedManifest.seal(manifest, signer)
    manifest_file = snapshot.path.with_name(snapshot.path.name + ".manifest.json")
    manifest_file.write_bytes(signed.model_dump_json().encode())
    try:
        put(manifest_at, manifest_file, "application/json")
    finally:
        manifest_file.unlink(missing_ok=True)
    return signed

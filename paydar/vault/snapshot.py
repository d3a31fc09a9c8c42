"""Taking a node's snapshot and putting it in the vault with its signed manifest.

The copy uses SQLite's online backup API from a connection of its own: it reads one
consistent state of the database (a WAL read transaction) while the node keeps writing, and
it never blocks the node's database thread. The copy is verified, whole chain, before it is
uploaded: a node never backs up data that does not verify, so ransomware can't launder
itself into the vault.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paydar.model.signing import Signer
from paydar.node.store import verify_file
from paydar.vault.manifest import BackupManifest, SignedManifest, manifest_key, snapshot_key
from paydar.vault.s3 import S3Client, VaultError

__all__ = ["CHUNK", "Put", "Snapshot", "SnapshotCorrupt", "SnapshotFailed", "s3_put", "sha256_file",
           "take_snapshot", "upload_backup"]

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
_PAGES_PER_STEP = 4096
"""Pages copied per backup step: big steps, because every step restarts if a write lands
mid-copy only for non-WAL databases; in WAL mode the copy reads one snapshot throughout."""


class SnapshotFailed(VaultError):
    """No backup was made; the message says why (nothing was uploaded)."""


class SnapshotCorrupt(SnapshotFailed):
    """The store's own data does not verify: it needs a restore, not a backup."""


@dataclass(frozen=True)
class Snapshot:
    """A verified copy of a store, ready to upload."""

    path: Path
    position: int
    chain_head: str
    size: int
    sha256: str


def sha256_file(path: Path, progress: Callable[[int], None] = lambda _: None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            progress(len(chunk))
    return digest.hexdigest()


def take_snapshot(db_path: Path, dest: Path, service: str) -> Snapshot:
    """Copy the store at ``db_path`` to ``dest`` consistently and verify the copy's whole chain."""
    dest.unlink(missing_ok=True)
    try:
        source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            target = sqlite3.connect(dest)
            try:
                source.backup(target, pages=_PAGES_PER_STEP)
                # A self-contained file: no -wal or -shm beside it, readable by a read-only open.
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        dest.unlink(missing_ok=True)
        raise SnapshotFailed(f"could not copy {db_path}: {exc}") from None
    result = verify_file(dest, service)
    if not result.ok:
        dest.unlink(missing_ok=True)
        raise SnapshotCorrupt(f"refusing to back up {db_path}: the copy does not verify at position "
                             f"{result.first_bad_position} ({result.reason}); this node's data needs a restore")
    return Snapshot(path=dest, position=result.checked, chain_head=result.head_hash,
                    size=dest.stat().st_size, sha256=sha256_file(dest))


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
    key = snapshot_key(region, created_ms, snapshot.position)
    version_id = put(key, snapshot.path, "application/vnd.sqlite3")
    manifest = BackupManifest(
        service=service, region=region, node=f"node.{service}.{region}", epoch=epoch, position=snapshot.position,
        chain_head=snapshot.chain_head, size=snapshot.size, sha256=snapshot.sha256, created_ms=created_ms,
        bucket=bucket, key=key, version_id=version_id)
    signed = SignedManifest.seal(manifest, signer)
    manifest_file = snapshot.path.with_name(snapshot.path.name + ".manifest.json")
    manifest_file.write_bytes(signed.model_dump_json().encode())
    try:
        put(manifest_key(region, created_ms, snapshot.position), manifest_file, "application/json")
    finally:
        manifest_file.unlink(missing_ok=True)
    log.info("backup uploaded service=%s region=%s position=%d size=%d key=%s version=%s",
             service, region, snapshot.position, snapshot.size, key, version_id)
    return signed

"""Finding a backup in the vault and fetching it, verified, before anything can serve it.

Three proofs stand between the vault and a node: the manifest's signature (the node's key in
the trust root), the downloaded bytes' size and SHA-256 (the ones the manifest names, at the
pinned version), and the whole hash chain of the store (its length and head must be the
manifest's). A backup that fails any of them is refused with the reason and the fetched file
is deleted; nothing is rebuilt from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from paydar.model.buckets import bucket_name
from paydar.model.identity import TrustRoot
from paydar.vault.manifest import (
    MAX_MANIFEST_BYTES,
    BackupManifest,
    ManifestRejected,
    SignedManifest,
    manifests_prefix,
    own_manifest_key,
    wal_manifests_prefix,
)
from paydar.vault.s3 import S3Client, VaultError
from paydar.vault.snapshot import CHUNK

__all__ = ["Listed", "NoBackup", "Proof", "RestoreRefused", "Verifier", "choose", "download_verified", "fetch_verified",
           "list_backups", "list_wal"]

log = logging.getLogger(__name__)


MAX_VERSIONS_PER_KEY = 8
"""Versions of one manifest key tried, oldest first: each is one GET. The oldest version is the
one its node wrote (a node writes each manifest key once); later ones can only come from
someone overwriting it, so however many are stacked on top, the node's is tried first."""


MAX_LISTED = 200_000
"""Manifest keys read under one prefix: a year of base backups every 15 minutes is 35,000, and a
generation's WAL a few thousand files a day; a listing beyond this is a flood of plants."""


FUTURE_SKEW_SECONDS = 3600.0
"""Manifest names dated further ahead than this are plants: no node's clock is that far off."""


class NoBackup(VaultError):
    """The vault holds no backup matching the request."""


class RestoreRefused(VaultError):
    """The chosen backup did not verify; nothing was restored. The message says why."""


@dataclass(frozen=True)
class Listed:
    """One manifest in the vault: verified, or the reason it is not."""

    key: str
    claimed: BackupManifest | None
    """What the manifest says, verified or not (None when it does not even parse)."""
    problem: str | None = None

    @property
    def verified(self) -> BackupManifest | None:
        return self.claimed if self.problem is None else None


def list_backups(client: S3Client, trust: TrustRoot, service: str, region: str, *, at: datetime | None = None,
                 position: int | None = None, newest: int | None = None) -> list[Listed]:
    """Manifests of ``service`` in ``region``, newest first, each verified or with its problem.

    Versions are listed, not just the latest objects: a region's credentials can stack new
    versions or delete markers on a manifest's key but never remove the version its node
    wrote, so for each key the oldest version that verifies counts (delete markers are
    ignored); a key none of whose versions verify is listed with the first one's problem. A
    manifest verifies only under its own key (the one its signed fields name), so an older
    manifest copied over a newer key, or planted under a later name, is not taken for it.
    The result is ordered by the manifests' signed position and time, not by key names.
    ``at``/``position`` keep the keys whose names say they are at or before the target, and
    ``newest`` keeps that many keys: names only narrow what is fetched (a vault holds thousands
    of manifests per node at a 15-minute schedule); every fetched manifest is still verified.
    """
    listed = _list_verified(client, trust, service, region, manifests_prefix(region),
                            lambda key: _named_fit(key, at, position), newest)
    return sorted(listed, key=_signed_order, reverse=True)


def list_wal(client: S3Client, trust: TrustRoot, service: str, region: str, generation: str,
             wanted: Callable[[str], bool] = lambda _name: True) -> list[Listed]:
    """The manifests of a PostgreSQL server's archived WAL files of one ``generation`` in
    ``region`` whose file names ``wanted`` keeps, in name order (WAL's own), each verified as
    :func:`list_backups` verifies (and only under its own generation's key)."""
    prefix = wal_manifests_prefix(region, generation)
    listed = _list_verified(client, trust, service, region, prefix,
                            lambda key: wanted(key.removeprefix(prefix).removesuffix(".json")), None)
    return sorted(listed, key=lambda entry: entry.key)


def _list_verified(client: S3Client, trust: TrustRoot, service: str, region: str, prefix: str,
                   fits: Callable[[str], bool], newest: int | None) -> list[Listed]:
    bucket = bucket_name(service)
    versions: dict[str, list[str]] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Versions", []):
            if fits(item["Key"]):
                versions.setdefault(item["Key"], []).append(item["VersionId"])
        if len(versions) > MAX_LISTED:
            raise RestoreRefused(f"more than {MAX_LISTED} manifests under {bucket}/{prefix}: no server writes "
                                 "that many there; the vault holds plants. Investigate with `paydar backups list`")
    listed: list[Listed] = []
    verified = 0
    for key in sorted(versions, reverse=True):
        if newest is not None and verified >= newest:
            break  # names only narrow what is fetched; planted names that do not verify don't count
        # S3 lists a key's versions newest first; LastModified has one-second resolution, so
        # the listing order, reversed, is what puts the node's own version first.
        found = [_verify_version(client, trust, service, region, bucket, key, version_id)
                 for version_id in list(reversed(versions[key]))[:MAX_VERSIONS_PER_KEY]]
        entry = next((entry for entry in found if entry.problem is None), found[0])
        verified += entry.problem is None
        listed.append(entry)
    return listed


def _signed_order(entry: Listed) -> tuple[int, int, str]:
    m = entry.claimed
    return (m.position, m.created_ms, entry.key) if m is not None else (-1, -1, entry.key)


def _verify_version(client: S3Client, trust: TrustRoot, service: str, region: str, bucket: str, key: str,
                    version_id: str) -> Listed:
    raw = client.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read(MAX_MANIFEST_BYTES + 1)
    try:
        signed = SignedManifest.parse(raw, key)
    except ManifestRejected as exc:
        return Listed(key, None, str(exc))
    try:
        manifest = signed.verified(trust, service=service, bucket=bucket)
        if manifest.region != region:
            raise ManifestRejected(f"manifest of region {manifest.region} stored under {region}/")
        own = own_manifest_key(manifest)
        if key != own:
            raise ManifestRejected(f"manifest of {manifest.key} is stored under {key}, not its own key {own}: a copy "
                                   "placed to pass one backup off as another")
    except ManifestRejected as exc:
        return Listed(key, signed.manifest, str(exc))
    return Listed(key, manifest)


def _named_fit(key: str, at: datetime | None, position: int | None) -> bool:
    """Whether a manifest's key name claims a backup at or before the target.

    A name no node writes (unparsable, or dated in the future) is passed over: a manifest
    verifies only under its own key, so such a key can only hold a plant.
    """
    try:
        created_ms, named_position = (int(part) for part in key.rsplit("/", 1)[1].removesuffix(".json").split("-"))
    except ValueError:
        return False
    if created_ms > (time.time() + FUTURE_SKEW_SECONDS) * 1000:
        return False
    return ((at is None or created_ms <= at.timestamp() * 1000)
            and (position is None or named_position <= position))


def choose(listed: list[Listed], *, service: str, region: str, at: datetime | None = None,
           position: int | None = None) -> BackupManifest:
    """The newest *verified* manifest at or before ``at`` / ``position`` (the newest of all
    without either), by its signed position and time.

    A manifest that does not verify never counts, whatever it claims: its fields are the
    attacker's. It cannot hide a newer genuine one either (a node's own version of a key is
    always tried first), and ``paydar backups list`` shows it with its problem. When nothing
    verifies the restore is refused with the first problem found.
    """
    def fits(m: BackupManifest) -> bool:
        return (at is None or m.created <= at) and (position is None or m.position <= position)

    target = ("" if at is None else f" at or before {at.isoformat()}") + \
             ("" if position is None else f" at or before position {position}")
    verified = [e.verified for e in listed if e.verified is not None and fits(e.verified)]
    if verified:
        return max(verified, key=lambda m: (m.position, m.created_ms))
    bad = [e for e in listed if e.verified is None]
    if bad:
        raise RestoreRefused(f"no backup of service {service} from {region}{target} verifies; refusing "
                             f"{bad[0].key}: {bad[0].problem}")
    raise NoBackup(f"the vault holds no backup of service {service} from {region}{target}; "
                   f"`paydar backups list --service {service} --region {region}` shows what it holds, "
                   f"`paydar backup now --service {service} --region {region}` takes one")


class Proof(Protocol):
    """What a workload's verifier found in a downloaded snapshot."""

    @property
    def ok(self) -> bool: ...
    @property
    def checked(self) -> int: ...
    @property
    def head_hash(self) -> str: ...
    @property
    def first_bad_position(self) -> int | None: ...
    @property
    def reason(self) -> str: ...


Verifier = Callable[[Path, str], Proof]
"""The workload's own proof of a file of one service (the node's: :func:`paydar.node.store.verify_file`)."""


def fetch_verified(client: S3Client, manifest: BackupManifest, dest: Path, verify: Verifier,
                   progress: Callable[[int], None] = lambda _: None) -> None:
    """Download the manifest's pinned snapshot to ``dest`` and prove it; raise :class:`RestoreRefused`.

    The vault proves the signature, size and SHA-256; ``verify`` (the workload's) proves the
    content, and its entry count and head must be the manifest's. ``progress`` gets the byte
    count of each chunk as it arrives. On any refusal ``dest`` is deleted.
    """
    try:
        download_verified(client, manifest, dest, progress)
        result = verify(dest, manifest.service)
        if not result.ok:
            raise RestoreRefused(f"snapshot {manifest.key} does not verify at position {result.first_bad_position}: "
                                 f"{result.reason}")
        if (result.checked, result.head_hash) != (manifest.position, manifest.chain_head):
            raise RestoreRefused(
                f"snapshot {manifest.key} holds {result.checked} entries with head {result.head_hash[:16]}…, "
                f"but its manifest says {manifest.position} with head {manifest.chain_head[:16]}…")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    log.info("backup verified service=%s region=%s position=%d head=%s", manifest.service, manifest.region,
             manifest.position, manifest.chain_head[:16])


def download_verified(client: S3Client, manifest: BackupManifest, dest: Path,
                      progress: Callable[[int], None] = lambda _: None) -> None:
    """Download the manifest's pinned object to ``dest``; :class:`RestoreRefused` unless its size and
    SHA-256 are the manifest's (``dest`` is then left for the caller to delete)."""
    try:
        response = client.get_object(Bucket=manifest.bucket, Key=manifest.key, VersionId=manifest.version_id)
    except (ClientError, BotoCoreError) as exc:
        raise RestoreRefused(f"cannot fetch {manifest.bucket}/{manifest.key} version {manifest.version_id}: "
                             f"{exc}") from None
    digest, size = hashlib.sha256(), 0
    with dest.open("wb") as out:
        for chunk in _pumped(response["Body"]):
            size += len(chunk)
            if size > manifest.size:
                raise RestoreRefused(f"snapshot {manifest.key} is larger than the {manifest.size} bytes its "
                                     "manifest names: it was swapped")
            digest.update(chunk)
            out.write(chunk)
            progress(len(chunk))
    if size != manifest.size or digest.hexdigest() != manifest.sha256:
        raise RestoreRefused(f"snapshot {manifest.key} has SHA-256 {digest.hexdigest()[:16]}… and {size} bytes, "
                             f"its signed manifest says {manifest.sha256[:16]}… and {manifest.size}: "
                             "the object is not the one that was backed up")


def _pumped(body: Any, depth: int = 16, stall: float = 60.0) -> Iterator[bytes]:
    """The body's chunks, read ahead on a thread so the network and the hashing overlap.

    The queue is bounded (``depth`` chunks) and so is every wait (``stall`` seconds without
    a chunk is an error). Leaving early stops the reader.
    """
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def pump() -> None:
        try:
            while not stop.is_set() and (chunk := body.read(CHUNK)):
                while not stop.is_set():
                    try:
                        chunks.put(chunk, timeout=0.5)
                        break
                    except queue.Full:
                        continue
            chunks.put(None, timeout=stall)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            with contextlib.suppress(queue.Full):
                chunks.put(exc, timeout=stall)

    reader = threading.Thread(target=pump, name="vault-download", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = chunks.get(timeout=stall)
            except queue.Empty:
                raise RestoreRefused(f"the vault sent nothing for {stall:.0f}s; try again") from None
            if item is None:
                return
            if isinstance(item, BaseException):
                raise RestoreRefused(f"download failed: {item}") from item
            yield item
    finally:
        stop.set()
        reader.join(timeout=stall)

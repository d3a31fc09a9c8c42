"""`paydar bench restore`: backup and verified-restore throughput against a raw boto3 GET.

One real SeaweedFS vault, one store of at least ``size_mb`` built through the replication
path (``DocumentStore.apply``, the hash chain computed as a primary would). It measures, in
the same run and against the same object:
- backup: consistent snapshot + whole-chain verification + SHA-256 + upload with a signed manifest;
- raw GET: ``get_object`` of the snapshot's version, every byte read and dropped;
- restore: list and verify the manifest, download the pinned version with size and SHA-256
  checks, walk the whole chain; the ratio to the raw GET is the figure the issue targets;
- chain verification alone on the restored file.
Rounds alternate raw GET and restore so both see the same machine; medians are reported.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from paydar.infra.local.ports import PortAllocator
from paydar.infra.local.vault import VaultPorts, standalone_vault
from paydar.model.buckets import bucket_name
from paydar.model.identity import KeyStore, TrustRoot
from paydar.model.ids import node_id
from paydar.node.chain import Entry, entry_hash
from paydar.node.snapshot import take_snapshot
from paydar.node.store import DocumentStore, verify_file
from paydar.vault.restore import choose, fetch_verified, list_backups
from paydar.vault.s3 import S3Client, new_identity, provision_buckets, vault_client
from paydar.vault.snapshot import CHUNK, s3_put, upload_backup

__all__ = ["bench_restore"]

SERVICE, REGION = "bench", "bench-region"
NODE = node_id(SERVICE, REGION)
BATCH = 256


def bench_restore(*, size_mb: int, document_kb: int, rounds: int, console: Console) -> dict[str, float | int | str]:
    """Run the benchmark in a temporary directory; everything it starts is stopped."""
    with tempfile.TemporaryDirectory(prefix="paydar-bench-restore-") as tmp:
        root = Path(tmp)
        with console.status(f"building a {size_mb} MB store of {document_kb} kB documents"):
            store = root / "store.sqlite3"
            entries = _build_store(store, size_mb * 1_000_000, document_kb * 1000)
        keys = KeyStore(root / "keys")
        trust = keys.build_trust_root([NODE])
        admin = new_identity("bench-admin", ["Admin", "Read", "Write", "List", "Tagging"])
        ports = PortAllocator()
        console.log("starting the vault (SeaweedFS)")
        with standalone_vault(root / "vault", VaultPorts(*(ports.take_pair() for _ in range(5))), [admin]) as weed:
            client = vault_client(weed.endpoint, admin, timeout=120)
            provision_buckets(client, [bucket_name(SERVICE)], retention_days=1)
            figures = _measure(client, store, root, keys, trust, rounds, console)
    size = figures.pop("size")
    raw, restored = figures["raw_get_mb_s"], figures["restore_mb_s"]
    return {"store_mb": round(size / 1e6, 1), "entries": entries, "document_kb": document_kb, **figures,
            "restore_vs_raw": round(restored / raw, 3) if raw else 0.0, "rounds": rounds}


def _build_store(path: Path, target_bytes: int, document_bytes: int) -> int:
    store = DocumentStore(path, SERVICE)
    position, prev = store.head()
    try:
        while path.stat().st_size < target_bytes:
            batch = []
            for _ in range(BATCH):
                position += 1
                body = json.dumps({"citizen_id": f"{position % 10**10:010d}", "kind": "diploma", "data": {
                    "scan": base64.b64encode(os.urandom(document_bytes * 3 // 4)).decode()}}, sort_keys=True)
                written_ms = int(time.time() * 1000)
                doc_id = f"doc-{position}"
                digest = entry_hash(SERVICE, position, 1, doc_id, body, prev, written_ms)
                batch.append(Entry(position=position, epoch=1, doc_id=doc_id, body=body, prev_hash=prev,
                                   hash=digest, written_ms=written_ms))
                prev = digest
            store.apply(batch, prev_position=batch[0].position - 1, prev_hash=batch[0].prev_hash, sender_epoch=1,
                        sender_head=position)
    finally:
        store.close()
    return position


def _measure(client: S3Client, store: Path, root: Path, keys: KeyStore, trust: TrustRoot, rounds: int,
             console: Console) -> dict[str, float]:
    with console.status("backup: snapshot, verify, upload"):
        started = time.perf_counter()
        snapshot = take_snapshot(store, root / "snapshot.sqlite3", SERVICE)
        snapshot_seconds = time.perf_counter() - started
        signed = upload_backup(s3_put(client, bucket_name(SERVICE)), snapshot, bucket=bucket_name(SERVICE),
                               service=SERVICE, region=REGION, epoch=1, signer=keys.signer(NODE),
                               created_ms=int(time.time() * 1000))
        backup_seconds = time.perf_counter() - started
    manifest, size = signed.manifest, snapshot.size
    raw, restore, verify = [], [], []
    for n in range(rounds):
        console.log(f"round {n + 1}/{rounds}: raw GET, then verified restore")
        started = time.perf_counter()
        body = client.get_object(Bucket=manifest.bucket, Key=manifest.key,
                                 VersionId=manifest.version_id)["Body"]
        while body.read(CHUNK):
            pass
        raw.append(time.perf_counter() - started)
        target = root / "restored.sqlite3"
        target.unlink(missing_ok=True)
        started = time.perf_counter()
        chosen = choose(list_backups(client, trust, SERVICE, REGION), service=SERVICE, region=REGION)
        fetch_verified(client, chosen, target, verify_file)
        restore.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert verify_file(target, SERVICE).ok
        verify.append(time.perf_counter() - started)
    mb = size / 1e6
    return {"size": size, "backup_mb_s": round(mb / backup_seconds, 1),
            "snapshot_and_verify_s": round(snapshot_seconds, 3),
            "raw_get_mb_s": round(mb / statistics.median(raw), 1),
            "restore_mb_s": round(mb / statistics.median(restore), 1),
            "restore_s": round(statistics.median(restore), 3),
            "chain_verify_s": round(statistics.median(verify), 3)}

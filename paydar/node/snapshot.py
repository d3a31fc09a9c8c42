"""Taking a node's snapshot: a consistent, verified copy of its SQLite store, ready for the vault.

The copy uses SQLite's online backup API from a connection of its own: it reads one
consistent state of the database (a WAL read transaction) while the node keeps writing, and
it never blocks the node's database thread. The copy is verified, whole chain, before it is
uploaded: a node never backs up data that does not verify, so ransomware can't launder
itself into the vault.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from paydar.node.store import verify_file
from paydar.vault.snapshot import Snapshot, SnapshotFailed, sha256_file

__all__ = ["CONTENT_TYPE", "SnapshotCorrupt", "take_snapshot"]

CONTENT_TYPE = "application/vnd.sqlite3"
_PAGES_PER_STEP = 4096
"""Pages copied per backup step: big steps, because every step restarts if a write lands
mid-copy only for non-WAL databases; in WAL mode the copy reads one snapshot throughout."""


class SnapshotCorrupt(SnapshotFailed):
    """The store's own data does not verify: it needs a restore, not a backup."""


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
                    size=dest.stat().st_size, sha256=sha256_file(dest),
                    content_type=CONTENT_TYPE)

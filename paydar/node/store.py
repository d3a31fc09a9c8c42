"""Durable document store: SQLite in WAL mode holding the hash-chained log.

The log is the truth; ``documents`` is an index from document id to the position of its
latest version. All methods are synchronous and must run on the node's single database
thread (SQLite connections are not shared across threads here).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from paydar.model.wire import parse_json
from paydar.node.chain import GENESIS_HASH, Entry, entry_hash
from paydar.node.errors import BatchRefused, IntegrityViolation, LogMismatch

__all__ = ["DocumentStore", "VerifyResult", "check_batch", "verify_file", "verify_log"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    position INTEGER PRIMARY KEY,
    epoch INTEGER NOT NULL,
    doc_id TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    written_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    citizen_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_by_citizen ON documents (citizen_id, doc_id);
"""
_COLUMNS = "position, epoch, doc_id, body, prev_hash, hash, written_ms"


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a full chain verification."""

    ok: bool
    checked: int
    head_hash: str
    first_bad_position: int | None = None
    reason: str = ""


def _row_entry(row: Sequence[object]) -> Entry:
    position, epoch, doc_id, body, prev_hash, hash_, written_ms = row
    return Entry.model_construct(position=position, epoch=epoch, doc_id=doc_id, body=body,
                                 prev_hash=prev_hash, hash=hash_, written_ms=written_ms)


def verify_log(db: sqlite3.Connection, service: str) -> VerifyResult:
    """Walk a store's whole log checking every hash and every link; raises ``sqlite3.DatabaseError``.

    The hot loop works on raw rows (no model per entry): it runs over every byte the node
    holds, at start, at every integrity check and in every restore.
    """
    prev, checked, expected_position = GENESIS_HASH, 0, 1
    # The body as stored bytes: hashing them directly skips a UTF-8 decode and re-encode per entry.
    rows = db.execute("SELECT position, epoch, doc_id, CAST(body AS BLOB), prev_hash, hash, written_ms FROM log "
                      "ORDER BY position")
    for position, epoch, doc_id, body, prev_hash, hash_, written_ms in rows:
        if position != expected_position:
            return VerifyResult(False, checked, prev, expected_position, "gap in the log")
        if prev_hash != prev:
            return VerifyResult(False, checked, prev, position, "link to the previous entry is broken")
        if entry_hash(service, position, epoch, doc_id, body, prev_hash, written_ms) != hash_:
            return VerifyResult(False, checked, prev, position, "entry does not match its hash")
        prev, checked, expected_position = hash_, checked + 1, expected_position + 1
    return VerifyResult(True, checked, prev)


def verify_file(path: Path, service: str) -> VerifyResult:
    """Verify the store at ``path`` as it is on disk, through a fresh read-only connection.

    A fresh connection has no page cache, so bytes changed under a running node (ransomware
    rewriting the file) are read and judged, not a cached copy. An unreadable, missing or
    non-SQLite file is a failed verification, never an exception. (Splitting the walk over
    threads was measured slower: building each row's objects holds the GIL.)
    """
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)) as db:
            return verify_log(db, service)
    except sqlite3.Error as exc:
        return VerifyResult(False, 0, "", None, f"database unusable: {exc}")


def check_batch(service: str, entries: Sequence[Entry], *, prev_position: int, prev_hash: str,
                sender_epoch: int, sender_head: int) -> None:
    """Raise :class:`BatchRefused` unless the entries are a well-formed continuation of the
    chain at ``prev_position``: consecutive positions, each linked to and hashed over its
    predecessor, no epoch beyond the sender's or going backwards, JSON object bodies, and no
    entry beyond the sender's own head. Pure; runs before the database is touched."""
    expected_prev, epoch = prev_hash, 0
    for offset, entry in enumerate(entries):
        where = f"entry at position {entry.position}"
        if entry.position != prev_position + 1 + offset:
            raise BatchRefused(400, f"{where} should be at position {prev_position + 1 + offset}: "
                                    "a batch must continue the log without gaps")
        if entry.epoch > sender_epoch or entry.epoch < epoch:
            raise BatchRefused(400, f"{where} is of epoch {entry.epoch}, outside the sender's epochs "
                                    f"({epoch or 1}..{sender_epoch})")
        if entry.prev_hash != expected_prev or not entry.intact(service):
            raise BatchRefused(400, f"{where} does not continue the chain (link or hash does not match)")
        try:
            body = parse_json(entry.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise BatchRefused(400, f"{where} has a body that is not a JSON object")
        expected_prev, epoch = entry.hash, entry.epoch
    if entries and entries[-1].position > sender_head:
        raise BatchRefused(400, f"batch reaches position {entries[-1].position}, beyond the sender's head "
                                f"{sender_head}")


class DocumentStore:
    """The node's log and document index in one SQLite database."""

    def __init__(self, path: Path, service: str) -> None:
        self.path = path
        self.service = service
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a write is on disk before it is acknowledged, even across power loss.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- reading -------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        """(position, hash) of the last entry; (0, genesis) when empty."""
        row = self._db.execute("SELECT position, hash FROM log ORDER BY position DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def entry_at(self, position: int) -> Entry | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM log WHERE position = ?", (position,)).fetchone()
        return _row_entry(row) if row else None

    def hash_at(self, position: int) -> str | None:
        if position == 0:
            return GENESIS_HASH
        row = self._db.execute("SELECT hash FROM log WHERE position = ?", (position,)).fetchone()
        return row[0] if row else None

    def entries_from(self, position: int, *, max_entries: int, max_bytes: int) -> list[Entry]:
        """Consecutive entries starting at ``position``, bounded in count and bytes."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM log WHERE position >= ? ORDER BY position LIMIT ?",
                                (position, max_entries)).fetchall()
        entries: list[Entry] = []
        size = 0
        for row in rows:
            size += len(row[3])
            if entries and size > max_bytes:
                break
            entries.append(_row_entry(row))
        return entries

    def document(self, doc_id: str) -> Entry | None:
        """The latest version of a document, verified against the chain before it is returned."""
        row = self._db.execute("SELECT position FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        if row is None:
            return None
        entry = self._verified_entry(row[0])
        if entry.doc_id != doc_id:
            raise IntegrityViolation(row[0], f"the document index sends {doc_id!r} to another document's entry")
        return entry

    def documents_of(self, citizen_id: str, *, after: str, limit: int) -> list[Entry]:
        rows = self._db.execute(
            "SELECT position, doc_id FROM documents WHERE citizen_id = ? AND doc_id > ? ORDER BY doc_id LIMIT ?",
            (citizen_id, after, limit)).fetchall()
        entries = [self._verified_entry(position) for position, _ in rows]
        for (position, doc_id), entry in zip(rows, entries, strict=True):
            if entry.doc_id != doc_id or str(json.loads(entry.body).get("citizen_id", "")) != citizen_id:
                raise IntegrityViolation(position, "the document index lists an entry of another document")
        return entries

    def _verified_entry(self, position: int) -> Entry:
        """An entry whose hash matches its content and its successor's link."""
        entry = self.entry_at(position)
        if entry is None:
            raise IntegrityViolation(position, "the document index points at a missing log entry")
        if not entry.intact(self.service):
            raise IntegrityViolation(position, "stored entry does not match its hash")
        following = self.entry_at(position + 1)
        if following is not None and following.prev_hash != entry.hash:
            raise IntegrityViolation(position, "entry is not the one its successor links to")
        return entry

    def verify_chain(self) -> VerifyResult:
        """Walk the whole log checking every hash and every link."""
        return verify_log(self._db, self.service)

    # -- writing -------------------------------------------------------------------------

    def append(self, *, epoch: int, doc_id: str, body: str, written_ms: int) -> Entry:
        """Append one write as the primary; durable when this returns."""
        position, prev = self.head()
        entry = Entry(position=position + 1, epoch=epoch, doc_id=doc_id, body=body, prev_hash=prev,
                      hash=entry_hash(self.service, position + 1, epoch, doc_id, body, prev, written_ms),
                      written_ms=written_ms)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._insert(entry)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return entry

    def apply(self, entries: Sequence[Entry], *, prev_position: int, prev_hash: str,
              sender_epoch: int, sender_head: int, protected: int = 0) -> int:
        """Apply a primary's batch as a standby; return the position matched through.

        Entries must continue the chain at ``prev_position`` (:func:`check_batch`). A local
        entry that differs from the primary's at the same position is an unacknowledged write
        of an older epoch: it and everything after it are dropped (truncation never touches
        the primary's epoch). Entries beyond ``sender_head`` are dropped for the same reason.
        Nothing at or below ``protected`` (what this node knows was acknowledged) is ever dropped,
        whatever the sender says: a hostile primary must not erase acknowledged history.
        """
        check_batch(self.service, entries, prev_position=prev_position, prev_hash=prev_hash,
                    sender_epoch=sender_epoch, sender_head=sender_head)
        if self.hash_at(prev_position) != prev_hash:
            raise LogMismatch(self.head()[0])
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for entry in entries:
                local = self.entry_at(entry.position)
                if local is not None and local.hash == entry.hash:
                    continue
                if local is not None:
                    self._truncate_from(entry.position, sender_epoch, protected)
                self._insert(entry)
            if self.head()[0] > sender_head:
                self._truncate_from(sender_head + 1, sender_epoch, protected)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return entries[-1].position if entries else prev_position

    def _insert(self, entry: Entry) -> None:
        citizen_id = str(json.loads(entry.body).get("citizen_id", ""))
        self._db.execute(f"INSERT INTO log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (entry.position, entry.epoch, entry.doc_id, entry.body, entry.prev_hash,
                          entry.hash, entry.written_ms))
        self._db.execute(
            "INSERT INTO documents (doc_id, position, citizen_id) VALUES (?, ?, ?) "
            "ON CONFLICT(doc_id) DO UPDATE SET position = excluded.position, citizen_id = excluded.citizen_id",
            (entry.doc_id, entry.position, citizen_id))

    def _truncate_from(self, position: int, sender_epoch: int, protected: int) -> None:
        if position <= protected:
            raise BatchRefused(409, f"refusing to drop entries from position {position}: this node knows writes "
                                    f"up to {protected} were acknowledged")
        newest = self._db.execute("SELECT MAX(epoch) FROM log WHERE position >= ?", (position,)).fetchone()[0]
        if newest is not None and newest >= sender_epoch:
            # Two different entries in one epoch would mean two primaries in one epoch.
            raise BatchRefused(409, f"refusing to drop entries of epoch {newest} at position {position} "
                                    f"on behalf of a primary of epoch {sender_epoch}")
        affected = [r[0] for r in self._db.execute(
            "SELECT DISTINCT doc_id FROM log WHERE position >= ?", (position,))]
        self._db.execute("DELETE FROM log WHERE position >= ?", (position,))
        for doc_id in affected:
            row = self._db.execute(
                "SELECT position, body FROM log WHERE doc_id = ? ORDER BY position DESC LIMIT 1",
                (doc_id,)).fetchone()
            if row is None:
                self._db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            else:
                citizen_id = str(json.loads(row[1]).get("citizen_id", ""))
                self._db.execute("UPDATE documents SET position = ?, citizen_id = ? WHERE doc_id = ?",
                                 (row[0], citizen_id, doc_id))

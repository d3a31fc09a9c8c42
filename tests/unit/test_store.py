"""The hash-chained store: append, verify, detect tampering, apply replication, truncate."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from paydar.node.chain import GENESIS_HASH, Entry, entry_hash
from paydar.node.errors import BatchRefused, IntegrityViolation, LogMismatch
from paydar.node.store import DocumentStore, check_batch


def body(citizen: str = "0012345678", n: int = 0) -> str:
    return json.dumps({"citizen_id": citizen, "kind": "diploma", "data": {"n": n}}, sort_keys=True)


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[DocumentStore]:
    s = DocumentStore(tmp_path / "a.sqlite3", "1101")
    yield s
    s.close()


def fill(store: DocumentStore, n: int, epoch: int = 1, prefix: str = "d") -> list[Entry]:
    return [store.append(epoch=epoch, doc_id=f"{prefix}{i}", body=body(n=i), written_ms=i) for i in range(n)]


def test_wal_mode_and_chain(store: DocumentStore) -> None:
    entries = fill(store, 3)
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert entries[0].prev_hash == GENESIS_HASH
    assert entries[1].prev_hash == entries[0].hash and entries[2].prev_hash == entries[1].hash
    assert store.head() == (3, entries[2].hash)
    assert store.verify_chain().ok and store.verify_chain().checked == 3


def test_document_latest_version_and_listing(store: DocumentStore) -> None:
    store.append(epoch=1, doc_id="x", body=body(n=1), written_ms=1)
    store.append(epoch=1, doc_id="x", body=body(n=2), written_ms=2)
    latest = store.document("x")
    assert latest is not None and json.loads(latest.body)["data"] == {"n": 2}
    assert store.document("absent") is None
    assert [e.doc_id for e in store.documents_of("0012345678", after="", limit=10)] == ["x"]


def test_modified_record_is_detected_on_read_and_verify(store: DocumentStore) -> None:
    fill(store, 3)
    store._db.execute("UPDATE log SET body = ? WHERE position = 2", (body(n=99),))
    with pytest.raises(IntegrityViolation, match="position 2: stored entry does not match its hash"):
        store.document("d1")
    result = store.verify_chain()
    assert (result.ok, result.first_bad_position, result.reason) == (False, 2, "entry does not match its hash")


def test_rehashed_record_is_caught_by_the_successor_link(store: DocumentStore) -> None:
    fill(store, 3)
    forged = Entry(position=2, epoch=1, doc_id="d1", body=body(n=99), prev_hash=store.hash_at(1) or "",
                   hash="0" * 64, written_ms=1)
    forged = forged.model_copy(update={"hash": forged.expected_hash("1101")})
    store._db.execute("UPDATE log SET body = ?, hash = ? WHERE position = 2", (forged.body, forged.hash))
    with pytest.raises(IntegrityViolation, match="not the one its successor links to"):
        store.document("d1")
    assert store.verify_chain().first_bad_position == 3


def test_apply_continues_chain_and_refuses_gaps(tmp_path: Path, store: DocumentStore) -> None:
    entries = fill(store, 4)
    standby = DocumentStore(tmp_path / "b.sqlite3", "1101")
    assert standby.apply(entries[:2], prev_position=0, prev_hash=GENESIS_HASH, sender_epoch=1, sender_head=4) == 2
    with pytest.raises(LogMismatch) as info:
        standby.apply(entries[3:], prev_position=3, prev_hash=entries[2].hash, sender_epoch=1, sender_head=4)
    assert info.value.head == 2
    assert standby.apply(entries[2:], prev_position=2, prev_hash=entries[1].hash, sender_epoch=1, sender_head=4) == 4
    assert standby.head() == store.head()
    standby.close()


def test_apply_refuses_entries_that_do_not_verify(tmp_path: Path, store: DocumentStore) -> None:
    entries = fill(store, 2)
    bad = entries[1].model_copy(update={"body": body(n=7)})
    standby = DocumentStore(tmp_path / "b.sqlite3", "1101")
    with pytest.raises(BatchRefused, match="does not continue the chain"):
        standby.apply([entries[0], bad], prev_position=0, prev_hash=GENESIS_HASH, sender_epoch=1, sender_head=2)
    assert standby.head() == (0, GENESIS_HASH), "a refused batch changes nothing"
    standby.close()


def test_divergent_tail_of_older_epoch_is_replaced(tmp_path: Path) -> None:
    old = DocumentStore(tmp_path / "old.sqlite3", "1101")
    new = DocumentStore(tmp_path / "new.sqlite3", "1101")
    shared = fill(old, 2)
    new.apply(shared, prev_position=0, prev_hash=GENESIS_HASH, sender_epoch=1, sender_head=2)
    fill(old, 2, epoch=1, prefix="unacked")          # old primary's unacknowledged tail
    fresh = fill(new, 1, epoch=3, prefix="new")      # new primary writes in epoch 3
    matched = old.apply(fresh, prev_position=2, prev_hash=shared[1].hash, sender_epoch=3, sender_head=3)
    assert matched == 3 and old.head() == new.head()
    assert old.document("unacked0") is None, "the unacknowledged write of the old epoch is gone"
    assert old.verify_chain().ok
    old.close()
    new.close()


def test_same_epoch_divergence_is_refused(tmp_path: Path) -> None:
    a = DocumentStore(tmp_path / "a2.sqlite3", "1101")
    b = DocumentStore(tmp_path / "b2.sqlite3", "1101")
    fill(a, 1, epoch=2, prefix="a")
    other = fill(b, 1, epoch=2, prefix="b")
    with pytest.raises(BatchRefused, match="refusing to drop entries of epoch 2"):
        a.apply(other, prev_position=0, prev_hash=GENESIS_HASH, sender_epoch=2, sender_head=1)
    a.close()
    b.close()


def test_garbage_database_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"\x17" * 8192)
    with pytest.raises(sqlite3.DatabaseError):
        DocumentStore(path, "1101").verify_chain()


def forge(position: int, epoch: int, prev: str, text: str) -> Entry:
    """A validly hashed entry a hostile primary could send: the hash proves nothing about sanity."""
    digest = entry_hash("1101", position, epoch, f"f{position}", text, prev, 1)
    return Entry(position=position, epoch=epoch, doc_id=f"f{position}", body=text, prev_hash=prev, hash=digest,
                 written_ms=1)


@pytest.mark.parametrize(("make", "why"), [
    (lambda: [forge(1, 1, GENESIS_HASH, body()), forge(3, 1, "0" * 64, body())], "should be at position 2"),
    (lambda: [forge(1, 5, GENESIS_HASH, body())], "of epoch 5, outside the sender's epochs"),
    (lambda: [forge(1, 1, GENESIS_HASH, "not json")], "not a JSON object"),
    (lambda: [forge(1, 1, GENESIS_HASH, "[1, 2]")], "not a JSON object"),
    (lambda: [forge(1, 1, GENESIS_HASH, body()), forge(2, 1, "f" * 64, body())], "does not continue the chain"),
])
def test_a_hostile_primarys_batch_is_refused_and_changes_nothing(tmp_path: Path, make: Callable[[], list[Entry]],
                                                                 why: str) -> None:
    standby = DocumentStore(tmp_path / "s.sqlite3", "1101")
    entries = make()
    if len(entries) == 2 and "position 2" in why:  # a gap: the second entry links correctly but skips a position
        entries[1] = forge(3, 1, entries[0].hash, body())
    with pytest.raises(BatchRefused, match=why):
        standby.apply(entries, prev_position=0, prev_hash=GENESIS_HASH, sender_epoch=2, sender_head=9)
    assert standby.head() == (0, GENESIS_HASH) and standby.verify_chain().ok, \
        "the standby's own data is untouched and still verifies: the sender is at fault, not the standby"
    standby.close()


def test_a_batch_beyond_the_senders_head_is_refused() -> None:
    entries = [forge(1, 1, GENESIS_HASH, body())]
    with pytest.raises(BatchRefused, match="beyond the sender's head 0"):
        check_batch("1101", entries, prev_position=0, prev_hash=GENESIS_HASH, sender_epoch=1, sender_head=0)


def test_acknowledged_history_is_never_dropped_whatever_the_sender_says(tmp_path: Path) -> None:
    standby = DocumentStore(tmp_path / "s.sqlite3", "1101")
    fill(standby, 3)
    with pytest.raises(BatchRefused, match="knows writes up to 2 were acknowledged"):
        standby.apply([], prev_position=0, prev_hash=GENESIS_HASH, sender_epoch=9, sender_head=0, protected=2)
    assert standby.head()[0] == 3, "an empty batch claiming head 0 erased nothing"
    standby.apply([], prev_position=0, prev_hash=GENESIS_HASH, sender_epoch=9, sender_head=2, protected=2)
    assert standby.head()[0] == 2, "an unacknowledged tail of an older epoch is still dropped"
    standby.close()
